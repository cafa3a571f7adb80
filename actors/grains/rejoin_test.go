package grains_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/grainpb"
	"github.com/chatpacket/chatpacket/actors/nodetest"
	"github.com/chatpacket/chatpacket/cluster"
	"github.com/chatpacket/chatpacket/storage"
)

// TestBlockedNodeRejoins: protoactor blocks a member it once saw leave for
// ever (../shared/PITFALLS.md), as after a pause longer than failure
// detection. Node b blocks node a's member id; a learns it from b, rejoins
// under a new member id keeping its shard replicas, and grain calls work
// both ways again, on every shard, with the conversations' seqs going on
// where they were.
func TestBlockedNodeRejoins(t *testing.T) {
	if testing.Short() {
		t.Skip("two nodes and a rejoin")
	}
	a := nodetest.Start(t)
	b := nodetest.Start(t, a.GossipAddr())
	tenant, visitor := storage.NewID(), storage.NewID()
	convs := make([]storage.ID, 16) // every shard of 8, most likely
	for i := range convs {
		convs[i] = storage.NewID()
	}
	postAll := func(via *cluster.Node, round int) {
		t.Helper()
		for i, conv := range convs {
			clientID := fmt.Sprintf("r%d-c%d", round, i)
			res, err := grainpb.GetConversationGrainClient(via.Cluster, conv.String()).Post(&grainpb.PostRequest{
				TenantId: tenant[:], VisitorId: visitor[:], ClientId: clientID, Body: clientID,
				Author: &actorspb.Author{Kind: actorspb.AuthorKind_AUTHOR_KIND_VISITOR, Id: visitor[:]},
			})
			if err != nil {
				t.Fatalf("round %d: Post(%s) via %s = %v", round, clientID, via.System.ID, err)
			}
			if res.Seq != uint64(round) {
				t.Fatalf("round %d: Post(%s) got seq %d; want %d", round, clientID, res.Seq, round)
			}
		}
	}
	postAll(a.Node, 1)
	postAll(b.Node, 2)

	old := a.System.ID
	b.Cluster.Remote.BlockList().Block(old)
	select {
	case <-a.Blocked():
	case <-time.After(10 * time.Second):
		t.Fatal("a was not told within 10 s that b blocks it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	began := time.Now()
	a2, err := a.Rejoin(ctx)
	if err != nil {
		t.Fatalf("Rejoin = %v", err)
	}
	t.Cleanup(func() { a2.Stop(true) }) // before a's own cleanup closes its store
	t.Logf("rejoined in %v", time.Since(began).Round(time.Millisecond))
	if a2.System.ID == old {
		t.Fatal("rejoined under the same member id")
	}
	if a2.GossipAddr() != a.GossipAddr() {
		t.Errorf("rejoined with gossip on %s; before on %s", a2.GossipAddr(), a.GossipAddr())
	}
	waitPeer := func(n *cluster.Node, id string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			for _, p := range n.Peers() {
				if p.MemberID == id {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s does not see member %s within 10 s: %+v", n.System.ID, id, n.Peers())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitPeer(b.Node, a2.System.ID)
	waitPeer(a2, b.System.ID)
	for _, p := range b.Peers() {
		if p.MemberID == old {
			t.Errorf("b still lists a's old member id %s", old)
		}
	}
	postAll(a2, 3)
	postAll(b.Node, 4)
	select {
	case <-a2.Blocked():
		t.Error("the rejoined node is blocked too")
	default:
	}
}
