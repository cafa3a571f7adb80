package shard

import (
	"io"
	"log/slog"

	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"github.com/chatpacket/chatpacket/cluster/raftmux"
	"github.com/chatpacket/chatpacket/cluster/replica"
	"github.com/hashicorp/raft"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// open opens a store and its machine as one node of its own: a raft group
// per shard, each with this node as its only voter (what a first node
// does), over a real listener on loopback.
func open(t *testing.T, dir string, key []byte) (*storage.DB, *Machine) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	db, err := storage.Open(ctx, storage.Options{Dir: dir, MasterKey: key, Shards: 8})
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(db)
	if err != nil {
		t.Fatal(err)
	}
	mux, err := raftmux.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	groups, err := replica.Start(ctx, replica.Config{
		NodeID: "node-1", DB: db, Mux: mux, Timing: replica.LocalTiming(), Logger: quiet,
		FSM: func(s uint16) (raft.FSM, error) { return m.FSM(s), nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := groups.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	if err := groups.WaitLeaders(ctx); err != nil {
		t.Fatal(err)
	}
	m.SetLog(soleReplica{groups})
	t.Cleanup(func() {
		m.Close()
		groups.Close()
		mux.Close()
		db.Close()
	})
	return db, m
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newKey() []byte {
	k := make([]byte, storage.MasterKeyLen)
	rand.Read(k)
	return k
}

func post(tenant, conv, visitor storage.ID, author *actorspb.Author, clientID, body string) *actorspb.Command {
	return &actorspb.Command{Op: &actorspb.Command_Post{Post: &actorspb.PostMessage{
		TenantId: tenant[:], ConversationId: conv[:], VisitorId: visitor[:], Author: author,
		ClientId: clientID, Body: body, UnixMs: time.Now().UnixMilli(),
	}}}
}

func visitorAuthor(v storage.ID) *actorspb.Author {
	return &actorspb.Author{Kind: actorspb.AuthorKind_AUTHOR_KIND_VISITOR, Id: v[:]}
}

func bodies(t *testing.T, m *Machine, tenant, conv storage.ID) []string {
	t.Helper()
	msgs, err := m.Messages(context.Background(), tenant, conv, 0, 1000)
	if err != nil {
		t.Fatalf("Messages = %v", err)
	}
	var out []string
	for i, msg := range msgs {
		if msg.Seq != uint64(i+1) {
			t.Fatalf("message %d has seq %d; want %d (gap or disorder)", i, msg.Seq, i+1)
		}
		if msg.Erased {
			out = append(out, "<erased>")
			continue
		}
		out = append(out, msg.Record.Body)
	}
	return out
}

func TestPostAssignsSeqAndIsIdempotent(t *testing.T) {
	ctx := context.Background()
	_, m := open(t, t.TempDir(), newKey())
	tenant, conv, visitor := storage.NewID(), storage.NewID(), storage.NewID()

	res, err := m.Apply(ctx, post(tenant, conv, visitor, visitorAuthor(visitor), "c1", "hello"))
	if err != nil || res.Seq != 1 || !res.Created || res.Duplicate {
		t.Fatalf("first post = %+v, %v; want seq 1, created", res, err)
	}
	res, err = m.Apply(ctx, post(tenant, conv, visitor, visitorAuthor(visitor), "c2", "again"))
	if err != nil || res.Seq != 2 || res.Created {
		t.Fatalf("second post = %+v, %v; want seq 2", res, err)
	}
	res, err = m.Apply(ctx, post(tenant, conv, visitor, visitorAuthor(visitor), "c1", "hello (retried)"))
	if err != nil || res.Seq != 1 || !res.Duplicate {
		t.Fatalf("retried post = %+v, %v; want seq 1, duplicate", res, err)
	}
	if got, want := bodies(t, m, tenant, conv), []string{"hello", "again"}; !slices.Equal(got, want) {
		t.Fatalf("messages = %q; want %q", got, want)
	}
	rec, err := m.Conversation(ctx, tenant, conv)
	if err != nil || rec.LastSeq != 2 || rec.Status != actorspb.ConversationStatus_CONVERSATION_STATUS_OPEN {
		t.Fatalf("Conversation = %+v, %v", rec, err)
	}
}

// TestConcurrentPostsGetDistinctOrderedSeqs posts from many goroutines at
// once, each message twice: every message is stored once, seqs are 1..N
// without gaps, and each retry answers its first seq.
func TestConcurrentPostsGetDistinctOrderedSeqs(t *testing.T) {
	ctx := context.Background()
	_, m := open(t, t.TempDir(), newKey())
	tenant, conv, visitor := storage.NewID(), storage.NewID(), storage.NewID()
	const n = 64
	seqs := make([][2]uint64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			for try := range 2 {
				res, err := m.Apply(ctx, post(tenant, conv, visitor, visitorAuthor(visitor), fmt.Sprint("c", i), fmt.Sprint("m", i)))
				if err != nil {
					errs[i] = err
					return
				}
				seqs[i][try] = res.Seq
			}
		})
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("post %d = %v", i, errs[i])
		}
		if seqs[i][0] != seqs[i][1] {
			t.Fatalf("post %d got seq %d, its retry %d", i, seqs[i][0], seqs[i][1])
		}
		if seen[seqs[i][0]] {
			t.Fatalf("seq %d given twice", seqs[i][0])
		}
		seen[seqs[i][0]] = true
	}
	got := bodies(t, m, tenant, conv) // checks 1..n without gaps
	if len(got) != n {
		t.Fatalf("%d messages stored; want %d", len(got), n)
	}
}

// TestAcknowledgedPostsSurviveRestart reopens the store: every answered
// post is there and seqs continue.
func TestAcknowledgedPostsSurviveRestart(t *testing.T) {
	ctx := context.Background()
	dir, key := t.TempDir(), newKey()
	db, m := open(t, dir, key)
	tenant, conv, visitor := storage.NewID(), storage.NewID(), storage.NewID()
	for i := range 10 {
		if _, err := m.Apply(ctx, post(tenant, conv, visitor, visitorAuthor(visitor), fmt.Sprint(i), fmt.Sprint("m", i))); err != nil {
			t.Fatal(err)
		}
	}
	m.Close()
	db.Close()

	_, m = open(t, dir, key)
	res, err := m.Apply(ctx, post(tenant, conv, visitor, visitorAuthor(visitor), "after", "after restart"))
	if err != nil || res.Seq != 11 {
		t.Fatalf("post after restart = %+v, %v; want seq 11", res, err)
	}
	if got := bodies(t, m, tenant, conv); len(got) != 11 || got[10] != "after restart" {
		t.Fatalf("messages after restart = %q", got)
	}
}

func TestOtherTenantsConversationIsNotFound(t *testing.T) {
	ctx := context.Background()
	_, m := open(t, t.TempDir(), newKey())
	tenant, other, conv, visitor := storage.NewID(), storage.NewID(), storage.NewID(), storage.NewID()
	if _, err := m.Apply(ctx, post(tenant, conv, visitor, visitorAuthor(visitor), "c", "mine")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Apply(ctx, post(other, conv, visitor, visitorAuthor(visitor), "c2", "theirs")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("post into another tenant's conversation = %v; want ErrNotFound", err)
	}
	if _, err := m.Messages(ctx, other, conv, 0, 10); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Messages of another tenant's conversation = %v; want ErrNotFound", err)
	}
	closeCmd := &actorspb.Command{Op: &actorspb.Command_Close{Close: &actorspb.CloseConversation{TenantId: other[:], ConversationId: conv[:], UnixMs: 1}}}
	if _, err := m.Apply(ctx, closeCmd); !errors.Is(err, ErrNotFound) {
		t.Fatalf("close of another tenant's conversation = %v; want ErrNotFound", err)
	}
	if got := bodies(t, m, tenant, conv); !slices.Equal(got, []string{"mine"}) {
		t.Fatalf("messages = %q; want only the owner's", got)
	}
}

func TestAssignCloseReadAndReopen(t *testing.T) {
	ctx := context.Background()
	_, m := open(t, t.TempDir(), newKey())
	tenant, conv, visitor, agent := storage.NewID(), storage.NewID(), storage.NewID(), storage.NewID()
	agentAuthor := &actorspb.Author{Kind: actorspb.AuthorKind_AUTHOR_KIND_AGENT, Id: agent[:]}
	must := func(cmd *actorspb.Command) *actorspb.Result {
		t.Helper()
		res, err := m.Apply(ctx, cmd)
		if err != nil {
			t.Fatalf("Apply(%v) = %v", cmd, err)
		}
		return res
	}
	must(post(tenant, conv, visitor, visitorAuthor(visitor), "v1", "hi"))
	res := must(&actorspb.Command{Op: &actorspb.Command_Assign{Assign: &actorspb.AssignConversation{TenantId: tenant[:], ConversationId: conv[:], AssigneeId: agent[:]}}})
	if string(res.Conversation.AssigneeId) != string(agent[:]) {
		t.Fatalf("assignee = %x; want %x", res.Conversation.AssigneeId, agent[:])
	}
	must(post(tenant, conv, visitor, agentAuthor, "a1", "hello, how can I help?"))
	res = must(&actorspb.Command{Op: &actorspb.Command_MarkRead{MarkRead: &actorspb.MarkRead{TenantId: tenant[:], ConversationId: conv[:], ReaderId: visitor[:], Seq: 2}}})
	if res.Seq != 2 {
		t.Fatalf("read marker = %d; want 2", res.Seq)
	}
	if _, err := m.Apply(ctx, &actorspb.Command{Op: &actorspb.Command_MarkRead{MarkRead: &actorspb.MarkRead{TenantId: tenant[:], ConversationId: conv[:], ReaderId: visitor[:], Seq: 9}}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("reading past the last message = %v; want ErrInvalid", err)
	}
	res = must(&actorspb.Command{Op: &actorspb.Command_Close{Close: &actorspb.CloseConversation{TenantId: tenant[:], ConversationId: conv[:], UnixMs: 1}}})
	if res.Conversation.Status != actorspb.ConversationStatus_CONVERSATION_STATUS_CLOSED {
		t.Fatalf("status after close = %v", res.Conversation.Status)
	}
	res = must(post(tenant, conv, visitor, visitorAuthor(visitor), "v2", "one more thing"))
	if res.Conversation.Status != actorspb.ConversationStatus_CONVERSATION_STATUS_OPEN || res.Seq != 3 {
		t.Fatalf("post to a closed conversation = %+v; want it reopened with seq 3", res)
	}
}

func TestBadCommandsChangeNothing(t *testing.T) {
	ctx := context.Background()
	_, m := open(t, t.TempDir(), newKey())
	tenant, conv, visitor := storage.NewID(), storage.NewID(), storage.NewID()
	bad := []*actorspb.Command{
		{},
		post(tenant, conv, visitor, visitorAuthor(visitor), "", "no client id"),
		post(tenant, conv, visitor, visitorAuthor(visitor), "c", ""),
		post(tenant, conv, visitor, visitorAuthor(visitor), "c", strings.Repeat("x", MaxBodyBytes+1)),
		post(tenant, conv, visitor, visitorAuthor(visitor), "c", "\xff\xfe"),
		post(tenant, conv, visitor, &actorspb.Author{Kind: actorspb.AuthorKind_AUTHOR_KIND_AGENT}, "c", "agent without id"),
		{Op: &actorspb.Command_Post{Post: &actorspb.PostMessage{TenantId: []byte("short"), ConversationId: conv[:]}}},
	}
	for _, cmd := range bad {
		if _, err := m.Apply(ctx, cmd); !errors.Is(err, ErrInvalid) {
			t.Errorf("Apply(%v) = %v; want ErrInvalid", cmd, err)
		}
	}
	if _, err := m.Conversation(ctx, tenant, conv); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused post created the conversation: %v", err)
	}
}

// TestErasedVisitor shreds a visitor's key: their messages read as erased,
// new posts fail with ErrErased, and a command failing so in a batch does
// not fail the others in it.
func TestErasedVisitor(t *testing.T) {
	ctx := context.Background()
	db, m := open(t, t.TempDir(), newKey())
	tenant, conv, visitor := storage.NewID(), storage.NewID(), storage.NewID()
	other, otherVisitor := storage.NewID(), storage.NewID()
	for i := range 3 {
		if _, err := m.Apply(ctx, post(tenant, conv, visitor, visitorAuthor(visitor), fmt.Sprint(i), "secret")); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Shred(ctx, storage.SubjectKey(tenant, visitor).ID); err != nil {
		t.Fatal(err)
	}
	if got := bodies(t, m, tenant, conv); !slices.Equal(got, []string{"<erased>", "<erased>", "<erased>"}) {
		t.Fatalf("messages after erasure = %q", got)
	}
	// Many posts at once, half for the erased visitor: those fail, the rest
	// commit.
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Go(func() {
			if i%2 == 0 {
				_, errs[i] = m.Apply(ctx, post(tenant, conv, visitor, visitorAuthor(visitor), fmt.Sprint("late", i), "late"))
			} else {
				_, errs[i] = m.Apply(ctx, post(tenant, other, otherVisitor, visitorAuthor(otherVisitor), fmt.Sprint(i), "fine"))
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if i%2 == 0 && !errors.Is(err, storage.ErrErased) {
			t.Errorf("post %d for an erased visitor = %v; want ErrErased", i, err)
		}
		if i%2 == 1 && err != nil {
			t.Errorf("post %d for another visitor = %v; want nil", i, err)
		}
	}
	if got := bodies(t, m, tenant, other); len(got) != 10 {
		t.Fatalf("%d messages for the other visitor; want 10", len(got))
	}
}

func TestClosedMachine(t *testing.T) {
	_, m := open(t, t.TempDir(), newKey())
	m.Close()
	tenant, conv, visitor := storage.NewID(), storage.NewID(), storage.NewID()
	if _, err := m.Apply(context.Background(), post(tenant, conv, visitor, visitorAuthor(visitor), "c", "x")); !errors.Is(err, ErrStopped) {
		t.Fatalf("Apply after Close = %v; want ErrStopped", err)
	}
}

// TestEveryCommandIsRoutedAndApplied guards the two switches a new command
// must join: each operation of Command, sent empty, is rejected for its
// missing ids, never as "no operation".
func TestEveryCommandIsRoutedAndApplied(t *testing.T) {
	db, _ := open(t, t.TempDir(), newKey())
	ops := (&actorspb.Command{}).ProtoReflect().Descriptor().Oneofs().ByName("op").Fields()
	for i := range ops.Len() {
		f := ops.Get(i)
		cmd := &actorspb.Command{}
		r := cmd.ProtoReflect()
		r.Set(f, r.NewField(f))
		if _, err := routeOf(cmd); err != nil && strings.Contains(err.Error(), "no operation") {
			t.Errorf("%s: not routed", f.Name())
		}
		st := newState(db, map[storage.ID]*actorspb.ConversationRecord{})
		b := db.NewBatch()
		if _, err := st.apply(context.Background(), b, cmd); err != nil && strings.Contains(err.Error(), "no operation") {
			t.Errorf("%s: not applied", f.Name())
		}
		b.Close()
	}
}

// soleReplica is the log of a node that is every shard's only replica: it
// leads them all, so its reads never wait for another node.
type soleReplica struct{ *replica.Groups }

func (soleReplica) ReadIndex(context.Context, uint16) (uint64, error) { return 0, nil }

func (soleReplica) Read(context.Context, uint16, []byte) ([]byte, error) {
	return nil, errors.New("the sole replica of every shard never reads through another node")
}
