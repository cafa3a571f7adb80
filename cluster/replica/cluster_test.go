package replica

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestThreeNodes forms a cluster of three from one bootstrapped node,
// proposes through leaders and at a follower, kills a node, and restarts
// it from its dir on a new port.
func TestThreeNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node")
	}
	c := form(t, 3, nil)
	all := []string{"node-1", "node-2", "node-3"}

	for s := range uint16(testShards) {
		data := fmt.Sprintf("a%d", s)
		r := c.propose(t, s, data)
		if r.Shard != s || r.Data != data {
			t.Fatalf("shard %d: response %+v", s, r)
		}
		c.waitApplied(t, s, data)
	}

	// A follower names the leader.
	lead, err := c.leader(5)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c {
		if n == lead {
			continue
		}
		_, err := n.groups.Propose(context.Background(), 5, []byte("at a follower"))
		nl, ok := notLeader(err)
		if !ok || nl.LeaderID != lead.id || nl.LeaderAddr != lead.mux.Addr().String() {
			t.Errorf("%s: Propose(5) = %v; want NotLeaderError naming %s at %s", n.id, err, lead.id, lead.mux.Addr())
		}
	}

	// Kill the node leading shard 0: Close without leaving.
	victim, err := c.leader(0)
	if err != nil {
		t.Fatal(err)
	}
	victim.stop()
	start := time.Now()
	c.setMembers()
	checkFor(t, 10*time.Second, func() error {
		for s := range uint16(testShards) {
			if _, err := c.leader(s); err != nil {
				return err
			}
		}
		return nil
	})
	t.Logf("killed %s: every shard led by the other two %v later", victim.id, time.Since(start).Round(time.Millisecond))
	for s := range uint16(testShards) {
		data := fmt.Sprintf("b%d", s)
		c.propose(t, s, data)
		c.waitApplied(t, s, data)
	}
	t.Logf("and every shard committed on both survivors %v after the kill", time.Since(start).Round(time.Millisecond))

	// Restart it from its dir, on a new port: it is still a voter (it was
	// gone for less than DeadTimeout), its address is updated, and it
	// catches up.
	old := victim.mux.Addr().String()
	victim.start(t)
	start = time.Now()
	c.setMembers()
	c.waitVoters(t, 15*time.Second, func(uint16) []string { return all })
	checkFor(t, 15*time.Second, func() error {
		addr := victim.mux.Addr().String()
		for s := range uint16(testShards) {
			l, err := c.leader(s)
			if err != nil {
				return err
			}
			if got := l.groups.serverAddr(s, victim.id); got != addr {
				return fmt.Errorf("shard %d: %s at %s in the configuration; want %s (was %s)", s, victim.id, got, addr, old)
			}
		}
		return nil
	})
	for s := range uint16(testShards) {
		c.waitApplied(t, s, fmt.Sprintf("b%d", s))
		data := fmt.Sprintf("c%d", s)
		c.propose(t, s, data)
		c.waitApplied(t, s, data)
	}
	t.Logf("restarted %s on a new port: voter at its new address and caught up on every shard %v after", victim.id, time.Since(start).Round(time.Millisecond))
}

// TestJoinAndDrain grows three nodes to four, checks voters follow
// rendezvous placement, then drains one node while proposals continue.
func TestJoinAndDrain(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node")
	}
	c := form(t, 3, nil)

	n4 := newNode(t, "node-4")
	n4.start(t)
	c = append(c, n4)
	start := time.Now()
	c.setMembers()
	ids := []string{"node-1", "node-2", "node-3", "node-4"}
	c.waitVoters(t, 20*time.Second, func(s uint16) []string { return place(ids, s, 3) })
	moved := 0
	for s := range uint16(testShards) {
		if slices.Contains(place(ids, s, 3), "node-4") {
			moved++
		}
	}
	if moved == 0 {
		t.Fatalf("no shard placed on node-4; the test proves nothing")
	}
	t.Logf("4th node: %d of %d shards moved a replica to it, settled %v after SetMembers", moved, testShards, time.Since(start).Round(time.Millisecond))
	for s := range uint16(testShards) {
		c.propose(t, s, fmt.Sprintf("four %d", s))
	}

	// node-4 holds some shards only: it waits for their leaders alone, and
	// for the others it knows no leader but the placement that does.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n4.groups.WaitLeaders(ctx); err != nil {
		t.Errorf("node-4: WaitLeaders() = %v", err)
	}
	away := shardWhere(t, ids, func(d []string) bool { return !slices.Contains(d, "node-4") })
	if away >= testShards {
		t.Fatalf("shard %d: every shard of %d is placed on node-4", away, testShards)
	}
	checkFor(t, 5*time.Second, func() error {
		_, err := n4.groups.Propose(context.Background(), away, []byte("elsewhere"))
		if nl, ok := notLeader(err); !ok || nl.LeaderID != "" {
			return fmt.Errorf("node-4: Propose(%d) = %v; want NotLeaderError without a leader", away, err)
		}
		return nil
	})
	placed := n4.groups.Placement(away)
	if !slices.Equal(placed, place(ids, away, 3)) {
		t.Errorf("node-4: Placement(%d) = %v; want %v", away, placed, place(ids, away, 3))
	}
	_, err := c.byID(placed[0]).groups.Propose(context.Background(), away, []byte("via placement"))
	if nl, ok := notLeader(err); err != nil && (!ok || !slices.Contains(placed, nl.LeaderID)) {
		t.Errorf("%s (placed first for shard %d): Propose = %v; want success or a NotLeaderError naming a placed node", placed[0], away, err)
	}

	// Drain node-2 while a writer keeps proposing on every shard.
	drained := c.byID("node-2")
	rest := slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == drained.id })
	stop := make(chan struct{})
	wrote := make(chan int, 1)
	stopped := false
	defer func() {
		if !stopped { // a Fatalf below: stop the writer before cleanup stops the nodes
			close(stop)
			<-wrote
		}
	}()
	go func() {
		n := 0
		defer func() { wrote <- n }()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			s := uint16(i % testShards)
			for _, nd := range c {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_, err := nd.groups.Propose(ctx, s, []byte(fmt.Sprintf("during %d", i)))
				cancel()
				if err == nil {
					n++
					break
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	start = time.Now()
	c.setMembers(drained.id)
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The removed node may never get the entry that removes it (raft
	// sends it once); it asks the shard's leader, as cluster.Node.Drain
	// does through the node's forwarder.
	removed := func(shard uint16) bool {
		leader, err := c.leader(shard)
		return err == nil && leader != drained && !slices.Contains(leader.groups.Voters(shard), drained.id)
	}
	if err := drained.groups.DrainConfirmed(ctx, removed); err != nil {
		t.Fatalf("DrainConfirmed() = %v", err)
	}
	t.Logf("drain: %s leads nothing and votes nowhere %v after Drain", drained.id, time.Since(start).Round(time.Millisecond))
	c.waitVoters(t, 20*time.Second, func(s uint16) []string { return place(rest, s, 3) })
	close(stop)
	stopped = true
	if n := <-wrote; n == 0 {
		t.Errorf("no proposal committed during the drain")
	} else {
		t.Logf("%d proposals committed during the drain", n)
	}
	for _, st := range drained.groups.Status() {
		if st.State == "Leader" || slices.Contains(st.Voters, drained.id) {
			t.Errorf("drained node: shard %d: %+v", st.Shard, st)
		}
	}
	for s := range uint16(testShards) {
		data := fmt.Sprintf("after drain %d", s)
		c.propose(t, s, data)
	}
}
