package grains_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/grainpb"
	"github.com/chatpacket/chatpacket/actors/grains"
	"github.com/chatpacket/chatpacket/actors/nodetest"
	"github.com/chatpacket/chatpacket/cluster"
	"github.com/chatpacket/chatpacket/storage"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, nodetest.LeakIgnores...) }

func startNode(t *testing.T, join ...string) *cluster.Node { return nodetest.Start(t, join...).Node }

// subscriber is an actor that hands the events it receives to a channel.
func subscriber(t *testing.T, n *cluster.Node) (*actor.PID, <-chan *grainpb.ConversationEvent) {
	t.Helper()
	events := make(chan *grainpb.ConversationEvent, 100)
	pid := n.System.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if ev, ok := c.Message().(*grainpb.ConversationEvent); ok {
			events <- ev
		}
	}))
	t.Cleanup(func() { n.System.Root.Stop(pid) })
	return pid, events
}

func nextEvent(t *testing.T, events <-chan *grainpb.ConversationEvent) *grainpb.ConversationEvent {
	t.Helper()
	select {
	case ev := <-events:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5 s")
		return nil
	}
}

func visitorAuthor(v storage.ID) *actorspb.Author {
	return &actorspb.Author{Kind: actorspb.AuthorKind_AUTHOR_KIND_VISITOR, Id: v[:]}
}

func TestConversationGrain(t *testing.T) {
	n := startNode(t)
	tenant, visitor, agent := storage.NewID(), storage.NewID(), storage.NewID()
	conv := grainpb.GetConversationGrainClient(n.Cluster, storage.NewID().String())
	pid, events := subscriber(t, n)

	// Subscribing to a conversation that does not exist yet is not found.
	sub := &grainpb.SubscribeRequest{TenantId: tenant[:], SubscriberAddress: pid.Address, SubscriberId: pid.Id, LeaseMs: 30000}
	if _, err := conv.Subscribe(sub); grains.Reason(err) != grains.ReasonNotFound {
		t.Fatalf("Subscribe before the first message = %v; want %s", err, grains.ReasonNotFound)
	}

	post := &grainpb.PostRequest{TenantId: tenant[:], VisitorId: visitor[:], Author: visitorAuthor(visitor), ClientId: "c1", Body: "hello"}
	res, err := conv.Post(post)
	if err != nil || res.Seq != 1 || !res.Created {
		t.Fatalf("Post = %+v, %v; want seq 1, created", res, err)
	}
	if s, err := conv.Subscribe(sub); err != nil || s.LastSeq != 1 {
		t.Fatalf("Subscribe = %+v, %v; want last seq 1", s, err)
	}
	res, err = conv.Post(&grainpb.PostRequest{TenantId: tenant[:], Author: &actorspb.Author{Kind: actorspb.AuthorKind_AUTHOR_KIND_AGENT, Id: agent[:]}, ClientId: "a1", Body: "hi, how can I help?"})
	if err != nil || res.Seq != 2 {
		t.Fatalf("agent Post = %+v, %v; want seq 2", res, err)
	}
	if ev := nextEvent(t, events); ev.GetMessage().GetSeq() != 2 || ev.GetMessage().GetBody() != "hi, how can I help?" {
		t.Fatalf("event = %v; want message 2", ev)
	}

	// A retried post is answered with its first seq and published no more.
	if res, err := conv.Post(post); err != nil || res.Seq != 1 || !res.Duplicate {
		t.Fatalf("retried Post = %+v, %v; want seq 1, duplicate", res, err)
	}
	if _, err := conv.Typing(&grainpb.TypingRequest{TenantId: tenant[:], Author: visitorAuthor(visitor)}); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, events); ev.GetTyping() == nil {
		t.Fatalf("event after a duplicate post and typing = %v; want typing (the duplicate must not be published)", ev)
	}

	read, err := conv.Read(&grainpb.ReadRequest{TenantId: tenant[:], After: 0, Limit: 10})
	if err != nil || len(read.Messages) != 2 || read.Messages[0].Body != "hello" || read.Messages[1].Seq != 2 {
		t.Fatalf("Read = %v, %v", read, err)
	}
	if mr, err := conv.MarkRead(&grainpb.MarkReadRequest{TenantId: tenant[:], ReaderId: visitor[:], Seq: 2}); err != nil || mr.Seq != 2 {
		t.Fatalf("MarkRead = %v, %v", mr, err)
	}
	if ev := nextEvent(t, events); ev.GetRead().GetSeq() != 2 {
		t.Fatalf("event = %v; want read up to 2", ev)
	}
	info, err := conv.Close(&grainpb.CloseRequest{TenantId: tenant[:]})
	if err != nil || info.Conversation.Status != actorspb.ConversationStatus_CONVERSATION_STATUS_CLOSED {
		t.Fatalf("Close = %v, %v", info, err)
	}
	if ev := nextEvent(t, events); ev.GetChanged() == nil {
		t.Fatalf("event = %v; want changed", ev)
	}

	// After Unsubscribe the subscriber hears nothing more: a typing event,
	// sent after a fresh subscriber is added, reaches only the new one.
	if _, err := conv.Unsubscribe(&grainpb.UnsubscribeRequest{TenantId: tenant[:], SubscriberAddress: pid.Address, SubscriberId: pid.Id}); err != nil {
		t.Fatal(err)
	}
	pid2, events2 := subscriber(t, n)
	if _, err := conv.Subscribe(&grainpb.SubscribeRequest{TenantId: tenant[:], SubscriberAddress: pid2.Address, SubscriberId: pid2.Id, LeaseMs: 30000}); err != nil {
		t.Fatal(err)
	}
	if _, err := conv.Typing(&grainpb.TypingRequest{TenantId: tenant[:], Author: visitorAuthor(visitor)}); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, events2); ev.GetTyping() == nil {
		t.Fatalf("new subscriber's event = %v; want typing", ev)
	}
	// A negative can only be waited for: the old subscriber's mailbox gets
	// its events as fast as the new one's, so 200 ms is ample.
	select {
	case ev := <-events:
		t.Fatalf("an unsubscribed subscriber got %v", ev)
	case <-time.After(200 * time.Millisecond):
	}

	// Another tenant sees nothing, and bad input is refused.
	other := storage.NewID()
	if _, err := conv.Read(&grainpb.ReadRequest{TenantId: other[:]}); grains.Reason(err) != grains.ReasonNotFound {
		t.Fatalf("Read by another tenant = %v; want %s", err, grains.ReasonNotFound)
	}
	if _, err := conv.Post(&grainpb.PostRequest{TenantId: tenant[:], Author: visitorAuthor(visitor), ClientId: "c9"}); grains.Reason(err) != grains.ReasonInvalid {
		t.Fatalf("Post without a body = %v; want %s", err, grains.ReasonInvalid)
	}
}

