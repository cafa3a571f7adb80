package raftstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/hashicorp/raft"
)

// TestScrub rewrites the newest snapshot under the same index, term and
// configuration, and leaves it the only one: the older one, which the
// rewrite never saw, is gone with its chunks.
func TestScrub(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir(), newMasterKey(t))
	s := newSnapshots(t, db, 2, 2)
	mustSnapshot(t, s, 100, 2, []byte("old secret"))
	mustSnapshot(t, s, 120, 2, bytes.Repeat([]byte("secret "), chunkSize/4))

	index, err := s.Scrub(ctx, func(r io.Reader, w io.Writer) error {
		data, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		_, err = w.Write(bytes.ReplaceAll(data, []byte("secret"), []byte("erased")))
		return err
	})
	if err != nil || index != 120 {
		t.Fatalf("Scrub = %d, %v; want 120", index, err)
	}
	ids := listIDs(t, s)
	if len(ids) != 1 {
		t.Fatalf("after Scrub: snapshots %v; want one", ids)
	}
	meta, data := readSnapshot(t, s, ids[0])
	if meta.Index != 120 || meta.Term != 2 || fmt.Sprint(meta.Configuration) != fmt.Sprint(testConfig) || meta.Size != int64(len(data)) {
		t.Errorf("scrubbed meta = %+v; want index 120, term 2, the configuration, size %d", meta, len(data))
	}
	if bytes.Contains(data, []byte("secret")) || !bytes.HasPrefix(data, []byte("erased erased")) {
		t.Errorf("scrubbed data starts %q; want the rewrite", data[:20])
	}
	if got := chunkIDs(t, db, 2); len(got) != 1 || got[0] != ids[0] {
		t.Errorf("chunks of %v; want only %s", got, ids[0])
	}

	// A failed rewrite leaves the snapshots as they were.
	if _, err := s.Scrub(ctx, func(io.Reader, io.Writer) error { return io.ErrUnexpectedEOF }); err == nil {
		t.Error("Scrub with a failing rewrite succeeded")
	}
	if got := listIDs(t, s); fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Errorf("after a failed Scrub: %v; want %v", got, ids)
	}
}

// TestTruncateThrough cuts the log at an index and keeps what follows.
func TestTruncateThrough(t *testing.T) {
	db := openDB(t, t.TempDir(), newMasterKey(t))
	s := New(db, 5)
	var logs []*raft.Log
	for i := uint64(1); i <= 10; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte("entry")})
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := s.TruncateThrough(7); err != nil {
		t.Fatal(err)
	}
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	if first != 8 || last != 10 {
		t.Errorf("after TruncateThrough(7): first %d, last %d; want 8, 10", first, last)
	}
	if err := s.TruncateThrough(3); err != nil { // before the first: nothing to do
		t.Fatal(err)
	}
	if first, _ := s.FirstIndex(); first != 8 {
		t.Errorf("TruncateThrough below the first moved it to %d", first)
	}
}
