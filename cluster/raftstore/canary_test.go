package raftstore

import (
	"context"
	"strings"
	"testing"

	"github.com/chatpacket/chatpacket/storage"
	"github.com/hashicorp/raft"
)

// TestCanary writes a marker through every record this package keeps (log
// entry data and extensions, a stable value, snapshot data) and checks that
// no file of the data dir holds it, while the store is open (the WAL) and
// after compaction and Close. The stable key's name, which is stored in
// clear as part of its Pebble key, shows that the search does read the
// records' files.
func TestCanary(t *testing.T) {
	dir, key := t.TempDir(), newMasterKey(t)
	db := openDB(t, dir, key)
	marker := "canary-" + storage.NewID().String() + "-visitor@example.com says hello"
	keyName := "KeyNameInClear-" + storage.NewID().String()

	s := New(db, 1)
	var logs []*raft.Log
	for i := range uint64(100) {
		logs = append(logs, &raft.Log{Index: i + 1, Term: 1, Data: []byte(marker), Extensions: []byte(marker)})
	}
	mustStore(t, s, logs...)
	if err := s.Set([]byte(keyName), []byte(marker)); err != nil {
		t.Fatal(err)
	}
	snaps := newSnapshots(t, db, 1, 1)
	// Repeated, the marker spans chunk boundaries too.
	mustSnapshot(t, snaps, 100, 1, []byte(strings.Repeat(marker, 3*chunkSize/len(marker))))

	if hits := filesContaining(t, dir, []byte(marker)); len(hits) > 0 {
		t.Errorf("marker in %v while open", hits)
	}
	if hits := filesContaining(t, dir, []byte(keyName)); len(hits) == 0 {
		t.Fatal("the stable key's name, stored in clear, was not found: the search reads nothing")
	}
	if err := db.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if hits := filesContaining(t, dir, []byte(marker)); len(hits) > 0 {
		t.Errorf("marker in %v after Close", hits)
	}
}
