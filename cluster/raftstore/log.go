package raftstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatpacket/chatpacket/cluster/raftstore/raftpb"
	"github.com/chatpacket/chatpacket/storage"
	"github.com/hashicorp/raft"
)

// Store is one raft group's log and stable store (raft.LogStore and
// raft.StableStore) on the node's Pebble.
//
// Bounds. FirstIndex and LastIndex are read on raft's hot paths, so they are
// cached: computed from the keyspace on first use, then kept in two atomics
// that writers update. Once they are loaded, readers never lock. Writers (StoreLogs, DeleteRange)
// serialise on mu, held across their commit: raft issues one group's writes
// one at a time anyway, and different groups have different Stores, so the
// lock costs no parallelism and keeps the bounds exact.
//
// Published bounds only ever name entries that can be read: StoreLogs
// raises LastIndex after its commit, and DeleteRange narrows the bounds
// before its commit (and forgets them if the commit fails, so the next call
// recomputes them). raft still retries a read that loses a race with a
// truncation (oldestLog in raft's log.go), as it must with any store.
//
// Gaps. The log may have a gap: after a follower installs a snapshot, raft
// appends after the snapshot's index and compacts the older entries later
// (Store does not implement raft.MonotonicLogStore). The bounds stay exact
// across gaps because a truncation recomputes the end it removed from the
// keyspace instead of assuming the log is dense.
type Store struct {
	db    *storage.DB
	shard uint16

	mu     sync.Mutex // held by writers and by the first load of the bounds
	loaded atomic.Bool
	first  atomic.Uint64
	last   atomic.Uint64
}

// New returns the log and stable store of shard's raft group in db. It reads
// nothing until first used. shard is any uint16; the groups of one db must
// use distinct shards.
func New(db *storage.DB, shard uint16) *Store {
	return &Store{db: db, shard: shard}
}

var (
	_ raft.LogStore    = (*Store)(nil)
	_ raft.StableStore = (*Store)(nil)
)

// bounds loads the cached bounds on first use.
func (s *Store) bounds() error {
	if s.loaded.Load() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loadLocked(context.Background())
}

func (s *Store) loadLocked(ctx context.Context) error {
	if s.loaded.Load() {
		return nil
	}
	first, err := firstIndexFrom(ctx, s.db, s.shard, 0)
	if err != nil {
		return fmt.Errorf("raftstore: shard %d: first log index: %w", s.shard, err)
	}
	var last uint64
	if first != 0 {
		if last, err = lastIndexIn(ctx, s.db, s.shard, first, ^uint64(0)); err != nil {
			return fmt.Errorf("raftstore: shard %d: last log index: %w", s.shard, err)
		}
	}
	s.first.Store(first)
	s.last.Store(last)
	s.loaded.Store(true)
	return nil
}

// FirstIndex returns the first index in the log, 0 when it is empty.
func (s *Store) FirstIndex() (uint64, error) {
	if err := s.bounds(); err != nil {
		return 0, err
	}
	return s.first.Load(), nil
}

// LastIndex returns the last index in the log, 0 when it is empty.
func (s *Store) LastIndex() (uint64, error) {
	if err := s.bounds(); err != nil {
		return 0, err
	}
	return s.last.Load(), nil
}

// GetLog reads the entry at index into log; raft.ErrLogNotFound when there
// is none.
func (s *Store) GetLog(index uint64, log *raft.Log) error {
	var e raftpb.LogEntry
	err := s.db.Get(context.Background(), logKey(s.shard, index), &e)
	if errors.Is(err, storage.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return fmt.Errorf("raftstore: shard %d: read log %d: %w", s.shard, index, err)
	}
	if e.Index != index {
		return fmt.Errorf("%w: raft log key %d holds entry %d", storage.ErrCorrupt, index, e.Index)
	}
	*log = raft.Log{
		Index:      e.Index,
		Term:       e.Term,
		Type:       raft.LogType(e.Type),
		Data:       e.Data,
		Extensions: e.Extensions,
	}
	if e.AppendedAtUnixNano != 0 {
		log.AppendedAt = time.Unix(0, e.AppendedAtUnixNano)
	}
	return nil
}

// StoreLog stores one entry.
func (s *Store) StoreLog(log *raft.Log) error { return s.StoreLogs([]*raft.Log{log}) }

// StoreLogs stores entries in one synced batch: one fsync per call, however
// many entries.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	ctx := context.Background()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadLocked(ctx); err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	// Put seals and copies at once, so one message and one key serve every
	// entry.
	key := logKey(s.shard, 0)
	var e raftpb.LogEntry
	lo, hi := logs[0].Index, logs[0].Index
	for _, l := range logs {
		e = raftpb.LogEntry{Index: l.Index, Term: l.Term, Type: uint32(l.Type), Data: l.Data, Extensions: l.Extensions}
		if !l.AppendedAt.IsZero() {
			e.AppendedAtUnixNano = l.AppendedAt.UnixNano()
		}
		binary.BigEndian.PutUint64(key[prefixLen:], l.Index)
		if err := b.Put(ctx, key, storage.RaftLogKey, &e); err != nil {
			return fmt.Errorf("raftstore: shard %d: store log %d: %w", s.shard, l.Index, err)
		}
		lo, hi = min(lo, l.Index), max(hi, l.Index)
	}
	if err := b.Commit(ctx); err != nil {
		return fmt.Errorf("raftstore: shard %d: store logs %d-%d: %w", s.shard, lo, hi, err)
	}
	if first := s.first.Load(); first == 0 || lo < first {
		s.first.Store(lo)
	}
	if hi > s.last.Load() {
		s.last.Store(hi)
	}
	return nil
}

// DeleteRange deletes the entries from lo to hi inclusive, with one range
// tombstone in a synced commit.
func (s *Store) DeleteRange(lo, hi uint64) error {
	if lo > hi {
		return nil
	}
	ctx := context.Background()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.loadLocked(ctx); err != nil {
		return err
	}
	first, last := s.first.Load(), s.last.Load()
	if first == 0 || hi < first || lo > last {
		return nil // no entry lies in the range
	}
	// The new bounds come from the entries outside the range, which the
	// delete does not touch, so they can be computed before it commits.
	newFirst, newLast := first, last
	var err error
	switch {
	case lo <= first && hi >= last:
		newFirst, newLast = 0, 0
	case lo <= first:
		newFirst, err = firstIndexFrom(ctx, s.db, s.shard, hi+1)
	case hi >= last:
		newLast, err = lastIndexIn(ctx, s.db, s.shard, first, lo-1)
	}
	if err != nil {
		return fmt.Errorf("raftstore: shard %d: log bounds after deleting %d-%d: %w", s.shard, lo, hi, err)
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(logKey(s.shard, lo), logBound(s.shard, hi)); err != nil {
		return fmt.Errorf("raftstore: shard %d: delete logs %d-%d: %w", s.shard, lo, hi, err)
	}
	s.first.Store(newFirst)
	s.last.Store(newLast)
	if err := b.Commit(ctx); err != nil {
		s.loaded.Store(false) // the delete may or may not have happened
		return fmt.Errorf("raftstore: shard %d: delete logs %d-%d: %w", s.shard, lo, hi, err)
	}
	return nil
}
