package raftstore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func entry(index, term uint64) *raft.Log {
	return &raft.Log{
		Index:      index,
		Term:       term,
		Type:       raft.LogCommand,
		Data:       fmt.Appendf(nil, "data %d", index),
		Extensions: fmt.Appendf(nil, "ext %d", index),
		AppendedAt: time.Unix(1_800_000_000, int64(index)),
	}
}

func entries(from, to, term uint64) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, entry(i, term))
	}
	return out
}

func wantBounds(t *testing.T, s *Store, first, last uint64) {
	t.Helper()
	if got, err := s.FirstIndex(); err != nil || got != first {
		t.Errorf("FirstIndex() = %d, %v; want %d", got, err, first)
	}
	if got, err := s.LastIndex(); err != nil || got != last {
		t.Errorf("LastIndex() = %d, %v; want %d", got, err, last)
	}
}

func wantLog(t *testing.T, s *Store, want *raft.Log) {
	t.Helper()
	var got raft.Log
	if err := s.GetLog(want.Index, &got); err != nil {
		t.Fatalf("GetLog(%d) = %v", want.Index, err)
	}
	if got.Index != want.Index || got.Term != want.Term || got.Type != want.Type ||
		string(got.Data) != string(want.Data) || string(got.Extensions) != string(want.Extensions) ||
		!got.AppendedAt.Equal(want.AppendedAt) {
		t.Errorf("GetLog(%d) = %+v; want %+v", want.Index, got, *want)
	}
}

func wantNoLog(t *testing.T, s *Store, index uint64) {
	t.Helper()
	var got raft.Log
	if err := s.GetLog(index, &got); !errors.Is(err, raft.ErrLogNotFound) {
		t.Errorf("GetLog(%d) = %v; want raft.ErrLogNotFound", index, err)
	}
}

func mustStore(t *testing.T, s *Store, logs ...*raft.Log) {
	t.Helper()
	if err := s.StoreLogs(logs); err != nil {
		t.Fatalf("StoreLogs(%d entries) = %v", len(logs), err)
	}
}

func mustDelete(t *testing.T, s *Store, lo, hi uint64) {
	t.Helper()
	if err := s.DeleteRange(lo, hi); err != nil {
		t.Fatalf("DeleteRange(%d, %d) = %v", lo, hi, err)
	}
}

func TestLogStore(t *testing.T) {
	dir, key := t.TempDir(), newMasterKey(t)
	db := openDB(t, dir, key)
	s := New(db, 3)

	wantBounds(t, s, 0, 0)
	wantNoLog(t, s, 1)

	if err := s.StoreLog(entry(1, 1)); err != nil {
		t.Fatalf("StoreLog(1) = %v", err)
	}
	mustStore(t, s, entries(2, 10, 2)...)
	wantBounds(t, s, 1, 10)
	wantLog(t, s, entry(1, 1))
	for _, l := range entries(2, 10, 2) {
		wantLog(t, s, l)
	}
	wantNoLog(t, s, 11)

	// A zero AppendedAt stays zero (raft's entries from old versions have none).
	mustStore(t, s, &raft.Log{Index: 11, Term: 2, Type: raft.LogNoop})
	var noop raft.Log
	if err := s.GetLog(11, &noop); err != nil || !noop.AppendedAt.IsZero() || noop.Type != raft.LogNoop {
		t.Errorf("GetLog(11) = %+v, %v; want a noop with a zero AppendedAt", noop, err)
	}

	mustDelete(t, s, 1, 3) // compaction: a prefix
	wantBounds(t, s, 4, 11)
	wantNoLog(t, s, 3)
	wantLog(t, s, entry(4, 2))

	mustDelete(t, s, 9, 11) // a conflict on a follower: a suffix
	wantBounds(t, s, 4, 8)
	wantNoLog(t, s, 9)

	mustDelete(t, s, 1, 2) // nothing there
	mustDelete(t, s, 100, 200)
	wantBounds(t, s, 4, 8)

	// Another shard of the same db is another log.
	other := New(db, 4)
	wantBounds(t, other, 0, 0)
	mustStore(t, other, entries(50, 60, 1)...)
	wantBounds(t, other, 50, 60)
	wantBounds(t, s, 4, 8)

	// A restart reads everything back, bounds included.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, dir, key)
	s = New(db, 3)
	wantBounds(t, s, 4, 8)
	for _, l := range entries(4, 8, 2) {
		wantLog(t, s, l)
	}
	wantBounds(t, New(db, 4), 50, 60)

	mustDelete(t, s, 0, ^uint64(0)) // everything
	wantBounds(t, s, 0, 0)
	mustStore(t, s, entries(100, 101, 5)...)
	wantBounds(t, s, 100, 101)
}

