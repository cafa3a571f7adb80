package replica

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestDeadNodeReplaced kills one of four nodes and checks that, after
// DeadTimeout, every shard it held gets a replacement voter and follows
// the placement of the three survivors.
func TestDeadNodeReplaced(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node")
	}
	const dead = 2 * time.Second
	tune := func(c *Config) { c.Timing.DeadTimeout = dead }
	c := form(t, 3, func(n *node) { n.tune = tune })
	n4 := newNode(t, "node-4")
	n4.tune = tune
	n4.start(t)
	c = append(c, n4)
	c.setMembers()
	ids := []string{"node-1", "node-2", "node-3", "node-4"}
	c.waitVoters(t, 20*time.Second, func(s uint16) []string { return place(ids, s, 3) })

	victim := c.byID("node-3")
	victim.stop()
	start := time.Now()
	c.setMembers()
	rest := []string{"node-1", "node-2", "node-4"}
	c.waitVoters(t, dead+15*time.Second, func(s uint16) []string { return place(rest, s, 3) })
	if took := time.Since(start); took < dead {
		t.Errorf("voters replaced %v after the node left; want no sooner than DeadTimeout (%v)", took, dead)
	} else {
		t.Logf("killed node-3: every shard back to 3 voters on the survivors %v later (DeadTimeout %v)", took.Round(time.Millisecond), dead)
	}
	for s := range uint16(testShards) {
		data := fmt.Sprintf("after %d", s)
		c.propose(t, s, data)
		c.waitApplied(t, s, data)
	}
}

// TestCatchUpFromSnapshot adds a node to shards whose log was truncated
// behind a snapshot: raft must send it the snapshot, over the Mux, from
// the Pebble snapshot store, into the FSM's Restore.
func TestCatchUpFromSnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node")
	}
	tune := func(c *Config) {
		c.TrailingLogs = 4
		c.SnapshotThreshold = 1 << 20 // only the test takes snapshots
	}
	n1 := newNode(t, "node-1")
	n1.tune = tune
	n1.start(t)
	if err := n1.groups.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	c := cluster{n1}
	c.setMembers()
	waitLeaders(t, n1)
	for s := range uint16(testShards) {
		for i := range 30 {
			c.propose(t, s, fmt.Sprintf("s%d-%d", s, i))
		}
		grp := n1.groups.groups[s]
		if err := grp.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
			t.Fatalf("shard %d: Snapshot() = %v", s, err)
		}
		if first, err := grp.store.FirstIndex(); err != nil || first <= 1 {
			t.Fatalf("shard %d: first log index %d, %v after the snapshot; want the log truncated", s, first, err)
		}
	}

	n2 := newNode(t, "node-2")
	n2.tune = tune
	n2.start(t)
	c = append(c, n2)
	start := time.Now()
	c.setMembers()
	c.waitVoters(t, 20*time.Second, func(uint16) []string { return []string{"node-1", "node-2"} })
	for s := range uint16(testShards) {
		want, err := n1.fsms[s].entries()
		if err != nil {
			t.Fatal(err)
		}
		checkFor(t, 10*time.Second, func() error {
			got, err := n2.fsms[s].entries()
			if err != nil {
				return err
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("shard %d on node-2: %d entries; want node-1's %d", s, len(got), len(want))
			}
			return nil
		})
	}
	t.Logf("node-2 restored every shard from node-1's snapshots %v after SetMembers", time.Since(start).Round(time.Millisecond))
}
