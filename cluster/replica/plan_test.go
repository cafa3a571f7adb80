package replica

import (
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	testGrace = time.Second
	testDead  = 10 * time.Second
)

// scene is a leader's situation for plan: the members gossip shows, those
// gone and for how long, and the shard's configuration.
type scene struct {
	self     string
	live     []string                 // live members, self included
	draining []string                 // live members marked draining
	gone     map[string]time.Duration // left the live list that long ago
	moved    map[string]string        // live members listening at a new address
	voters   []string
	learners []string // non-voters
	young    []string // servers seen with their suffrage for less than grace
	failing  []string // peers with a recent failed heartbeat
	leads    map[string]int
}

func addr(id string) string { return id + ":1" }

func (sc scene) run(t *testing.T, shard uint16) action {
	t.Helper()
	now := t0.Add(time.Hour)
	m := newMembers(Member{ID: sc.self, RaftAddr: addr(sc.self)})
	var all []Member
	for _, id := range sc.live {
		all = append(all, Member{ID: id, RaftAddr: addr(id)})
	}
	for id := range sc.gone {
		all = append(all, Member{ID: id, RaftAddr: addr(id)})
	}
	m.set(all, t0)
	// Each gone member leaves the list at its own time.
	for id, ago := range sc.gone {
		var rest []Member
		for _, x := range all {
			if x.ID != id {
				rest = append(rest, x)
			}
		}
		m.set(rest, now.Add(-ago))
		all = rest
	}
	var live []Member
	for _, id := range sc.live {
		a := addr(id)
		if na, ok := sc.moved[id]; ok {
			a = na
		}
		live = append(live, Member{ID: id, RaftAddr: a, Draining: slices.Contains(sc.draining, id)})
	}
	m.set(live, now.Add(-time.Millisecond))
	for _, id := range sc.live {
		if id == sc.self && slices.Contains(sc.draining, id) {
			m.setDraining()
		}
	}
	p := shardPlan{
		shard:    shard,
		since:    map[raft.ServerID]time.Time{},
		failed:   map[raft.ServerID]time.Time{},
		leads:    sc.leads,
		replicas: 3,
		grace:    testGrace,
	}
	var ids []string
	for _, set := range []struct {
		ids []string
		s   raft.ServerSuffrage
	}{{sc.voters, raft.Voter}, {sc.learners, raft.Nonvoter}} {
		for _, id := range set.ids {
			ids = append(ids, id)
			p.servers = append(p.servers, raft.Server{Suffrage: set.s, ID: raft.ServerID(id), Address: raft.ServerAddress(addr(id))})
			p.since[raft.ServerID(id)] = now.Add(-time.Minute)
			if slices.Contains(sc.young, id) {
				p.since[raft.ServerID(id)] = now.Add(-testGrace / 2)
			}
			if slices.Contains(sc.failing, id) {
				p.failed[raft.ServerID(id)] = now.Add(-testGrace / 2)
			}
		}
	}
	v, ok := m.view(now, ids, testDead)
	if !ok {
		t.Fatal("view: no member list")
	}
	return p.next(v)
}

// shardWhere finds a shard whose placement over ids satisfies f.
func shardWhere(t *testing.T, ids []string, f func(desired []string) bool) uint16 {
	t.Helper()
	for s := range uint16(1000) {
		if f(place(ids, s, 3)) {
			return s
		}
	}
	t.Fatal("no such shard")
	return 0
}

func wantAction(t *testing.T, got action, kind actionKind, id string) {
	t.Helper()
	if got.kind != kind || (id != "" && string(got.id) != id) {
		t.Errorf("plan = %v; want %s %s", got, kind, id)
	}
}

func TestPlanAddsNewcomersAsNonVoters(t *testing.T) {
	got := scene{self: "a", live: []string{"a", "b", "c"}, voters: []string{"a"}}.run(t, 0)
	if got.kind != actAddNonvoter || (got.id != "b" && got.id != "c") || got.addr != raft.ServerAddress(addr(string(got.id))) {
		t.Errorf("plan = %v at %s; want add non-voter b or c at its address", got, got.addr)
	}
}

func TestPlanPromotesOnlyHealthyNonVoters(t *testing.T) {
	sc := scene{self: "a", live: []string{"a", "b"}, voters: []string{"a"}, learners: []string{"b"}}
	wantAction(t, sc.run(t, 0), actAddVoter, "b")

	sc.young = []string{"b"}
	wantAction(t, sc.run(t, 0), actNone, "")

	sc.young, sc.failing = nil, []string{"b"}
	wantAction(t, sc.run(t, 0), actNone, "")
}

