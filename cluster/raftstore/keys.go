package raftstore

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/chatpacket/chatpacket/storage"
)

// prefixLen is the length of shard | table, the start of every key.
const prefixLen = 3

// logKey is the key of the log entry at index.
func logKey(shard uint16, index uint64) []byte {
	return storage.Key(shard, storage.TableRaftLog, binary.BigEndian.AppendUint64(nil, index))
}

// logIndex reads the index back from a log key.
func logIndex(key []byte) (uint64, error) {
	if len(key) != prefixLen+8 {
		return 0, fmt.Errorf("%w: raft log key of %d bytes", storage.ErrCorrupt, len(key))
	}
	return binary.BigEndian.Uint64(key[prefixLen:]), nil
}

// logBound is the exclusive upper bound of log keys at or below index.
func logBound(shard uint16, index uint64) []byte {
	if index == ^uint64(0) {
		return storage.PrefixEnd(storage.TablePrefix(shard, storage.TableRaftLog))
	}
	return logKey(shard, index+1)
}

func stableKey(shard uint16, name []byte) []byte {
	return storage.Key(shard, storage.TableRaftStable, name)
}

// snapshotID names a snapshot: term, index and creation time in unix
// nanoseconds, each a big-endian uint64, so that byte order is the order of
// raft's FileSnapshotStore (term, then index, then creation).
type snapshotID [24]byte

func newSnapshotID(term, index uint64, nanos int64) snapshotID {
	var id snapshotID
	binary.BigEndian.PutUint64(id[0:], term)
	binary.BigEndian.PutUint64(id[8:], index)
	binary.BigEndian.PutUint64(id[16:], uint64(nanos))
	return id
}

// String is the id raft sees: fixed-width hex, term-index-nanos.
func (id snapshotID) String() string {
	return hex.EncodeToString(id[0:8]) + "-" + hex.EncodeToString(id[8:16]) + "-" + hex.EncodeToString(id[16:24])
}

func parseSnapshotID(s string) (snapshotID, error) {
	var id snapshotID
	if len(s) != 3*16+2 || s[16] != '-' || s[33] != '-' {
		return id, fmt.Errorf("raftstore: snapshot id %q: want TERM-INDEX-NANOS in 16 hex digits each", s)
	}
	for i, part := range []string{s[0:16], s[17:33], s[34:50]} {
		if _, err := hex.Decode(id[8*i:8*i+8], []byte(part)); err != nil {
			return id, fmt.Errorf("raftstore: snapshot id %q: %w", s, err)
		}
	}
	return id, nil
}

func snapshotMetaKey(shard uint16, id snapshotID) []byte {
	return storage.Key(shard, storage.TableRaftSnapshotMeta, id[:])
}

// chunkPrefix is the prefix of every chunk key of snapshot id.
func chunkPrefix(shard uint16, id snapshotID) []byte {
	return storage.Key(shard, storage.TableRaftSnapshot, id[:])
}

func chunkKey(shard uint16, id snapshotID, chunk uint32) []byte {
	return binary.BigEndian.AppendUint32(chunkPrefix(shard, id), chunk)
}

// chunkKeyID reads the snapshot id back from a chunk key.
func chunkKeyID(key []byte) (snapshotID, error) {
	var id snapshotID
	if len(key) != prefixLen+len(id)+4 {
		return id, fmt.Errorf("%w: raft snapshot chunk key of %d bytes", storage.ErrCorrupt, len(key))
	}
	copy(id[:], key[prefixLen:])
	return id, nil
}
