package raftmux

import (
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestRaftGroupsShareOneListenerPerNode runs three raft groups (shards 1, 2
// and 3) of three members each on three nodes, one Mux per node: each group
// elects a leader and replicates 100 commands; then the node leading shard
// 1 loses its Mux, and every group commits 100 more on the other two.
func TestRaftGroupsShareOneListenerPerNode(t *testing.T) {
	checkLeaks(t)
	const nodes = 3
	shards := []uint16{1, 2, 3}

	muxes := make([]*Mux, nodes)
	for i := range muxes {
		muxes[i] = listen(t, testConfig())
	}
	groups := make(map[uint16]*group, len(shards))
	start := time.Now()
	for _, shard := range shards {
		transports := make([]raft.Transport, nodes)
		for i, m := range muxes {
			tr, err := m.Transport(shard, 2, 2*time.Second, quiet)
			if err != nil {
				t.Fatalf("node %d: Transport(%d) = %v", i, shard, err)
			}
			if got, want := tr.LocalAddr(), addrOf(m); got != want {
				t.Errorf("node %d shard %d: LocalAddr = %s; want the Mux's %s", i, shard, got, want)
			}
			transports[i] = tr
		}
		groups[shard] = startGroup(t, transports)
	}

	for _, shard := range shards {
		g := groups[shard]
		lead := g.leader(t, g.members, 10*time.Second)
		t.Logf("shard %d: %s leads after %v", shard, lead.id, time.Since(start))
	}
	start = time.Now()
	for _, shard := range shards {
		g := groups[shard]
		g.apply(t, g.members, 0, 100, 10*time.Second)
		g.waitApplied(t, g.members, 100, 10*time.Second)
	}
	t.Logf("3 groups x 100 commands on all 9 members in %v", time.Since(start))
	for i, m := range muxes {
		t.Logf("node %d: 1 listener, %d raft connections across %d shards", i, openConns(m), len(shards))
	}

	// Cut off the node leading shard 1: its Mux closes its listener and
	// every connection of every shard on it, a partition from both peers.
	victim := groups[1].leader(t, groups[1].members, 5*time.Second).id
	var victimNode int
	for i, m := range groups[1].members {
		if m.id == victim {
			victimNode = i
		}
	}
	start = time.Now()
	if err := muxes[victimNode].Close(); err != nil {
		t.Fatalf("Close node %d's Mux = %v", victimNode, err)
	}
	for _, shard := range shards {
		g := groups[shard]
		survivors := without(g.members, victim)
		lead := g.leader(t, survivors, 10*time.Second)
		g.apply(t, survivors, 100, 200, 15*time.Second)
		g.waitApplied(t, survivors, 200, 10*time.Second)
		t.Logf("shard %d: %s leads without node %d; 200 commands on both survivors %v after the cut",
			shard, lead.id, victimNode, time.Since(start))
	}
}
