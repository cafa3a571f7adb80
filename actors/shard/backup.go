package shard

import (
	"context"
	"fmt"

	"github.com/chatpacket/chatpacket/storage"
)

// What backups (cluster/backup) need of the state machine: which part of
// the keyspace is a shard's replicated state, where its applied index is,
// and a way to make sure this node's replica holds every acknowledged
// write before it is read.

// ReplicatedRange is the part of shard's keyspace that its raft group
// replicates: the state machine's tables, storage.TableFirstUser and up.
// Storage's own tables (key records, the shred ledger) and the raft
// tables below it are the node's.
func ReplicatedRange(shard uint16) (lower, upper []byte) {
	return storage.TablePrefix(shard, storage.TableFirstUser), storage.PrefixEnd(storage.Key(shard, 0xFF))
}

// AppliedKey is where shard's FSM records the index of the last raft log
// entry it applied (an actorspb.AppliedRecord sealed under
// storage.RaftLogKey).
func AppliedKey(shard uint16) []byte { return storage.Key(shard, TableApplied) }

// CatchUp returns once this node's replica of shard has applied every
// entry the shard's leader had committed when it was called, so that a
// read of the store after it sees every write acknowledged before. It
// returns an error wrapping ErrNoReplica when this node holds no replica
// of the shard.
func (m *Machine) CatchUp(ctx context.Context, shard uint16) error {
	if int(shard) >= len(m.fsms) {
		return fmt.Errorf("%w: shard %d of %d", ErrInvalid, shard, len(m.fsms))
	}
	return m.caughtUp(ctx, storage.Key(shard, TableApplied))
}
