package gateway

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/grainpb"
	"github.com/chatpacket/chatpacket/actors/nodetest"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/storage"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, nodetest.LeakIgnores...) }

type env struct {
	node    *nodetest.Node
	machine *shard.Machine
	gw      *Gateway
	tenant  storage.ID
	visitor storage.ID
}

func setup(t *testing.T) *env {
	t.Helper()
	n := nodetest.Start(t)
	gw := New(n.Cluster, nodetest.Quiet)
	t.Cleanup(gw.Close) // runs before the node's cleanup
	return &env{node: n, machine: n.Machine, gw: gw, tenant: storage.NewID(), visitor: storage.NewID()}
}

func (e *env) post(t *testing.T, conv storage.ID, clientID, body string) uint64 {
	t.Helper()
	res, err := grainpb.GetConversationGrainClient(e.node.Cluster, conv.String()).Post(&grainpb.PostRequest{
		TenantId: e.tenant[:], VisitorId: e.visitor[:], ClientId: clientID, Body: body,
		Author: &actorspb.Author{Kind: actorspb.AuthorKind_AUTHOR_KIND_VISITOR, Id: e.visitor[:]},
	})
	if err != nil {
		t.Fatalf("Post(%s) = %v", clientID, err)
	}
	return res.Seq
}

// sink records what a watch delivers.
type sink struct {
	mu   sync.Mutex
	seqs []uint64
	more chan struct{}
}

func newSink() *sink { return &sink{more: make(chan struct{}, 1)} }

func (s *sink) Deliver(ev *grainpb.ConversationEvent) error {
	if m := ev.GetMessage(); m != nil {
		s.mu.Lock()
		s.seqs = append(s.seqs, m.Seq)
		s.mu.Unlock()
		select {
		case s.more <- struct{}{}:
		default:
		}
	}
	return nil
}

// waitFor waits until the sink holds n messages and returns their seqs.
func (s *sink) waitFor(t *testing.T, n int) []uint64 {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		got := append([]uint64(nil), s.seqs...)
		s.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-s.more:
		case <-deadline:
			t.Fatalf("sink has %v; want %d messages", got, n)
		}
	}
}

func wantSeqs(t *testing.T, got []uint64, from, to uint64) {
	t.Helper()
	if len(got) != int(to-from+1) {
		t.Fatalf("delivered %v; want exactly %d..%d", got, from, to)
	}
	for i, s := range got {
		if s != from+uint64(i) {
			t.Fatalf("delivered %v; want exactly %d..%d in order", got, from, to)
		}
	}
}

func TestWatchResumesThenGoesLive(t *testing.T) {
	e := setup(t)
	conv := storage.NewID()
	for i := range 5 {
		e.post(t, conv, fmt.Sprint(i), "before")
	}
	s := newSink()
	w, err := e.gw.Watch(e.tenant, conv, 2, s)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	wantSeqs(t, s.waitFor(t, 3), 3, 5)
	e.post(t, conv, "live1", "live")
	e.post(t, conv, "live2", "live")
	e.post(t, conv, "0", "a retry: stored once, not delivered again")
	wantSeqs(t, s.waitFor(t, 5), 3, 7)
}

// TestWatchWhileMessagesArrive starts a watch from 0 while another
// goroutine posts: every message arrives once, in order, whether it came
// by the catch-up read or live.
func TestWatchWhileMessagesArrive(t *testing.T) {
	e := setup(t)
	conv := storage.NewID()
	e.post(t, conv, "first", "first")
	const n = 60
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range n - 1 {
			e.post(t, conv, fmt.Sprint(i), "racing")
		}
	})
	s := newSink()
	w, err := e.gw.Watch(e.tenant, conv, 0, s)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	wg.Wait()
	wantSeqs(t, s.waitFor(t, n), 1, n)
}

// TestGapIsFilled stores messages behind the grain's back (no events), so
// the next live event jumps: the watch reads the gap and delivers it first.
func TestGapIsFilled(t *testing.T) {
	e := setup(t)
	conv := storage.NewID()
	e.post(t, conv, "1", "one")
	s := newSink()
	w, err := e.gw.Watch(e.tenant, conv, 0, s)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	wantSeqs(t, s.waitFor(t, 1), 1, 1)
	for i := 2; i <= 3; i++ {
		_, err := e.machine.Apply(context.Background(), &actorspb.Command{Op: &actorspb.Command_Post{Post: &actorspb.PostMessage{
			TenantId: e.tenant[:], ConversationId: conv[:], VisitorId: e.visitor[:], ClientId: fmt.Sprint(i), Body: "silent",
			Author: &actorspb.Author{Kind: actorspb.AuthorKind_AUTHOR_KIND_SYSTEM}, UnixMs: time.Now().UnixMilli(),
		}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	e.post(t, conv, "4", "four")
	wantSeqs(t, s.waitFor(t, 4), 1, 4)
}

func TestWatchOfAnotherTenantIsRefused(t *testing.T) {
	e := setup(t)
	conv := storage.NewID()
	e.post(t, conv, "1", "one")
	if _, err := e.gw.Watch(storage.NewID(), conv, 0, newSink()); err == nil {
		t.Fatal("Watch by another tenant succeeded")
	}
	w, err := e.gw.Watch(e.tenant, conv, 0, newSink())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := e.gw.Watch(storage.NewID(), conv, 0, newSink()); err == nil {
		t.Fatal("a second Watch by another tenant succeeded")
	}
}
