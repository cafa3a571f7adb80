package raftstore

import (
	"bytes"
	"context"
	"errors"

	"github.com/chatpacket/chatpacket/storage"
	"google.golang.org/protobuf/proto"
)

// errStop ends a scan at its first key.
var errStop = errors.New("raftstore: stop scan")

// firstKey returns a copy of the first key in [lower, upper), or nil when
// there is none. It opens no value: finding where a log starts or which
// snapshots have chunks costs one seek, not a read of the records.
func firstKey(ctx context.Context, db *storage.DB, lower, upper []byte) ([]byte, error) {
	var found []byte
	err := db.Scan(ctx, lower, upper, func(key []byte, _ func(proto.Message) error) error {
		found = bytes.Clone(key)
		return errStop
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, err
	}
	return found, nil
}

// exists reports whether key holds a record, without opening it.
func exists(ctx context.Context, db *storage.DB, key []byte) (bool, error) {
	k, err := firstKey(ctx, db, key, append(bytes.Clone(key), 0))
	return k != nil, err
}

// firstIndexFrom returns the smallest log index at or above from, 0 when the
// log has none.
func firstIndexFrom(ctx context.Context, db *storage.DB, shard uint16, from uint64) (uint64, error) {
	k, err := firstKey(ctx, db, logKey(shard, from), logBound(shard, ^uint64(0)))
	if err != nil || k == nil {
		return 0, err
	}
	return logIndex(k)
}

// lastIndexIn returns the largest log index in [lo, hi], given that lo is
// in the log. storage.DB scans forward only, so this searches: a seek for
// the first index at or above mid tells whether anything lies above mid, and
// at most 64 seeks narrow the range to one index. It runs when a Store
// loads its bounds and when a truncation removes the end of the log, never
// on appends.
func lastIndexIn(ctx context.Context, db *storage.DB, shard uint16, lo, hi uint64) (uint64, error) {
	upper := logBound(shard, hi)
	for lo < hi {
		mid := lo + (hi-lo)/2 + 1
		k, err := firstKey(ctx, db, logKey(shard, mid), upper)
		if err != nil {
			return 0, err
		}
		if k == nil {
			hi = mid - 1
			continue
		}
		if lo, err = logIndex(k); err != nil {
			return 0, err
		}
	}
	return lo, nil
}