// TestPlanReplacesOneStepAtATime walks a fourth node into a shard that
// drops one of the three: add it, promote it, then remove the one placement
// no longer wants (or hand leadership away, when that one is the leader).
func TestPlanReplacesOneStepAtATime(t *testing.T) {
	ids := []string{"a", "b", "c", "d"}
	s := shardWhere(t, ids, func(d []string) bool { return slices.Contains(d, "d") && slices.Contains(d, "a") })
	desired := place(ids, s, 3)
	out := slices.DeleteFunc([]string{"a", "b", "c"}, func(id string) bool { return slices.Contains(desired, id) })[0]

	sc := scene{self: "a", live: ids, voters: []string{"a", "b", "c"}}
	wantAction(t, sc.run(t, s), actAddNonvoter, "d")

	sc.learners = []string{"d"}
	sc.young = []string{"d"}
	wantAction(t, sc.run(t, s), actNone, "") // d is catching up; nothing is removed before it votes

	sc.young = nil
	wantAction(t, sc.run(t, s), actAddVoter, "d")

	sc.voters, sc.learners = ids, nil
	wantAction(t, sc.run(t, s), actRemove, out)

	// The leader is the one placement drops: it hands over, never removes itself.
	s = shardWhere(t, ids, func(d []string) bool { return !slices.Contains(d, "a") })
	sc = scene{self: "a", live: ids, voters: ids, leads: map[string]int{"b": 3, "c": 1, "d": 2}}
	got := sc.run(t, s)
	wantAction(t, got, actTransfer, "")
	if want := slices.MinFunc(place(ids, s, 3), func(x, y string) int { return sc.leads[x] - sc.leads[y] }); string(got.id) != want {
		t.Errorf("transfer to %s; want %s, the desired voter leading fewest", got.id, want)
	}
}

func TestPlanRemovesTheDeadAfterDeadTimeout(t *testing.T) {
	sc := scene{self: "a", live: []string{"a", "b"}, gone: map[string]time.Duration{"c": testDead / 2}, voters: []string{"a", "b", "c"}}
	wantAction(t, sc.run(t, 0), actNone, "") // it may be restarting

	sc.gone["c"] = testDead
	wantAction(t, sc.run(t, 0), actRemove, "c")
}

// TestPlanKeepsTheFloor: with a fourth node live, a dead voter is replaced
// before it is removed, so the shard never drops below three voters.
func TestPlanKeepsTheFloor(t *testing.T) {
	sc := scene{self: "a", live: []string{"a", "b", "d"}, gone: map[string]time.Duration{"c": testDead}, voters: []string{"a", "b", "c"}}
	wantAction(t, sc.run(t, 0), actAddNonvoter, "d")

	sc.learners, sc.young = []string{"d"}, []string{"d"}
	wantAction(t, sc.run(t, 0), actNone, "")

	sc.learners, sc.young, sc.voters = nil, nil, []string{"a", "b", "c", "d"}
	wantAction(t, sc.run(t, 0), actRemove, "c")
}

// TestPlanKeepsAQuorumLive: removing a live voter that would leave the
// live ones short of a quorum waits, even when placement wants it gone.
func TestPlanKeepsAQuorumLive(t *testing.T) {
	sc := scene{
		self: "a", live: []string{"a", "c"}, draining: []string{"c"},
		gone:   map[string]time.Duration{"b": time.Second, "e": time.Second},
		voters: []string{"a", "b", "c", "e"},
	}
	wantAction(t, sc.run(t, 0), actNone, "")
}

func TestPlanDrainingLeaderHandsOver(t *testing.T) {
	sc := scene{self: "a", live: []string{"a", "b", "c"}, draining: []string{"a"}, voters: []string{"a", "b", "c"}, leads: map[string]int{"b": 3, "c": 1}}
	wantAction(t, sc.run(t, 0), actTransfer, "c")

	sc.failing = []string{"c"}
	wantAction(t, sc.run(t, 0), actTransfer, "b")

	sc.failing = []string{"b", "c"}
	wantAction(t, sc.run(t, 0), actNone, "") // nobody fit to take over
}

func TestPlanRemovesDrainingVoters(t *testing.T) {
	sc := scene{self: "a", live: []string{"a", "b", "c", "d"}, draining: []string{"b"}, voters: []string{"a", "b", "c", "d"}}
	wantAction(t, sc.run(t, 0), actRemove, "b")
}

func TestPlanMovesAddresses(t *testing.T) {
	sc := scene{self: "a", live: []string{"a", "b"}, moved: map[string]string{"b": "b:2"}, voters: []string{"a"}, learners: []string{"b"}}
	got := sc.run(t, 0)
	if got.kind != actAddNonvoter || got.id != "b" || got.addr != "b:2" {
		t.Errorf("plan = %v at %s; want b re-added as non-voter at b:2", got, got.addr)
	}
}

func TestPlanDropsStrayNonVoters(t *testing.T) {
	sc := scene{self: "a", live: []string{"a", "b", "c", "d"}, draining: []string{"d"}, voters: []string{"a", "b", "c"}, learners: []string{"d"}}
	wantAction(t, sc.run(t, 0), actRemove, "d")
}

func TestPlanWaitsForTheMemberList(t *testing.T) {
	m := newMembers(Member{ID: "a", RaftAddr: addr("a")})
	if _, ok := m.view(t0, []string{"a", "b"}, testDead); ok {
		t.Errorf("view before SetMembers: ok; want no placement until the member list is known")
	}
}

func TestBalanceLimit(t *testing.T) {
	for _, c := range []struct{ shards, nodes, want int }{{8, 3, 4}, {64, 3, 23}, {64, 1, 65}, {8, 0, 9}} {
		if got := balanceLimit(c.shards, c.nodes); got != c.want {
			t.Errorf("balanceLimit(%d, %d) = %d; want %d", c.shards, c.nodes, got, c.want)
		}
	}
}
