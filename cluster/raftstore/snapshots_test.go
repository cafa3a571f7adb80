package raftstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/chatpacket/chatpacket/storage"
	"github.com/hashicorp/raft"
)

var testConfig = raft.Configuration{Servers: []raft.Server{
	{Suffrage: raft.Voter, ID: "a", Address: "127.0.0.1:7001"},
	{Suffrage: raft.Nonvoter, ID: "b", Address: "127.0.0.1:7002"},
}}

func newSnapshots(t *testing.T, db *storage.DB, shard uint16, retain int) *Snapshots {
	t.Helper()
	s, err := NewSnapshots(db, shard, retain)
	if err != nil {
		t.Fatalf("NewSnapshots(%d, %d) = %v", shard, retain, err)
	}
	return s
}

// testData returns n deterministic bytes that do not compress to nothing.
func testData(n int, seed uint64) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// writeSnapshot creates a snapshot at index and term and writes data in
// pieces of 10007 bytes, so that writes straddle chunks.
func writeSnapshot(t *testing.T, s *Snapshots, index, term uint64, data []byte) raft.SnapshotSink {
	t.Helper()
	sink, err := s.Create(1, index, term, testConfig, 3, nil)
	if err != nil {
		t.Fatalf("Create(%d, %d) = %v", index, term, err)
	}
	for p := data; len(p) > 0; {
		n := min(len(p), 10007)
		if w, err := sink.Write(p[:n]); w != n || err != nil {
			t.Fatalf("Write(%d bytes) = %d, %v", n, w, err)
		}
		p = p[n:]
	}
	return sink
}

func mustSnapshot(t *testing.T, s *Snapshots, index, term uint64, data []byte) string {
	t.Helper()
	sink := writeSnapshot(t, s, index, term, data)
	if err := sink.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	return sink.ID()
}

// readSnapshot opens id and reads it whole through a small buffer.
func readSnapshot(t *testing.T, s *Snapshots, id string) (*raft.SnapshotMeta, []byte) {
	t.Helper()
	meta, rc, err := s.Open(id)
	if err != nil {
		t.Fatalf("Open(%s) = %v", id, err)
	}
	var out bytes.Buffer
	if _, err := io.CopyBuffer(&out, struct{ io.Reader }{rc}, make([]byte, 777)); err != nil {
		t.Fatalf("read %s: %v", id, err)
	}
	if err := rc.Close(); err != nil {
		t.Fatalf("close %s: %v", id, err)
	}
	return meta, out.Bytes()
}

func listIDs(t *testing.T, s *Snapshots) []string {
	t.Helper()
	metas, err := s.List()
	if err != nil {
		t.Fatalf("List() = %v", err)
	}
	var ids []string
	for _, m := range metas {
		ids = append(ids, m.ID)
	}
	return ids
}

// chunkIDs lists the snapshot ids that have chunks in shard.
func chunkIDs(t *testing.T, db *storage.DB, shard uint16) []string {
	t.Helper()
	var ids []string
	lower := storage.TablePrefix(shard, storage.TableRaftSnapshot)
	for {
		k, err := firstKey(context.Background(), db, lower, storage.PrefixEnd(storage.TablePrefix(shard, storage.TableRaftSnapshot)))
		if err != nil {
			t.Fatal(err)
		}
		if k == nil {
			return ids
		}
		id, err := chunkKeyID(k)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id.String())
		lower = storage.PrefixEnd(chunkPrefix(shard, id))
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	dir, key := t.TempDir(), newMasterKey(t)
	db := openDB(t, dir, key)
	s := newSnapshots(t, db, 2, 2)
	if ids := listIDs(t, s); len(ids) != 0 {
		t.Fatalf("List() of a new store = %v", ids)
	}

	// 40 chunks and a bit: several commits, and a short last chunk.
	data := testData(40*chunkSize+12345, 1)
	id := mustSnapshot(t, s, 120, 4, data)
	want := &raft.SnapshotMeta{Version: 1, ID: id, Index: 120, Term: 4, Configuration: testConfig, ConfigurationIndex: 3, Size: int64(len(data))}

	metas, err := s.List()
	if err != nil || len(metas) != 1 {
		t.Fatalf("List() = %v, %v; want one snapshot", metas, err)
	}
	if fmt.Sprint(metas[0]) != fmt.Sprint(want) {
		t.Errorf("List()[0] = %+v; want %+v", metas[0], want)
	}
	meta, got := readSnapshot(t, s, id)
	if fmt.Sprint(meta) != fmt.Sprint(want) {
		t.Errorf("Open meta = %+v; want %+v", meta, want)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("read %d bytes; they differ from the %d written", len(got), len(data))
	}

	// An empty snapshot is a snapshot too.
	empty := mustSnapshot(t, s, 121, 4, nil)
	if _, got := readSnapshot(t, s, empty); len(got) != 0 {
		t.Errorf("empty snapshot read back %d bytes", len(got))
	}

	// Both survive a restart.
	db.Close()
	db = openDB(t, dir, key)
	s = newSnapshots(t, db, 2, 2)
	if ids := listIDs(t, s); fmt.Sprint(ids) != fmt.Sprint([]string{empty, id}) {
		t.Errorf("List() after restart = %v; want [%s %s]", ids, empty, id)
	}
	if _, got := readSnapshot(t, s, id); !bytes.Equal(got, data) {
		t.Errorf("after restart, read %d bytes that differ from the %d written", len(got), len(data))
	}
}

