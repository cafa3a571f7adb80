package shard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
)

// entries makes raft log entries of cmds, from index first on.
func entries(first uint64, cmds ...*actorspb.Command) []*raft.Log {
	out := make([]*raft.Log, len(cmds))
	for i, c := range cmds {
		data, _ := proto.Marshal(c)
		out[i] = &raft.Log{Index: first + uint64(i), Term: 1, Type: raft.LogCommand, Data: data}
	}
	return out
}

// fsmOf is the state machine of cmd's shard.
func (m *Machine) fsmOf(t *testing.T, cmd *actorspb.Command) *FSM {
	t.Helper()
	route, err := routeOf(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return m.FSM(storage.ShardOf(route, m.db.Shards()))
}

func openFSMOnly(t *testing.T, dir string) (*storage.DB, *Machine) {
	t.Helper()
	db, err := storage.Open(context.Background(), storage.Options{Dir: dir, MasterKey: newKey(), Shards: 8})
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, m
}

// TestFSMSkipsWhatItApplied: entries raft replays after a restart are not
// applied twice, and a command of another shard is refused.
func TestFSMSkipsWhatItApplied(t *testing.T) {
	dir := t.TempDir()
	key := newKey()
	db, err := storage.Open(context.Background(), storage.Options{Dir: dir, MasterKey: key, Shards: 8})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := New(db)
	tenant, conv, visitor := storage.NewID(), storage.NewID(), storage.NewID()
	first := post(tenant, conv, visitor, visitorAuthor(visitor), "c1", "one")
	f := m.fsmOf(t, first)
	logs := entries(1, first, post(tenant, conv, visitor, visitorAuthor(visitor), "c2", "two"))
	for i, r := range f.ApplyBatch(logs) {
		if err := errorOf(r.(*actorspb.Reply)); err != nil {
			t.Fatalf("entry %d = %v", i, err)
		}
	}
	db.Close()

	db, err = storage.Open(context.Background(), storage.Options{Dir: dir, MasterKey: key, Shards: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	m, _ = New(db)
	f = m.fsmOf(t, first)
	if f.Applied() != 2 {
		t.Fatalf("applied after restart = %d; want 2", f.Applied())
	}
	// Raft replays 1 and 2 (as with no snapshot), then a new 3.
	replay := append(logs, entries(3, post(tenant, conv, visitor, visitorAuthor(visitor), "c3", "three"))...)
	out := f.ApplyBatch(replay)
	if out[0] != nil || out[1] != nil || out[2].(*actorspb.Reply).GetResult().GetSeq() != 3 {
		t.Fatalf("replayed batch answered %v; want nothing for 1 and 2, seq 3 for the new entry", out)
	}
	if got := bodies(t, m, tenant, conv); !slices.Equal(got, []string{"one", "two", "three"}) {
		t.Fatalf("messages = %q; want each once", got)
	}
	other := m.FSM((f.shard + 1) % uint16(db.Shards()))
	if r := other.ApplyBatch(entries(other.Applied()+1, first))[0].(*actorspb.Reply); !errors.Is(errorOf(r), ErrInvalid) {
		t.Fatalf("a command in another shard's log = %v; want ErrInvalid", errorOf(r))
	}
}

// TestFSMSnapshotMovesBetweenStores: a shard's snapshot, taken on one store,
// restores on another store with another master key; an erased visitor's
// messages stay erased there, and entries after the snapshot apply on top.
func TestFSMSnapshotMovesBetweenStores(t *testing.T) {
	ctx := context.Background()
	srcDB, src := openFSMOnly(t, t.TempDir())
	dstDB, dst := openFSMOnly(t, t.TempDir())
	tenant, conv, visitor := storage.NewID(), storage.NewID(), storage.NewID()
	gone, goneVisitor := storage.NewID(), storage.NewID()
	var cmds []*actorspb.Command
	for i := range 5 {
		cmds = append(cmds, post(tenant, conv, visitor, visitorAuthor(visitor), fmt.Sprint(i), fmt.Sprint("body ", i)))
	}
	f := src.fsmOf(t, cmds[0])
	f.ApplyBatch(entries(1, cmds...))
	// A conversation of the same shard whose visitor is erased.
	goneCmd := post(tenant, gone, goneVisitor, visitorAuthor(goneVisitor), "g", "secret")
	for src.fsmOf(t, goneCmd) != f {
		gone = storage.NewID()
		goneCmd = post(tenant, gone, goneVisitor, visitorAuthor(goneVisitor), "g", "secret")
	}
	f.ApplyBatch(entries(6, goneCmd))
	if err := srcDB.Shred(ctx, storage.SubjectKey(tenant, goneVisitor).ID); err != nil {
		t.Fatal(err)
	}

	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	store := raft.NewInmemSnapshotStore()
	sink, err := store.Create(raft.SnapshotVersionMax, 6, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Writes after the snapshot was taken are not in it.
	f.ApplyBatch(entries(7, post(tenant, conv, visitor, visitorAuthor(visitor), "late", "late")))
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	metas, _ := store.List()
	_, rc, err := store.Open(metas[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	g := dst.FSM(f.shard)
	if err := g.Restore(io.NopCloser(rc)); err != nil {
		t.Fatal(err)
	}
	if g.Applied() != 6 {
		t.Fatalf("applied after restore = %d; want the snapshot's 6", g.Applied())
	}
	if got := bodies(t, dst, tenant, conv); !slices.Equal(got, []string{"body 0", "body 1", "body 2", "body 3", "body 4"}) {
		t.Fatalf("restored messages = %q", got)
	}
	if got := bodies(t, dst, tenant, gone); !slices.Equal(got, []string{"<erased>"}) {
		t.Fatalf("restored messages of an erased visitor = %q; want erased", got)
	}
	r := g.ApplyBatch(entries(7, post(tenant, conv, visitor, visitorAuthor(visitor), "late", "late")))[0].(*actorspb.Reply)
	if r.GetResult().GetSeq() != 6 {
		t.Fatalf("the entry after the snapshot = %v; want seq 6", r)
	}
	_ = dstDB
}
