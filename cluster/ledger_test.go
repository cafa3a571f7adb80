package cluster_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/nodetest"
	shardpkg "github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/storage"
)

// TestErasureReachesEveryNode: a visitor's message is written on a
// 4-node cluster with 3 replicas per shard, then their key is shredded.
// Every node enters the key in its ledger, the node that holds no replica
// of the visitor's shard included (it can only learn it from the ledger
// exchange), and the replicas scrub the message out of their raft state:
// nothing any node can still open holds it. A key shredded on one node
// alone reaches the others through the ledger exchange.
func TestErasureReachesEveryNode(t *testing.T) {
	if testing.Short() {
		t.Skip("a 4-node cluster: skipped with -short")
	}
	nodes := []*nodetest.Node{nodetest.Start(t)}
	for range 3 {
		nodes = append(nodes, nodetest.Start(t, nodes[0].GossipAddr()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	tenant, visitor := storage.NewID(), storage.NewID()
	// A conversation whose shard some node holds no replica of, once
	// placement has settled on 3 replicas per shard.
	var conv storage.ID
	var outsider *nodetest.Node
	conv = storage.NewID()
	shard := storage.ShardOf(conv[:], nodes[0].DB.Shards())
	waitUntil(t, 30*time.Second, func() error { // placement settled: the leader's voters are the placed nodes
		want := nodes[0].Shards().Groups.Placement(shard)
		for _, n := range nodes {
			if !n.Shards().Groups.IsLeader(shard) {
				continue
			}
			if got := n.Shards().Groups.Voters(shard); !sameSet(got, want) {
				return fmt.Errorf("shard %d: voters %v; placement %v", shard, got, want)
			}
			for _, m := range nodes {
				if !slices.Contains(want, m.Shards().Groups.NodeID()) {
					outsider = m
				}
			}
			return nil
		}
		return fmt.Errorf("shard %d has no leader", shard)
	})
	if outsider == nil {
		t.Fatal("every node holds the shard")
	}

	canary := []byte("canary-" + storage.NewID().String())
	post := &actorspb.Command{Op: &actorspb.Command_Post{Post: &actorspb.PostMessage{
		TenantId: tenant[:], ConversationId: conv[:], VisitorId: visitor[:], ClientId: "c1", Body: string(canary),
		Author: &actorspb.Author{Kind: actorspb.AuthorKind_AUTHOR_KIND_VISITOR, Id: visitor[:]}, UnixMs: time.Now().UnixMilli(),
	}}}
	if _, err := nodes[0].Machine.Apply(ctx, post); err != nil {
		t.Fatal(err)
	}
	key := storage.SubjectKey(tenant, visitor).ID
	waitUntil(t, 10*time.Second, func() error { return holdsCanary(ctx, nodes, canary, true) })

	if err := outsider.Machine.Shred(ctx, visitor, time.Now(), key); err != nil {
		t.Fatal(err)
	}
	shredded := time.Now()
	waitUntil(t, 20*time.Second, func() error {
		for i, n := range nodes {
			if ok, err := n.DB.Shredded(key); err != nil || !ok {
				return fmt.Errorf("node %d has not shredded the key yet (%v)", i+1, err)
			}
		}
		return nil
	})
	t.Logf("every node's ledger has the key %v after the shred", time.Since(shredded).Round(time.Millisecond))
	waitUntil(t, 30*time.Second, func() error { return holdsCanary(ctx, nodes, canary, false) })
	t.Logf("no node holds the canary %v after the shred", time.Since(shredded).Round(time.Millisecond))
	// A key that one node alone shredded (as if the push had not reached
	// the others) reaches them through the ledger exchange.
	lone := storage.SubjectKey(tenant, storage.NewID()).ID
	if err := nodes[1].DB.Shred(ctx, lone); err != nil {
		t.Fatal(err)
	}
	exchanged := time.Now()
	waitUntil(t, 20*time.Second, func() error {
		for i, n := range nodes {
			if ok, err := n.DB.Shredded(lone); err != nil || !ok {
				return fmt.Errorf("node %d has not learnt the key from the exchange yet (%v)", i+1, err)
			}
		}
		return nil
	})
	t.Logf("the exchange brought a lone shred to every node in %v", time.Since(exchanged).Round(time.Millisecond))

	msgs, err := outsider.Machine.Messages(ctx, tenant, conv, 0, 10)
	if err != nil || len(msgs) != 1 || !msgs[0].Erased {
		for i, n := range nodes {
			g := n.Shards().Groups
			var rec actorspb.ConversationRecord
			_, cerr := n.Machine.Conversation(ctx, tenant, conv)
			derr := n.DB.Get(ctx, storage.Key(shard, shardpkg.TableConversation, conv[:]), &rec)
			t.Logf("node %d (%s, outsider %v): leader %v replica %v voters %v applied %d; Conversation %v; in its store %v", i+1, g.NodeID(), n == outsider,
				g.IsLeader(shard), g.HasReplica(shard), g.Voters(shard), n.Machine.FSM(shard).Applied(), cerr, derr)
		}
		g := outsider.Shards().Groups
		t.Fatalf("the conversation after the erasure: %+v, %v; want one erased message (the outsider: leader %v, replica %v, voters %v)", msgs, err, g.IsLeader(shard), g.HasReplica(shard), g.Voters(shard))
	}
}

// holdsCanary reports, as an error, whether some node (want true: no
// node) can open a record holding canary, raft state included.
func holdsCanary(ctx context.Context, nodes []*nodetest.Node, canary []byte, want bool) error {
	found := 0
	for _, n := range nodes {
		err := n.DB.ScanOpen(ctx, []byte{0}, []byte{0xff, 0xff}, func(key, plaintext []byte, err error) error {
			if err == nil && bytes.Contains(plaintext, canary) {
				found++
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	switch {
	case want && found == 0:
		return fmt.Errorf("no node holds the canary yet")
	case !want && found > 0:
		return fmt.Errorf("%d records still hold the canary", found)
	}
	return nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func waitUntil(t *testing.T, within time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