func TestSnapshotErrors(t *testing.T) {
	db := openDB(t, t.TempDir(), newMasterKey(t))
	if _, err := NewSnapshots(db, 0, 0); err == nil {
		t.Error("NewSnapshots(retain 0) = nil error")
	}
	s := newSnapshots(t, db, 0, 1)
	if _, err := s.Create(0, 1, 1, testConfig, 1, nil); err == nil {
		t.Error("Create(version 0) = nil error")
	}
	if _, _, err := s.Open("nonsense"); err == nil {
		t.Error("Open(nonsense) = nil error")
	}
	if _, _, err := s.Open(newSnapshotID(1, 1, 1).String()); !errors.Is(err, ErrSnapshotNotFound) {
		t.Errorf("Open(unknown) = %v; want ErrSnapshotNotFound", err)
	}
	sink := writeSnapshot(t, s, 1, 1, []byte("x"))
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Write([]byte("y")); err == nil {
		t.Error("Write after Close = nil error")
	}
	if err := sink.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if err := sink.Cancel(); err != nil {
		t.Errorf("Cancel after Close = %v", err)
	}
	if ids := listIDs(t, s); len(ids) != 1 {
		t.Errorf("List() = %v; want the closed snapshot", ids)
	}
}

func TestSnapshotCancel(t *testing.T) {
	db := openDB(t, t.TempDir(), newMasterKey(t))
	s := newSnapshots(t, db, 1, 2)
	sink := writeSnapshot(t, s, 10, 1, testData(20*chunkSize, 2)) // some chunks committed
	if ids := chunkIDs(t, db, 1); len(ids) != 1 {
		t.Fatalf("chunks of %v before Cancel; want one snapshot's", ids)
	}
	if err := sink.Cancel(); err != nil {
		t.Fatalf("Cancel() = %v", err)
	}
	if err := sink.Cancel(); err != nil {
		t.Errorf("second Cancel() = %v", err)
	}
	if _, err := sink.Write([]byte("x")); err == nil {
		t.Error("Write after Cancel = nil error")
	}
	if ids := listIDs(t, s); len(ids) != 0 {
		t.Errorf("List() after Cancel = %v", ids)
	}
	if ids := chunkIDs(t, db, 1); len(ids) != 0 {
		t.Errorf("chunks of %v left after Cancel", ids)
	}
	if _, _, err := s.Open(sink.ID()); !errors.Is(err, ErrSnapshotNotFound) {
		t.Errorf("Open(cancelled) = %v; want ErrSnapshotNotFound", err)
	}
}

func TestSnapshotRetention(t *testing.T) {
	db := openDB(t, t.TempDir(), newMasterKey(t))
	s := newSnapshots(t, db, 3, 2)
	var ids []string
	for i := range uint64(4) {
		ids = append(ids, mustSnapshot(t, s, 100+i, 2, testData(3*chunkSize, i)))
	}
	if got := listIDs(t, s); fmt.Sprint(got) != fmt.Sprint([]string{ids[3], ids[2]}) {
		t.Errorf("List() = %v; want the two newest, newest first: %v", got, []string{ids[3], ids[2]})
	}
	if got := chunkIDs(t, db, 3); fmt.Sprint(got) != fmt.Sprint([]string{ids[2], ids[3]}) {
		t.Errorf("chunks of %v; want only the kept %v", got, ids[2:])
	}
	if _, _, err := s.Open(ids[0]); !errors.Is(err, ErrSnapshotNotFound) {
		t.Errorf("Open(reaped) = %v; want ErrSnapshotNotFound", err)
	}

	// Order is term first, then index, as FileSnapshotStore's: a newer term
	// at a lower index is the newer snapshot.
	newer := mustSnapshot(t, s, 50, 3, []byte("term 3"))
	if got := listIDs(t, s); len(got) != 2 || got[0] != newer || got[1] != ids[3] {
		t.Errorf("List() = %v; want [%s %s]", got, newer, ids[3])
	}
}

