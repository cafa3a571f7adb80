package shard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
	"github.com/hashicorp/raft"
)

// TestShredCommand: Machine.Shred erases a visitor through the log, a
// repeat is harmless, and keys that are not a tenant's, a person's or a
// month's are refused.
func TestShredCommand(t *testing.T) {
	ctx := context.Background()
	db, m := open(t, t.TempDir(), newKey())
	tenant, conv, visitor := storage.NewID(), storage.NewID(), storage.NewID()
	if _, err := m.Apply(ctx, post(tenant, conv, visitor, visitorAuthor(visitor), "1", "secret")); err != nil {
		t.Fatal(err)
	}
	key := storage.SubjectKey(tenant, visitor).ID
	for range 2 {
		if err := m.Shred(ctx, visitor, time.Now(), key); err != nil {
			t.Fatalf("Shred = %v", err)
		}
	}
	if ok, _ := db.Shredded(key); !ok {
		t.Fatal("the key is not in the ledger")
	}
	if got := bodies(t, m, tenant, conv); !slices.Equal(got, []string{"<erased>"}) {
		t.Fatalf("messages after the shred = %q", got)
	}
	for name, ids := range map[string][]storage.KeyID{
		"none":       nil,
		"the master": {storage.MasterKeyID},
		"an index":   {storage.GlobalIndexKey.ID},
	} {
		if err := m.Shred(ctx, visitor, time.Now(), ids...); !errors.Is(err, ErrInvalid) {
			t.Errorf("Shred of %s = %v; want ErrInvalid", name, err)
		}
	}
}

