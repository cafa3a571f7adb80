package replica

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// partition cuts a off from each of others in both directions, as a
// network partition would: each side's Mux closes the connections it
// dialed to the other and refuses new ones (raftmux.Mux.Partition). The
// others still reach each other. Gossip is not told: the member lists
// still show every node live, as they would during a short partition.
func partition(a *node, others ...*node) {
	for _, b := range others {
		a.mux.Partition(b.member().RaftAddr)
		b.mux.Partition(a.member().RaftAddr)
	}
}

// heal undoes partition(a, others...).
func heal(a *node, others ...*node) {
	for _, b := range others {
		a.mux.Heal(b.member().RaftAddr)
		b.mux.Heal(a.member().RaftAddr)
	}
}

// ledBy returns the shards n leads, per its own raft.
func ledBy(n *node) []uint16 {
	var out []uint16
	for s := range uint16(len(n.fsms)) {
		if n.groups.IsLeader(s) {
			out = append(out, s)
		}
	}
	return out
}

// waitLeadersAmong waits until every shard is led by one of c.
func (c cluster) waitLeadersAmong(t testing.TB, timeout time.Duration) {
	t.Helper()
	checkFor(t, timeout, func() error {
		for s := range uint16(len(c[0].fsms)) {
			if _, err := c.leader(s); err != nil {
				return err
			}
		}
		return nil
	})
}

// waitSameEntries waits until, on every shard, every node of c has applied
// exactly the entries of the shard's leader.
func (c cluster) waitSameEntries(t testing.TB, timeout time.Duration) {
	t.Helper()
	checkFor(t, timeout, func() error {
		for s := range uint16(len(c[0].fsms)) {
			l, err := c.leader(s)
			if err != nil {
				return err
			}
			want, err := l.fsms[s].entries()
			if err != nil {
				return err
			}
			for _, n := range c {
				got, err := n.fsms[s].entries()
				if err != nil {
					return err
				}
				if !slices.Equal(got, want) {
					return fmt.Errorf("%s shard %d: %d entries; want leader %s's %d", n.id, s, len(got), l.id, len(want))
				}
			}
		}
		return nil
	})
}

// proposal is the outcome of a Propose made on the minority side.
type proposal struct {
	shard uint16
	data  string
	err   error
}

// proposeOn proposes data on shard at n with a timeout, and returns what
// Propose returned.
func proposeOn(n *node, shard uint16, data string, timeout time.Duration) proposal {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := n.groups.Propose(ctx, shard, []byte(data))
	return proposal{shard, data, err}
}

// checkRefused fails t for a minority proposal that succeeded or failed
// in a way Propose does not document; it returns the kind of refusal.
func checkRefused(t testing.TB, p proposal) string {
	t.Helper()
	_, nl := notLeader(p.err)
	switch {
	case p.err == nil:
		t.Errorf("shard %d: Propose(%q) on the cut-off node succeeded; want it refused", p.shard, p.data)
		return "success"
	case nl:
		return "not leader"
	case errors.Is(p.err, ErrUnknownOutcome):
		return "unknown outcome"
	case errors.Is(p.err, context.DeadlineExceeded):
		return "timeout"
	default:
		t.Errorf("shard %d: Propose(%q) on the cut-off node = %v; want NotLeaderError, ErrUnknownOutcome or a timeout", p.shard, p.data, p.err)
		return "other"
	}
}

// pickLeader returns the node of c that leads the most shards, and them;
// it waits for a node leading at least one.
func pickLeader(t testing.TB, c cluster) (*node, []uint16) {
	t.Helper()
	var best *node
	var led []uint16
	checkFor(t, 10*time.Second, func() error {
		best, led = nil, nil
		for _, n := range c {
			if l := ledBy(n); len(l) > len(led) {
				best, led = n, l
			}
		}
		if best == nil {
			return errors.New("no node leads a shard")
		}
		return nil
	})
	return best, led
}

