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
	"github.com/chatpacket/chatpacket/storage"
)

// TestVisitorGrain: a visitor starts a session, posts in two
// conversations, and finds both in its list, newest first; another
// tenant's caller finds nothing.
func TestVisitorGrain(t *testing.T) {
	n := nodetest.Start(t)
	tenant, visitorID := storage.NewID(), storage.NewID()
	v := grainpb.GetVisitorGrainClient(n.Cluster, visitorID.String())
	start := &grainpb.StartRequest{TenantId: tenant[:], Create: true, SessionId: "vs_test", Tech: &actorspb.VisitorTech{Browser: "Firefox"}}
	if _, err := v.Start(start); err != nil {
		t.Fatalf("Start = %v", err)
	}
	if _, err := v.Start(start); err != nil {
		t.Fatalf("retried Start = %v; want nil (idempotent)", err)
	}
	if rec, err := n.Machine.Visitor(t.Context(), tenant, visitorID); err != nil || rec.GetTech().GetBrowser() != "Firefox" {
		t.Fatalf("visitor record = %v, %v", rec, err)
	}
	if _, err := v.PageView(&grainpb.PageViewRequest{TenantId: tenant[:], View: &actorspb.PageViewRecord{Url: "https://shop.example/a"}}); err != nil {
		t.Fatalf("PageView = %v", err)
	}
	if _, err := v.SetContact(&grainpb.ContactRequest{TenantId: tenant[:], Name: " Bo ", Email: "bo@example.com"}); err != nil {
		t.Fatalf("SetContact = %v", err)
	}
	if rec, _ := n.Machine.Visitor(t.Context(), tenant, visitorID); rec.ContactName != "Bo" {
		t.Fatalf("contact name = %q; want it trimmed", rec.ContactName)
	}

	var convs []storage.ID
	for i := range 2 {
		conv := storage.NewID()
		if _, err := grainpb.GetConversationGrainClient(n.Cluster, conv.String()).Post(&grainpb.PostRequest{
			TenantId: tenant[:], VisitorId: visitorID[:], Author: visitorAuthor(visitorID), ClientId: fmt.Sprint("c", i), Body: "hi",
		}); err != nil {
			t.Fatal(err)
		}
		convs = append(convs, conv)
		time.Sleep(2 * time.Millisecond) // distinct creation times
	}
	list, err := v.Conversations(&grainpb.TenantRequest{TenantId: tenant[:]})
	if err != nil || len(list.Conversations) != 2 ||
		storage.BytesID(list.Conversations[0].ConversationId) != convs[1] || storage.BytesID(list.Conversations[1].ConversationId) != convs[0] {
		t.Fatalf("Conversations = %v, %v; want both, newest first", list, err)
	}
	other := storage.NewID()
	if _, err := v.Conversations(&grainpb.TenantRequest{TenantId: other[:]}); grains.Reason(err) != grains.ReasonNotFound {
		t.Fatalf("Conversations for another tenant = %v; want %s", err, grains.ReasonNotFound)
	}
}

// TestTenantSummaries: a gateway-like subscriber of a tenant hears of a new
// conversation at once, and of a burst of messages in a few coalesced
// summaries that end with the last seq; the conversation is in the inbox.
func TestTenantSummaries(t *testing.T) {
	n := nodetest.Start(t)
	tenantID := storage.NewID()
	tenant := grainpb.GetTenantGrainClient(n.Cluster, tenantID.String())
	if _, err := tenant.Signup(signupRequest("ada@example.com")); err != nil {
		t.Fatal(err)
	}
	summaries := make(chan *grainpb.ConversationSummary, 100)
	pid := n.System.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if ev, ok := c.Message().(*grainpb.TenantEvent); ok {
			summaries <- ev.GetSummary()
		}
	}))
	t.Cleanup(func() { n.System.Root.Stop(pid) })
	if _, err := tenant.Subscribe(&grainpb.SubscribeRequest{TenantId: tenantID[:], SubscriberAddress: pid.Address, SubscriberId: pid.Id, LeaseMs: 30000}); err != nil {
		t.Fatal(err)
	}

	visitor, convID := storage.NewID(), storage.NewID()
	conv := grainpb.GetConversationGrainClient(n.Cluster, convID.String())
	const burst = 20
	for i := range burst {
		if _, err := conv.Post(&grainpb.PostRequest{TenantId: tenantID[:], VisitorId: visitor[:], Author: visitorAuthor(visitor), ClientId: fmt.Sprint("c", i), Body: "hi"}); err != nil {
			t.Fatal(err)
		}
	}
	first := nextSummary(t, summaries)
	if first.SinceSeq != 0 || first.GetConversation().GetLastSeq() != 1 {
		t.Fatalf("first summary: since %d, last %d; want the start (since 0, last 1)", first.SinceSeq, first.GetConversation().GetLastSeq())
	}
	count, since := 1, first.GetConversation().GetLastSeq()
	for since < burst {
		s := nextSummary(t, summaries)
		if s.SinceSeq != since {
			t.Fatalf("summary since %d; want %d (each picks up where the last ended)", s.SinceSeq, since)
		}
		since = s.GetConversation().GetLastSeq()
		count++
	}
	if count > burst/2 {
		t.Fatalf("%d summaries for %d messages; want them coalesced", count, burst)
	}
	t.Logf("%d messages, %d summaries", burst, count)
	inbox, err := n.Machine.Inbox(t.Context(), tenantID, storage.ID{}, 10)
	if err != nil || len(inbox) != 1 || storage.BytesID(inbox[0].ConversationId) != convID {
		t.Fatalf("inbox = %v, %v; want the conversation", inbox, err)
	}

	// Closing is summarized at once.
	if _, err := conv.Close(&grainpb.CloseRequest{TenantId: tenantID[:]}); err != nil {
		t.Fatal(err)
	}
	if s := nextSummary(t, summaries); s.GetConversation().GetStatus() != actorspb.ConversationStatus_CONVERSATION_STATUS_CLOSED {
		t.Fatalf("summary after close = %v; want closed", s)
	}
}

func nextSummary(t *testing.T, ch <-chan *grainpb.ConversationSummary) *grainpb.ConversationSummary {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no summary within 5 s")
		return nil
	}
}
