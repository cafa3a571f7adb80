package replica

import (
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"
)

// shardPlan decides the next membership change of one shard this node leads:
// a pure function of what the leader knows, so that every rule below is
// tested without raft. One change at a time: raft itself takes one
// configuration change at a time, and each step's safety is judged on the
// configuration the previous one produced.
//
// In order, the first that applies:
//
//  1. A server whose node now listens elsewhere (restarted on a new port)
//     is re-added at its new address, keeping its suffrage.
//  2. A desired node that is live but not in the configuration is added as
//     a non-voter: it receives the log without counting for the quorum, so
//     an unreachable or slow newcomer cannot stall commits (as a voter
//     added to a one-voter group would at once).
//  3. A desired non-voter that has answered every heartbeat for
//     CatchUpGrace is promoted to voter.
//  4. A non-voter no longer desired is removed (it holds no vote).
//  5. A voter dead for DeadTimeout is removed; then a voter no longer
//     desired, but only once every live desired node is a voter. Either
//     only if the group keeps at least min(Replicas, live nodes) voters and
//     the live ones remain a quorum.
//  6. This node, if no longer desired (draining, or placement moved), hands
//     leadership to a healthy desired voter; it never removes itself, which
//     would leave the shard leaderless for an election.
type shardPlan struct {
	shard    uint16
	servers  []raft.Server               // the latest configuration
	since    map[raft.ServerID]time.Time // when this leader first saw each server with its present suffrage
	failed   map[raft.ServerID]time.Time // each peer's last failed heartbeat from this leader
	leads    map[string]int              // shards each node leads, as far as this node knows
	replicas int
	grace    time.Duration
}

type actionKind int

const (
	actNone actionKind = iota
	actAddNonvoter
	actAddVoter // promote a non-voter, or move a voter's address
	actRemove
	actTransfer
)

func (k actionKind) String() string {
	switch k {
	case actAddNonvoter:
		return "add non-voter"
	case actAddVoter:
		return "add voter"
	case actRemove:
		return "remove"
	case actTransfer:
		return "transfer leadership"
	}
	return "none"
}

// action is one change for raft to make.
type action struct {
	kind actionKind
	id   raft.ServerID
	addr raft.ServerAddress
	why  string
}

func (a action) String() string { return fmt.Sprintf("%s %s (%s)", a.kind, a.id, a.why) }

func (p *shardPlan) next(v *view) action {
	desired := v.desired(p.shard, p.replicas)
	byID := make(map[raft.ServerID]raft.Server, len(p.servers))
	for _, s := range p.servers {
		byID[s.ID] = s
	}

	// 1. Addresses.
	for _, s := range p.servers {
		m, ok := v.live(string(s.ID))
		if !ok || m.RaftAddr == "" || raft.ServerAddress(m.RaftAddr) == s.Address {
			continue
		}
		kind := actAddNonvoter
		if s.Suffrage == raft.Voter {
			kind = actAddVoter
		}
		return action{kind, s.ID, raft.ServerAddress(m.RaftAddr), "moved from " + string(s.Address)}
	}

	// 2. Newcomers.
	for _, id := range desired {
		if _, in := byID[raft.ServerID(id)]; in {
			continue
		}
		if m, ok := v.live(id); ok && m.RaftAddr != "" {
			return action{actAddNonvoter, raft.ServerID(id), raft.ServerAddress(m.RaftAddr), "placed here"}
		}
	}

	// 3. Promotions.
	for _, id := range desired {
		s, in := byID[raft.ServerID(id)]
		if !in || s.Suffrage == raft.Voter {
			continue
		}
		if _, ok := v.live(id); ok && p.healthy(v.now, s.ID) {
			return action{actAddVoter, s.ID, s.Address, "caught up"}
		}
	}

	// 4. Stray non-voters.
	for _, s := range p.servers {
		if s.Suffrage != raft.Voter && string(s.ID) != v.self && !slices.Contains(desired, string(s.ID)) {
			return action{kind: actRemove, id: s.ID, why: "no longer placed here"}
		}
	}

	// 5. Voters to remove.
	if a, ok := p.removal(v, desired); ok {
		return a
	}

	// 6. Step aside.
	if self, in := byID[raft.ServerID(v.self)]; in && self.Suffrage == raft.Voter && !slices.Contains(desired, v.self) {
		if to, ok := p.transferTarget(v, desired, -1); ok {
			return action{actTransfer, to.ID, to.Address, "this node is no longer placed here"}
		}
	}
	return action{}
}