// TestLogStoreGaps covers the log after a follower installs a snapshot:
// entries after the snapshot's index, older ones below a gap. The bounds
// must stay exact across the gap.
func TestLogStoreGaps(t *testing.T) {
	dir, key := t.TempDir(), newMasterKey(t)
	db := openDB(t, dir, key)
	s := New(db, 0)
	mustStore(t, s, entries(4, 7, 1)...)
	mustStore(t, s, entries(20, 22, 3)...)
	wantBounds(t, s, 4, 22)

	mustDelete(t, s, 20, 22)
	wantBounds(t, s, 4, 7)
	mustStore(t, s, entries(20, 22, 3)...)
	mustDelete(t, s, 4, 7)
	wantBounds(t, s, 20, 22)

	// A restart finds the same bounds across a gap.
	mustStore(t, s, entries(1000, 1000, 3)...)
	db.Close()
	s = New(openDB(t, dir, key), 0)
	wantBounds(t, s, 20, 1000)
}

// TestLogStoreModel runs random appends and truncations, with gaps, and
// checks the cached bounds and every read against a map of what is stored,
// and against a fresh Store that computes the bounds from the keyspace.
func TestLogStoreModel(t *testing.T) {
	db := openDB(t, t.TempDir(), newMasterKey(t))
	s := New(db, 1)
	model := map[uint64]bool{}
	bounds := func() (uint64, uint64) {
		var lo, hi uint64
		for i := range model {
			if lo == 0 || i < lo {
				lo = i
			}
			hi = max(hi, i)
		}
		return lo, hi
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for step := range 300 {
		lo, hi := bounds()
		switch op := rng.IntN(4); {
		case op <= 1: // append, sometimes after a gap
			from := hi + 1 + uint64(rng.IntN(3))*uint64(rng.IntN(20))
			n := uint64(1 + rng.IntN(8))
			mustStore(t, s, entries(from, from+n-1, 1)...)
			for i := from; i < from+n; i++ {
				model[i] = true
			}
		case op == 2 && hi > 0: // truncate a prefix
			to := lo + uint64(rng.IntN(int(hi-lo)+1))
			mustDelete(t, s, lo, to)
			for i := lo; i <= to; i++ {
				delete(model, i)
			}
		case op == 3 && hi > 0: // truncate a suffix
			from := lo + uint64(rng.IntN(int(hi-lo)+1))
			mustDelete(t, s, from, hi)
			for i := from; i <= hi; i++ {
				delete(model, i)
			}
		}
		lo, hi = bounds()
		wantBounds(t, s, lo, hi)
		if step%25 == 0 {
			wantBounds(t, New(db, 1), lo, hi)
		}
		if t.Failed() {
			t.Fatalf("step %d: model %v", step, model)
		}
	}
	lo, hi := bounds()
	for i := lo; i <= hi; i++ {
		if model[i] {
			wantLog(t, s, entry(i, 1))
		} else {
			wantNoLog(t, s, i)
		}
	}
}

// TestLogStoreConcurrentReads reads the newest entry while a writer appends
// and truncates: whatever LastIndex publishes can be read, unless a
// truncation removed it since.
func TestLogStoreConcurrentReads(t *testing.T) {
	db := openDB(t, t.TempDir(), newMasterKey(t))
	s := New(db, 2)
	mustStore(t, s, entry(1, 1))
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				last, err := s.LastIndex()
				if err != nil {
					errs <- err
					return
				}
				var l raft.Log
				err = s.GetLog(last, &l)
				if errors.Is(err, raft.ErrLogNotFound) {
					// Only a truncation since LastIndex may explain it.
					if first, ferr := s.FirstIndex(); ferr == nil && first > last {
						continue
					}
				}
				if err != nil || l.Index != last {
					errs <- fmt.Errorf("GetLog(LastIndex() = %d) = %v, index %d", last, err, l.Index)
					return
				}
			}
		})
	}
	for i := uint64(2); i <= 400; i += 4 {
		if err := s.StoreLogs(entries(i, i+3, 1)); err != nil {
			t.Error(err)
			break
		}
		if i%40 == 2 && i > 40 {
			if err := s.DeleteRange(1, i-10); err != nil {
				t.Error(err)
				break
			}
		}
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
