package grains_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/grainpb"
	"github.com/chatpacket/chatpacket/actors/nodetest"
	"github.com/chatpacket/chatpacket/cluster"
	"github.com/chatpacket/chatpacket/storage"
)

// remoteOfLeader is the actor address of the node that leads the shard of
// id, as n sees it.
func remoteOfLeader(t *testing.T, n *cluster.Node, id storage.ID, shards int) string {
	t.Helper()
	leader, ok := n.Shards().Groups.Leader(storage.ShardOf(id[:], shards))
	if !ok {
		return ""
	}
	for _, p := range n.Peers() {
		if p.NodeID == leader {
			return p.RemoteAddr
		}
	}
	return ""
}

// TestGrainsLiveOnTheirShardLeader: every conversation grain is activated
// on the leader of its conversation's shard; when that node drains, the
// grains move with the leaderships, and the conversations go on where they
// were (no seq lost or given twice).
func TestGrainsLiveOnTheirShardLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("two nodes and a drain")
	}
	a := nodetest.Start(t)
	b := nodetest.Start(t, a.GossipAddr())
	shards := a.DB.Shards()
	tenant, visitor := storage.NewID(), storage.NewID()
	convs := make([]storage.ID, 12)
	for i := range convs {
		convs[i] = storage.NewID()
		res, err := grainpb.GetConversationGrainClient(a.Cluster, convs[i].String()).Post(&grainpb.PostRequest{
			TenantId: tenant[:], VisitorId: visitor[:], Author: visitorAuthor(visitor), ClientId: "first", Body: "first"})
		if err != nil || res.Seq != 1 {
			t.Fatalf("Post %d = %v, %v", i, res, err)
		}
	}
	where := func(n *cluster.Node, conv storage.ID) string {
		pid := n.Cluster.Get(conv.String(), "Conversation")
		if pid == nil {
			return ""
		}
		return pid.Address
	}
	for i, conv := range convs {
		if got, want := where(b.Node, conv), remoteOfLeader(t, b.Node, conv, shards); got != want || got == "" {
			t.Fatalf("conversation %d lives at %q; its shard's leader is at %q", i, got, want)
		}
	}

	// Wait until b is a voter of every shard (the leaders add it), then
	// drain a: every leadership, and every grain, moves to b.
	deadline := time.Now().Add(20 * time.Second)
	for !votersEverywhere(b.Node, 2) {
		if time.Now().After(deadline) {
			t.Fatal("b did not become a voter of every shard")
		}
		time.Sleep(100 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Drain(ctx); err != nil {
		t.Fatalf("drain a: %v", err)
	}
	for i, conv := range convs {
		res, err := grainpb.GetConversationGrainClient(a.Cluster, conv.String()).Post(&grainpb.PostRequest{
			TenantId: tenant[:], Author: visitorAuthor(visitor), ClientId: "second", Body: fmt.Sprint("second ", i)})
		if err != nil || res.Seq != 2 {
			t.Fatalf("Post %d after the drain = %v, %v; want seq 2", i, res, err)
		}
		if got := where(a.Node, conv); got != b.System.Address() {
			t.Fatalf("conversation %d lives at %q after the drain; want b at %q", i, got, b.System.Address())
		}
	}
}

// votersEverywhere reports whether every shard has at least n voters and
// a leader, as node sees it.
func votersEverywhere(node *cluster.Node, n int) bool {
	for _, s := range node.Shards().Groups.Status() {
		if len(s.Voters) < n || s.LeaderID == "" {
			return false
		}
	}
	return true
}