// TestScrubSnapshot: a snapshot taken before a visitor's erasure, scrubbed,
// holds nothing of theirs, and restores on another store with their
// messages erased and everyone else's intact.
func TestScrubSnapshot(t *testing.T) {
	ctx := context.Background()
	srcDB, src := openFSMOnly(t, t.TempDir())
	_, dst := openFSMOnly(t, t.TempDir())
	tenant, conv, visitor := storage.NewID(), storage.NewID(), storage.NewID()
	gone, goneVisitor := storage.NewID(), storage.NewID()
	keep := post(tenant, conv, visitor, visitorAuthor(visitor), "k", "kept message")
	f := src.fsmOf(t, keep)
	goneCmd := post(tenant, gone, goneVisitor, visitorAuthor(goneVisitor), "g", "canary-scrub")
	for src.fsmOf(t, goneCmd) != f {
		gone = storage.NewID()
		goneCmd = post(tenant, gone, goneVisitor, visitorAuthor(goneVisitor), "g", "canary-scrub")
	}
	f.ApplyBatch(entries(1, keep, goneCmd))

	var before bytes.Buffer
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(&bufSink{Buffer: &before}); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if !bytes.Contains(before.Bytes(), []byte("canary-scrub")) {
		t.Fatal("the snapshot does not hold the canary: the test sees nothing")
	}
	if err := srcDB.Shred(ctx, storage.SubjectKey(tenant, goneVisitor).ID); err != nil {
		t.Fatal(err)
	}
	var after bytes.Buffer
	if err := ScrubSnapshot(srcDB)(bytes.NewReader(before.Bytes()), &after); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(after.Bytes(), []byte("canary-scrub")) {
		t.Fatal("the scrubbed snapshot still holds the canary")
	}
	g := dst.FSM(f.shard)
	if err := g.Restore(io.NopCloser(bytes.NewReader(after.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if got := bodies(t, dst, tenant, gone); !slices.Equal(got, []string{"<erased>"}) {
		t.Errorf("the erased visitor after restore = %q", got)
	}
	if got := bodies(t, dst, tenant, conv); !slices.Equal(got, []string{"kept message"}) {
		t.Errorf("the other visitor after restore = %q", got)
	}
}

// bufSink is a raft.SnapshotSink over a buffer.
type bufSink struct{ *bytes.Buffer }

func (bufSink) ID() string    { return "buf" }
func (bufSink) Cancel() error { return nil }
func (bufSink) Close() error  { return nil }

var _ raft.SnapshotSink = bufSink{}

// TestWithdrawConsent: page views go, new ones are not kept, the visitor
// is restricted, and a repeat changes nothing.
func TestWithdrawConsent(t *testing.T) {
	ctx := context.Background()
	_, m := open(t, t.TempDir(), newKey())
	tenant, visitor := storage.NewID(), storage.NewID()
	apply := func(cmd *actorspb.Command) {
		t.Helper()
		if _, err := m.Apply(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	apply(&actorspb.Command{Op: &actorspb.Command_CreateVisitor{CreateVisitor: &actorspb.CreateVisitor{Visitor: &actorspb.VisitorRecord{Id: visitor[:], TenantId: tenant[:], CreatedUnixMs: 1}}}})
	view := func(n int) *actorspb.Command {
		return &actorspb.Command{Op: &actorspb.Command_AddPageView{AddPageView: &actorspb.AddPageView{
			TenantId: tenant[:], VisitorId: visitor[:], View: &actorspb.PageViewRecord{Url: fmt.Sprintf("https://a.example/%d", n), UnixMs: int64(n + 1)},
		}}}
	}
	apply(view(1))
	apply(view(2))
	withdraw := &actorspb.Command{Op: &actorspb.Command_WithdrawConsent{WithdrawConsent: &actorspb.WithdrawConsent{TenantId: tenant[:], VisitorId: visitor[:]}}}
	apply(withdraw)
	apply(withdraw)
	apply(view(3))
	views, err := m.PageViews(ctx, tenant, visitor, 10)
	if err != nil || len(views) != 0 {
		t.Fatalf("page views after withdrawal = %v, %v; want none", views, err)
	}
	rec, err := m.Visitor(ctx, tenant, visitor)
	if err != nil || !rec.ConsentWithdrawn || !rec.Restricted {
		t.Fatalf("visitor after withdrawal = %v, %v; want withdrawn and restricted", rec, err)
	}
}

// TestPostRacingAShred: a replica that learnt of a visitor's erasure
// before applying their last post ends in the same state as one that
// learnt of it after: the conversation and its seq advance on both, and
// the message reads as erased on both. (Before, the first replica dropped
// the post and lost the conversation the others kept.)
func TestPostRacingAShred(t *testing.T) {
	ctx := context.Background()
	earlyDB, early := openFSMOnly(t, t.TempDir())
	lateDB, late := openFSMOnly(t, t.TempDir())
	tenant, conv, visitor := storage.NewID(), storage.NewID(), storage.NewID()
	key := storage.SubjectKey(tenant, visitor).ID
	first := post(tenant, conv, visitor, visitorAuthor(visitor), "1", "hello")
	last := post(tenant, conv, visitor, visitorAuthor(visitor), "2", "my last words")

	if err := earlyDB.Shred(ctx, key); err != nil { // early learns of the shred before applying anything
		t.Fatal(err)
	}
	er := early.fsmOf(t, first).ApplyBatch(entries(1, first, last))
	lr := late.fsmOf(t, first).ApplyBatch(entries(1, first, last))
	if err := lateDB.Shred(ctx, key); err != nil {
		t.Fatal(err)
	}
	for i := range er {
		if e, l := er[i].(*actorspb.Reply), lr[i].(*actorspb.Reply); e.Error != 0 || l.Error != 0 || e.Result.Seq != l.Result.Seq || !e.Result.Erased || l.Result.Erased {
			t.Errorf("entry %d: early %v, late %v; want the same seq, early erased", i+1, e, l)
		}
	}
	for name, m := range map[string]*Machine{"early": early, "late": late} {
		c, err := m.Conversation(ctx, tenant, conv)
		if err != nil || c.LastSeq != 2 {
			t.Errorf("%s: conversation %v, %v; want last_seq 2", name, c, err)
		}
		if got := bodies(t, m, tenant, conv); !slices.Equal(got, []string{"<erased>", "<erased>"}) {
			t.Errorf("%s: messages %q; want both erased", name, got)
		}
	}
	// A retry of the last post is a repeat on both.
	for m, name := range map[*Machine]string{early: "early", late: "late"} {
		r := m.fsmOf(t, last).ApplyBatch(entries(3, last))[0].(*actorspb.Reply)
		if !r.GetResult().GetDuplicate() {
			t.Errorf("%s: the retried post = %v; want a duplicate", name, r)
		}
	}
}