// removal picks a voter to remove, dead ones first.
func (p *shardPlan) removal(v *view, desired []string) (action, bool) {
	var voters, live int
	isVoter := make(map[string]bool)
	for _, s := range p.servers {
		if s.Suffrage == raft.Voter {
			voters++
			isVoter[string(s.ID)] = true
			if _, ok := v.live(string(s.ID)); ok {
				live++
			}
		}
	}
	// The group must keep as many voters as placement asks for when the
	// nodes exist, and its live voters must still be a quorum afterwards.
	floor := max(1, min(p.replicas, v.liveCandidates))
	canRemove := func(id string) bool {
		after, liveAfter := voters-1, live
		if _, ok := v.live(id); ok {
			liveAfter--
		}
		return after >= floor && liveAfter >= after/2+1
	}
	for _, s := range p.servers {
		id := string(s.ID)
		if s.Suffrage == raft.Voter && id != v.self && v.isDead(id) && canRemove(id) {
			return action{kind: actRemove, id: s.ID, why: "gone for " + v.dead.String()}, true
		}
	}
	for _, id := range desired {
		if _, ok := v.live(id); ok && !isVoter[id] {
			return action{}, false // replacements first
		}
	}
	// Not desired: gone ones before draining ones before the others.
	var best *raft.Server
	rank := func(id string) int {
		switch m, ok := v.live(id); {
		case !ok:
			return 0
		case m.Draining:
			return 1
		}
		return 2
	}
	for i, s := range p.servers {
		id := string(s.ID)
		if s.Suffrage != raft.Voter || id == v.self || slices.Contains(desired, id) || !canRemove(id) {
			continue
		}
		if best == nil || rank(id) < rank(string(best.ID)) {
			best = &p.servers[i]
		}
	}
	if best == nil {
		return action{}, false
	}
	return action{kind: actRemove, id: best.ID, why: "no longer placed here"}, true
}

// transferTarget picks the voter to hand leadership to: desired, live,
// healthy, and leading the fewest shards; below is a bound on how many it
// may lead (-1: any).
func (p *shardPlan) transferTarget(v *view, desired []string, below int) (raft.Server, bool) {
	var best raft.Server
	found := false
	for _, s := range p.servers {
		id := string(s.ID)
		if s.Suffrage != raft.Voter || id == v.self || !slices.Contains(desired, id) {
			continue
		}
		if _, ok := v.live(id); !ok || !p.healthy(v.now, s.ID) {
			continue
		}
		if below >= 0 && p.leads[id] >= below {
			continue
		}
		if !found || p.leads[id] < p.leads[string(best.ID)] {
			best, found = s, true
		}
	}
	return best, found
}

// healthy: in the configuration with its suffrage for CatchUpGrace, and no
// failed heartbeat within it.
func (p *shardPlan) healthy(now time.Time, id raft.ServerID) bool {
	since, ok := p.since[id]
	if !ok || now.Sub(since) < p.grace {
		return false
	}
	failed, ok := p.failed[id]
	return !ok || now.Sub(failed) >= p.grace
}

// balanceLimit is how many shards one node may lead before it hands some
// away: an even share plus one, so that leadership does not bounce between
// nodes over a difference of one.
func balanceLimit(shards, nodes int) int {
	nodes = max(nodes, 1)
	return (shards+nodes-1)/nodes + 1
}
