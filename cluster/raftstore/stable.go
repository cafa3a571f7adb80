package raftstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/chatpacket/chatpacket/cluster/raftstore/raftpb"
	"github.com/chatpacket/chatpacket/storage"
)

// ErrKeyNotFound is what Get and GetUint64 return for a key never set.
//
// Its text is exactly "not found", without this package's prefix, because
// raft recognises a missing stable key by that text alone: raft v1.8.0
// checks `err.Error() != "not found"` in api.go:478 (HasExistingState),
// api.go:519 (NewRaft) and raft.go:1710 and raft.go:1715 (requestVote).
// raft-boltdb returns the same error for both Get and GetUint64; raft's
// StableStore comment also allows an empty value or 0 with a nil error,
// but then a caller could not tell an unset key from a set empty one.
var ErrKeyNotFound = errors.New("not found")

// Set stores val under key with a synced commit.
func (s *Store) Set(key, val []byte) error {
	if err := s.db.Put(context.Background(), stableKey(s.shard, key), storage.RaftLogKey, &raftpb.StableValue{Value: val}); err != nil {
		return fmt.Errorf("raftstore: shard %d: set %q: %w", s.shard, key, err)
	}
	return nil
}

// Get returns the value of key; ErrKeyNotFound when it was never set. A key
// set to an empty value returns an empty, non-nil slice.
func (s *Store) Get(key []byte) ([]byte, error) {
	var v raftpb.StableValue
	err := s.db.Get(context.Background(), stableKey(s.shard, key), &v)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("raftstore: shard %d: get %q: %w", s.shard, key, err)
	}
	if v.Value == nil {
		return []byte{}, nil
	}
	return v.Value, nil
}

// SetUint64 stores val under key as 8 big-endian bytes, as raft-boltdb does.
func (s *Store) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 returns the value of key; 0 and ErrKeyNotFound when it was
// never set.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	val, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(val) != 8 {
		return 0, fmt.Errorf("%w: raft stable key %q holds %d bytes, not a uint64", storage.ErrCorrupt, key, len(val))
	}
	return binary.BigEndian.Uint64(val), nil
}