// TestSnapshotRetentionSparesReaders streams a snapshot that retention would
// delete: raft may be sending it to a follower while a newer one completes.
func TestSnapshotRetentionSparesReaders(t *testing.T) {
	db := openDB(t, t.TempDir(), newMasterKey(t))
	s := newSnapshots(t, db, 4, 1)
	oldData := testData(5*chunkSize+1, 7)
	old := mustSnapshot(t, s, 10, 1, oldData)
	_, rc, err := s.Open(old)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 100)
	if _, err := io.ReadFull(rc, head); err != nil {
		t.Fatal(err)
	}
	newer := mustSnapshot(t, s, 20, 1, []byte("newer"))
	if got := listIDs(t, s); len(got) != 1 || got[0] != newer {
		t.Errorf("List() = %v; want [%s]", got, newer)
	}
	rest, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(append(head, rest...), oldData) {
		t.Errorf("reading on after a newer snapshot: %d bytes, %v; want the %d written", len(head)+len(rest), err, len(oldData))
	}
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rc.Close(); err != nil {
		t.Errorf("second reader Close() = %v", err)
	}
	if _, err := rc.Read(head); err == nil {
		t.Error("Read after Close = nil error")
	}
	if got := chunkIDs(t, db, 4); len(got) != 1 || got[0] != newer {
		t.Errorf("chunks of %v after the reader closed; want only %s's", got, newer)
	}
}

// TestSnapshotCrashBeforeMeta leaves a sink unfinished, as a crash would:
// its committed chunks are never listed and the next open deletes them. A
// sink still in progress is not mistaken for a crash's leftovers.
func TestSnapshotCrashBeforeMeta(t *testing.T) {
	dir, key := t.TempDir(), newMasterKey(t)
	db := openDB(t, dir, key)
	s := newSnapshots(t, db, 6, 2)
	kept := mustSnapshot(t, s, 5, 1, []byte("complete"))

	// In progress: listed nowhere, and untouched by another snapshot's Create.
	inProgress := writeSnapshot(t, s, 9, 1, testData(20*chunkSize, 3))
	if got := listIDs(t, s); len(got) != 1 || got[0] != kept {
		t.Errorf("List() with a sink in progress = %v; want [%s]", got, kept)
	}
	second := mustSnapshot(t, s, 7, 1, []byte("second"))
	if err := inProgress.Close(); err != nil {
		t.Fatalf("Close() of the sink in progress = %v", err)
	}
	if got := listIDs(t, s); len(got) != 2 || got[0] != inProgress.ID() || got[1] != second {
		t.Errorf("List() = %v; want [%s %s]", got, inProgress.ID(), second)
	}

	// Crash: 40 chunks written, 32 of them committed, no metadata.
	abandoned := writeSnapshot(t, s, 11, 1, testData(40*chunkSize, 4))
	if got := chunkIDs(t, db, 6); len(got) != 3 {
		t.Fatalf("chunks of %v; want those of two snapshots and the abandoned one", got)
	}
	db.Close()

	db = openDB(t, dir, key)
	s = newSnapshots(t, db, 6, 2)
	if got := listIDs(t, s); len(got) != 2 || got[0] != inProgress.ID() {
		t.Errorf("List() after the crash = %v; want [%s %s]", got, inProgress.ID(), second)
	}
	for _, id := range chunkIDs(t, db, 6) {
		if id == abandoned.ID() {
			t.Errorf("chunks of the abandoned snapshot %s survived the reopen", id)
		}
	}
	if _, _, err := s.Open(abandoned.ID()); !errors.Is(err, ErrSnapshotNotFound) {
		t.Errorf("Open(abandoned) = %v; want ErrSnapshotNotFound", err)
	}
}

func TestSnapshotID(t *testing.T) {
	id := newSnapshotID(3, 1<<40, 1_800_000_000_123_456_789)
	s := id.String()
	if s != "0000000000000003-0000010000000000-18fae2769b0fcd15" {
		t.Errorf("String() = %s", s)
	}
	back, err := parseSnapshotID(s)
	if err != nil || back != id {
		t.Errorf("parseSnapshotID(%s) = %x, %v; want %x", s, back, err, id)
	}
	for _, bad := range []string{"", "3-4-5", s[:49] + "g", s[:16] + "+" + s[17:]} {
		if _, err := parseSnapshotID(bad); err == nil {
			t.Errorf("parseSnapshotID(%q) = nil error", bad)
		}
	}
}
