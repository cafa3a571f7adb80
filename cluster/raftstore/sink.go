package raftstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/chatpacket/chatpacket/cluster/raftstore/raftpb"
	"github.com/chatpacket/chatpacket/storage"
	"github.com/hashicorp/raft"
)

// sink receives one snapshot's data from raft (raft.SnapshotSink). It seals
// each full chunk into its batch at once and commits the batch every
// chunksPerCommit chunks, so it holds at most one chunk of plaintext and
// one commit's worth of sealed chunks. Close writes the last chunks and the
// metadata in one synced batch; until then nothing lists the snapshot.
//
// A sink is used by one goroutine at a time, as raft does.
type sink struct {
	s     *Snapshots
	id    snapshotID
	meta  *raftpb.SnapshotMeta
	batch *storage.Batch // sealed chunks not committed yet
	buf   []byte         // plaintext of the chunk being filled
	done  bool
	err   error // the first failure; every later call returns it
}

var _ raft.SnapshotSink = (*sink)(nil)

var errSinkDone = errors.New("raftstore: snapshot sink already closed or cancelled")

// ID returns the snapshot's id.
func (k *sink) ID() string { return k.meta.Id }

// Write appends p to the snapshot.
func (k *sink) Write(p []byte) (int, error) {
	if k.done {
		return 0, errSinkDone
	}
	if k.err != nil {
		return 0, k.err
	}
	ctx := context.Background()
	n := 0
	for len(p) > 0 {
		c := copy(k.buf[len(k.buf):cap(k.buf)], p)
		k.buf = k.buf[:len(k.buf)+c]
		p = p[c:]
		n += c
		if len(k.buf) == cap(k.buf) {
			if k.err = k.putChunk(ctx); k.err != nil {
				return n, k.err
			}
		}
	}
	return n, nil
}

// putChunk seals the buffered data as the next chunk and commits the batch
// when it holds chunksPerCommit chunks.
func (k *sink) putChunk(ctx context.Context) error {
	no := k.meta.Chunks
	if err := k.batch.Put(ctx, chunkKey(k.s.shard, k.id, no), storage.RaftLogKey, &raftpb.SnapshotChunk{Data: k.buf}); err != nil {
		return fmt.Errorf("raftstore: shard %d: snapshot %s chunk %d: %w", k.s.shard, k.meta.Id, no, err)
	}
	k.meta.Chunks++
	k.meta.Size += int64(len(k.buf))
	k.buf = k.buf[:0]
	if k.meta.Chunks%chunksPerCommit != 0 {
		return nil
	}
	err := k.batch.Commit(ctx)
	k.batch = k.s.db.NewBatch()
	if err != nil {
		return fmt.Errorf("raftstore: shard %d: snapshot %s: %w", k.s.shard, k.meta.Id, err)
	}
	return nil
}

// Close completes the snapshot: the last chunk and the metadata, in one
// synced batch, then retention. On failure nothing is listed and the chunks
// are removed.
func (k *sink) Close() error {
	if k.done {
		return nil
	}
	ctx := context.Background()
	err := k.err
	if err == nil && len(k.buf) > 0 {
		err = k.putChunk(ctx)
	}
	if err == nil {
		err = k.batch.Put(ctx, snapshotMetaKey(k.s.shard, k.id), storage.RaftLogKey, k.meta)
	}
	if err == nil {
		err = k.batch.Commit(ctx)
	}
	if err != nil {
		return errors.Join(fmt.Errorf("raftstore: shard %d: complete snapshot %s: %w", k.s.shard, k.meta.Id, err), k.Cancel())
	}
	k.done = true
	return k.s.done(ctx, k.id, true)
}

// Cancel abandons the snapshot and deletes the chunks written so far.
func (k *sink) Cancel() error {
	if k.done {
		return nil
	}
	k.done = true
	k.batch.Close()
	ctx := context.Background()
	b := k.s.db.NewBatch()
	defer b.Close()
	err := k.s.deleteInto(b, k.id)
	if err == nil {
		err = b.Commit(ctx)
	}
	// Forget the sink even if the delete failed: the chunks are then
	// orphans, and the next sweep deletes them.
	if derr := k.s.done(ctx, k.id, false); err == nil {
		err = derr
	}
	if err != nil {
		return fmt.Errorf("raftstore: shard %d: cancel snapshot %s: %w", k.s.shard, k.meta.Id, err)
	}
	return nil
}
