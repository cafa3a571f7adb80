package raftstore

import (
	"errors"
	"testing"

	"github.com/chatpacket/chatpacket/storage"
	"github.com/hashicorp/raft"
)

func TestStableStore(t *testing.T) {
	dir, key := t.TempDir(), newMasterKey(t)
	db := openDB(t, dir, key)
	s := New(db, 5)

	// A missing key answers exactly what raft recognises as missing.
	if v, err := s.Get([]byte("LastVoteCand")); v != nil || !errors.Is(err, ErrKeyNotFound) || err.Error() != "not found" {
		t.Errorf("Get(missing) = %q, %v; want nil, \"not found\"", v, err)
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); v != 0 || !errors.Is(err, ErrKeyNotFound) || err.Error() != "not found" {
		t.Errorf("GetUint64(missing) = %d, %v; want 0, \"not found\"", v, err)
	}
	// And raft agrees: fresh stores hold no state.
	snaps, err := NewSnapshots(db, 5, 1)
	if err != nil {
		t.Fatal(err)
	}
	if has, err := raft.HasExistingState(s, s, snaps); has || err != nil {
		t.Errorf("HasExistingState(fresh) = %v, %v; want false, nil", has, err)
	}

	if err := s.Set([]byte("LastVoteCand"), []byte("node-2")); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("empty"), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 1<<40); err != nil { // overwrite
		t.Fatal(err)
	}
	if has, err := raft.HasExistingState(s, s, snaps); !has || err != nil {
		t.Errorf("HasExistingState(with a term) = %v, %v; want true, nil", has, err)
	}

	// Another shard's group has its own values.
	if _, err := New(db, 6).GetUint64([]byte("CurrentTerm")); !errors.Is(err, ErrKeyNotFound) {
		t.Errorf("shard 6 GetUint64(CurrentTerm) = %v; want ErrKeyNotFound", err)
	}

	db.Close()
	s = New(openDB(t, dir, key), 5)
	if v, err := s.Get([]byte("LastVoteCand")); string(v) != "node-2" || err != nil {
		t.Errorf("Get(LastVoteCand) = %q, %v; want node-2", v, err)
	}
	if v, err := s.Get([]byte("empty")); v == nil || len(v) != 0 || err != nil {
		t.Errorf("Get(empty) = %#v, %v; want an empty non-nil slice", v, err)
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); v != 1<<40 || err != nil {
		t.Errorf("GetUint64(CurrentTerm) = %d, %v; want %d", v, err, uint64(1<<40))
	}
	if _, err := s.GetUint64([]byte("LastVoteCand")); !errors.Is(err, storage.ErrCorrupt) {
		t.Errorf("GetUint64 of a 6-byte value = %v; want storage.ErrCorrupt", err)
	}
}
