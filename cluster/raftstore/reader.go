package raftstore

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/chatpacket/chatpacket/cluster/raftstore/raftpb"
	"github.com/chatpacket/chatpacket/storage"
)

// reader streams one snapshot's data, a chunk at a time: it never holds
// more than one chunk, whatever the snapshot's size. Each chunk is a point
// read, so the reader holds no iterator or lock between reads; retention
// spares the snapshot until Close. A reader is used by one goroutine at a
// time.
type reader struct {
	s      *Snapshots
	id     snapshotID
	chunks uint32 // how many the metadata promises
	size   int64

	next   uint32 // the chunk to read when buf is spent
	read   int64
	buf    []byte
	chunk  raftpb.SnapshotChunk
	closed bool
}

var errReaderClosed = errors.New("raftstore: snapshot reader closed")

// Read reads the snapshot's next bytes. A missing chunk or a size that does
// not match the metadata is an error wrapping storage.ErrCorrupt, never a
// short snapshot.
func (r *reader) Read(p []byte) (int, error) {
	if r.closed {
		return 0, errReaderClosed
	}
	for len(r.buf) == 0 {
		if r.next == r.chunks {
			if r.read != r.size {
				return 0, fmt.Errorf("%w: raft snapshot %s holds %d bytes; its metadata says %d", storage.ErrCorrupt, r.id, r.read, r.size)
			}
			return 0, io.EOF
		}
		err := r.s.db.Get(context.Background(), chunkKey(r.s.shard, r.id, r.next), &r.chunk)
		if errors.Is(err, storage.ErrNotFound) {
			err = fmt.Errorf("%w: chunk missing", storage.ErrCorrupt)
		}
		if err != nil {
			return 0, fmt.Errorf("raftstore: shard %d: snapshot %s chunk %d: %w", r.s.shard, r.id, r.next, err)
		}
		r.buf = r.chunk.Data
		r.next++
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	r.read += int64(n)
	return n, nil
}

// Close ends the read and lets retention delete the snapshot if it is no
// longer among the newest. A second Close returns nil.
func (r *reader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	r.buf = nil
	return r.s.closeReader(context.Background(), r.id)
}