// TestMinorityPartition cuts the node leading the most shards off from
// the other two: they elect leaders for its shards and keep committing,
// nothing proposed on the cut-off node succeeds or is ever applied, and
// after healing it catches up, stays a voter and can lead again.
func TestMinorityPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node")
	}
	c := form(t, 3, nil)
	all := []string{"node-1", "node-2", "node-3"}
	for s := range uint16(testShards) {
		data := fmt.Sprintf("before %d", s)
		c.propose(t, s, data)
		c.waitApplied(t, s, data)
	}

	a, aLed := pickLeader(t, c)
	maj := slices.DeleteFunc(slices.Clone(c), func(n *node) bool { return n == a })
	start := time.Now()
	partition(a, maj...)
	t.Logf("cut %s (leading shards %v) off from %s and %s", a.id, aLed, maj[0].id, maj[1].id)

	// Propose on a at once, on the shards it led: raft may still append
	// them there, but they cannot commit. They run while the majority
	// elects, so their timeout costs nothing.
	results := make(chan proposal, len(aLed))
	for _, s := range aLed {
		go func() { results <- proposeOn(a, s, fmt.Sprintf("minority %d", s), 3*time.Second) }()
	}

	maj.waitLeadersAmong(t, 10*time.Second)
	elected := time.Since(start)
	for s := range uint16(testShards) {
		maj.propose(t, s, fmt.Sprintf("during %d", s))
	}
	committed := time.Since(start)
	t.Logf("majority side: every shard led by %s or %s %v after the cut, and committed on every shard %v after it",
		maj[0].id, maj[1].id, elected.Round(time.Millisecond), committed.Round(time.Millisecond))
	for _, s := range aLed {
		maj.waitApplied(t, s, fmt.Sprintf("during %d", s))
	}

	var refused []proposal
	kinds := map[string]int{}
	for range aLed {
		p := <-results
		kinds[checkRefused(t, p)]++
		refused = append(refused, p)
	}
	t.Logf("proposals on %s at the cut, on the shards it led: %v", a.id, kinds)

	// Its leases have expired: it leads nothing and says so at once.
	checkFor(t, 5*time.Second, func() error {
		if l := ledBy(a); len(l) > 0 {
			return fmt.Errorf("%s still leads shards %v while cut off", a.id, l)
		}
		return nil
	})
	kinds = map[string]int{}
	for s := range uint16(testShards) {
		p := proposeOn(a, s, fmt.Sprintf("minority later %d", s), time.Second)
		kinds[checkRefused(t, p)]++
		refused = append(refused, p)
	}
	t.Logf("proposals on %s once it stepped down, every shard: %v", a.id, kinds)

	// More traffic on the majority side, so a has a gap to fill.
	for i := range 3 {
		for s := range uint16(testShards) {
			maj.propose(t, s, fmt.Sprintf("during %d-%d", s, i))
		}
	}

	start = time.Now()
	heal(a, maj...)
	c.waitSameEntries(t, 20*time.Second)
	t.Logf("healed: %s applied every entry the majority committed, on every shard, %v later", a.id, time.Since(start).Round(time.Millisecond))

	// A new entry on every shard commits everywhere, so the logs agree past
	// whatever a appended while cut off.
	for s := range uint16(testShards) {
		data := fmt.Sprintf("after %d", s)
		c.propose(t, s, data)
		c.waitApplied(t, s, data)
	}
	for _, n := range c {
		for s := range uint16(testShards) {
			got, err := n.fsms[s].entries()
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range refused {
				if p.shard == s && slices.Contains(got, p.data) {
					t.Errorf("%s shard %d: applied %q, which Propose on the cut-off node refused (%v)", n.id, s, p.data, p.err)
				}
			}
		}
	}
	c.waitVoters(t, 10*time.Second, func(uint16) []string { return all })

	// It can lead again: the balancing loop may hand it shards on its own;
	// if not, hand it one.
	start = time.Now()
	var back uint16
	how := "balancing"
	checkFor(t, 15*time.Second, func() error {
		if l := ledBy(a); len(l) > 0 {
			back = l[0]
			return nil
		}
		how = "a transfer"
		l, err := c.leader(aLed[0])
		if err != nil {
			return err
		}
		f := l.groups.groups[aLed[0]].raft.LeadershipTransferToServer(raft.ServerID(a.id), raft.ServerAddress(a.member().RaftAddr))
		if err := f.Error(); err != nil {
			return fmt.Errorf("shard %d: transfer to %s: %w", aLed[0], a.id, err)
		}
		return errors.New("transferred; checking")
	})
	data := "led again"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := a.groups.Propose(ctx, back, []byte(data)); err != nil {
		t.Fatalf("%s: Propose(%d) as leader again = %v", a.id, back, err)
	}
	c.waitApplied(t, back, data)
	t.Logf("%s leads shard %d again (by %s) %v after the checks, and commits there", a.id, back, how, time.Since(start).Round(time.Millisecond))
}

// TestLeaderIsolatedFromOneFollower cuts only the link between a leader
// and one follower; the third node sees both. Every shard keeps
// committing, and the cut follower catches up after healing.
func TestLeaderIsolatedFromOneFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node")
	}
	c := form(t, 3, nil)
	// Let the balancing loop spread the leaders first, so that a leader
	// moving during the split is the split's doing.
	limit := balanceLimit(testShards, len(c))
	checkFor(t, 15*time.Second, func() error {
		c.waitLeadersAmong(t, 5*time.Second)
		for _, n := range c {
			if l := ledBy(n); len(l) > limit {
				return fmt.Errorf("%s leads %d shards; balancing stops at %d", n.id, len(l), limit)
			}
		}
		return nil
	})
	a, aLed := pickLeader(t, c)
	terms := make(map[uint16]uint64)
	for _, st := range a.groups.Status() {
		terms[st.Shard] = st.Term
	}
	var b, mid *node
	for _, n := range c {
		switch {
		case n == a:
		case b == nil:
			b = n
		default:
			mid = n
		}
	}
	start := time.Now()
	partition(a, b)
	t.Logf("cut %s (leading shards %v) off from %s; %s sees both", a.id, aLed, b.id, mid.id)

	// Every shard commits on the nodes its leader reaches: a's leader
	// stays, as mid makes its quorum and, having a leader, refuses b's
	// pre-votes.
	for i := range 3 {
		for s := range uint16(testShards) {
			data := fmt.Sprintf("split %d-%d", s, i)
			c.propose(t, s, data)
			l, err := c.leader(s)
			if err != nil {
				t.Fatal(err)
			}
			reach := cluster{l, mid}
			if l == mid {
				reach = c // mid reaches both
			}
			reach.waitApplied(t, s, data)
		}
	}
	t.Logf("every shard committed 3 entries in %v with %s and %s cut apart", time.Since(start).Round(time.Millisecond), a.id, b.id)
	// No election disturbed a's shards: b, hearing nothing from a, asks
	// for pre-votes, and mid refuses them while it hears from a.
	for _, st := range a.groups.Status() {
		if slices.Contains(aLed, st.Shard) && (st.State != "Leader" || st.Term != terms[st.Shard]) {
			t.Errorf("shard %d: %s is %s in term %d; want it still leading in term %d", st.Shard, a.id, st.State, st.Term, terms[st.Shard])
		}
	}

	start = time.Now()
	heal(a, b)
	c.waitSameEntries(t, 20*time.Second)
	t.Logf("healed: every node holds every shard's entries %v later", time.Since(start).Round(time.Millisecond))
}
