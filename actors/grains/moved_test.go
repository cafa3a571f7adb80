package grains_test

import (
	"context"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/gateway"
	"github.com/chatpacket/chatpacket/actors/grainpb"
	"github.com/chatpacket/chatpacket/actors/nodetest"
	"github.com/chatpacket/chatpacket/storage"
)

// seqSink collects the seqs a watch delivers.
type seqSink chan uint64

func (s seqSink) Deliver(ev *grainpb.ConversationEvent) error {
	if m := ev.GetMessage(); m != nil {
		s <- m.Seq
	}
	return nil
}

func (s seqSink) next(t *testing.T, want uint64) {
	t.Helper()
	select {
	case got := <-s:
		if got != want {
			t.Fatalf("delivered seq %d; want %d", got, want)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("seq %d not delivered within 15 s", want)
	}
}

// TestWatchFollowsAMovedGrain: a gateway watch on node b follows a conversation
// whose grain lives on node a; a drains, the grain moves to b with its
// shard's leadership, and the next message reaches the watch at once (the
// new activation announces itself; the gateway subscribes again), long
// before the lease renewal would have.
func TestWatchFollowsAMovedGrain(t *testing.T) {
	if testing.Short() {
		t.Skip("two nodes and a drain")
	}
	a := nodetest.Start(t)
	b := nodetest.Start(t, a.GossipAddr())
	gw := gateway.New(b.Cluster, nodetest.Quiet)
	t.Cleanup(gw.Close)
	tenant, visitor := storage.NewID(), storage.NewID()
	post := func(conv storage.ID, clientID string) {
		t.Helper()
		if _, err := grainpb.GetConversationGrainClient(b.Cluster, conv.String()).Post(&grainpb.PostRequest{
			TenantId: tenant[:], VisitorId: visitor[:], ClientId: clientID, Body: clientID,
			Author: &actorspb.Author{Kind: actorspb.AuthorKind_AUTHOR_KIND_VISITOR, Id: visitor[:]},
		}); err != nil {
			t.Fatalf("Post(%s) = %v", clientID, err)
		}
	}
	// Every shard is led by a (the first node) until b is added as voter.
	var conv storage.ID
	for {
		conv = storage.NewID()
		if leader, _ := a.Shards().Groups.Leader(storage.ShardOf(conv[:], a.DB.Shards())); leader != "" && a.Shards().Groups.IsLeader(storage.ShardOf(conv[:], a.DB.Shards())) {
			break
		}
	}
	post(conv, "c1")
	s := make(seqSink, 10)
	w, err := gw.Watch(tenant, conv, 0, s)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	s.next(t, 1)

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
		t.Fatal(err)
	}
	start := time.Now()
	post(conv, "c2")
	s.next(t, 2)
	if d := time.Since(start); d > gateway.Lease/3 {
		t.Fatalf("the message after the move took %v; want it before a lease renewal (%v)", d, gateway.Lease/3)
	}
}