// TestConversationsAcrossNodes calls conversations from one node of two:
// some grains live on the other node, and their events still reach a
// subscriber on the calling node.
func TestConversationsAcrossNodes(t *testing.T) {
	a := startNode(t)
	b := startNode(t, a.GossipAddr())
	deadline := time.Now().Add(10 * time.Second)
	for a.Members() != 2 || b.Members() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("members: a sees %d, b sees %d; want 2", a.Members(), b.Members())
		}
		time.Sleep(20 * time.Millisecond)
	}
	tenant, visitor := storage.NewID(), storage.NewID()
	pid, events := subscriber(t, a)
	const conversations = 12
	for i := range conversations {
		conv := grainpb.GetConversationGrainClient(a.Cluster, storage.NewID().String())
		if _, err := conv.Post(&grainpb.PostRequest{TenantId: tenant[:], VisitorId: visitor[:], Author: visitorAuthor(visitor), ClientId: "first", Body: "first"}); err != nil {
			t.Fatalf("Post %d = %v", i, err)
		}
		if _, err := conv.Subscribe(&grainpb.SubscribeRequest{TenantId: tenant[:], SubscriberAddress: pid.Address, SubscriberId: pid.Id, LeaseMs: 30000}); err != nil {
			t.Fatalf("Subscribe %d = %v", i, err)
		}
		if _, err := conv.Post(&grainpb.PostRequest{TenantId: tenant[:], Author: visitorAuthor(visitor), ClientId: "second", Body: fmt.Sprint("second ", i)}); err != nil {
			t.Fatalf("second Post %d = %v", i, err)
		}
		if ev := nextEvent(t, events); ev.GetMessage().GetBody() != fmt.Sprint("second ", i) {
			t.Fatalf("event %d = %v", i, ev)
		}
	}
}
