package raftstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/chatpacket/chatpacket/cluster/raftstore/raftpb"
	"github.com/chatpacket/chatpacket/storage"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
)

// Snapshots is one raft group's snapshot store (raft.SnapshotStore) on the
// node's Pebble.
//
// Layout. A snapshot is its data, cut into sealed chunks of at most
// chunkSize bytes (TableRaftSnapshot, by id and chunk number), and one
// metadata record (TableRaftSnapshotMeta, by id). The sink commits chunks
// as it goes, chunksPerCommit at a time, and the metadata last, in the same
// synced batch as the final chunks; List and Open see only snapshots with
// metadata, so a crash while writing leaves nothing listed. The chunks such
// a crash leaves behind (orphans: chunks without metadata, of no sink of
// this process) are deleted by NewSnapshots and by every Create.
//
// Retention. After each snapshot completes, all but the newest retain are
// deleted: their metadata and, with one range tombstone, their chunks. A
// snapshot open for reading is spared until its reader closes, as an open
// file survives its removal under FileSnapshotStore: raft may be streaming
// it to a follower while a newer one completes.
//
// mu serialises these bookkeeping steps (orphan sweep, retention, Open
// registering a reader) and is held across their Pebble reads and commits;
// they are rare, small, and must not interleave. Chunk writes and reads do
// not take it.
type Snapshots struct {
	db     *storage.DB
	shard  uint16
	retain int

	mu struct {
		sync.Mutex
		writing   map[snapshotID]bool // sinks not closed or cancelled yet
		reading   map[snapshotID]int  // open readers per snapshot
		lastNanos int64               // creation time of the last id, to keep ids unique
	}
}

const (
	// chunkSize is the most data one chunk holds: large enough that the
	// per-chunk cost (a key, an envelope, a seal) is noise, small enough
	// that a reader or writer holds little.
	chunkSize = 64 << 10
	// chunksPerCommit is how many chunks a sink writes per synced commit
	// (1 MiB): one fsync per MiB, and a batch that never grows with the
	// snapshot.
	chunksPerCommit = 16
)

var _ raft.SnapshotStore = (*Snapshots)(nil)

// ErrSnapshotNotFound is returned by Open for an id with no complete
// snapshot (never written, cancelled, or deleted by retention).
var ErrSnapshotNotFound = errors.New("raftstore: snapshot not found")

// NewSnapshots returns the snapshot store of shard's raft group in db,
// keeping the newest retain snapshots (at least 1, as FileSnapshotStore
// requires). It deletes the chunks a crash left behind, which is why there
// must be one Snapshots per shard of a db: another one's sinks in progress
// would look like a crash's leftovers.
func NewSnapshots(db *storage.DB, shard uint16, retain int) (*Snapshots, error) {
	if retain < 1 {
		return nil, fmt.Errorf("raftstore: retain = %d; must keep at least one snapshot", retain)
	}
	s := &Snapshots{db: db, shard: shard, retain: retain}
	s.mu.writing = make(map[snapshotID]bool)
	s.mu.reading = make(map[snapshotID]int)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.sweepOrphansLocked(context.Background()); err != nil {
		return nil, err
	}
	return s, nil
}

// Create starts a snapshot at index and term. trans is not used: it only
// encodes the Peers field of version 0 snapshots, which this store does not
// write (raft reads Configuration from version 1 on).
func (s *Snapshots) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration, configurationIndex uint64, _ raft.Transport) (raft.SnapshotSink, error) {
	if version != 1 {
		return nil, fmt.Errorf("raftstore: unsupported snapshot version %d", version)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.sweepOrphansLocked(context.Background()); err != nil {
		return nil, err
	}
	nanos := max(time.Now().UnixNano(), s.mu.lastNanos+1)
	s.mu.lastNanos = nanos
	id := newSnapshotID(term, index, nanos)
	s.mu.writing[id] = true
	meta := &raftpb.SnapshotMeta{
		Id:                 id.String(),
		Version:            int32(version),
		Index:              index,
		Term:               term,
		ConfigurationIndex: configurationIndex,
	}
	for _, srv := range configuration.Servers {
		meta.Configuration = append(meta.Configuration, &raftpb.Server{
			Suffrage: int32(srv.Suffrage), Id: string(srv.ID), Address: string(srv.Address),
		})
	}
	return &sink{s: s, id: id, meta: meta, batch: s.db.NewBatch(), buf: make([]byte, 0, chunkSize)}, nil
}

// List returns the newest retain snapshots, newest first.
func (s *Snapshots) List() ([]*raft.SnapshotMeta, error) {
	metas, err := s.metas(context.Background())
	if err != nil {
		return nil, err
	}
	var out []*raft.SnapshotMeta
	for _, m := range metas[:min(len(metas), s.retain)] {
		out = append(out, toRaftMeta(m))
	}
	return out, nil
}

// Open returns the metadata of snapshot id and a reader of its data, which
// streams it a chunk at a time. Close the reader when done: until then
// retention spares the snapshot.
func (s *Snapshots) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	sid, err := parseSnapshotID(id)
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var m raftpb.SnapshotMeta
	err = s.db.Get(context.Background(), snapshotMetaKey(s.shard, sid), &m)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil, fmt.Errorf("%w: shard %d, %s", ErrSnapshotNotFound, s.shard, id)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("raftstore: shard %d: read snapshot %s: %w", s.shard, id, err)
	}
	s.mu.reading[sid]++
	return toRaftMeta(&m), &reader{s: s, id: sid, chunks: m.Chunks, size: m.Size}, nil
}

// metas returns the metadata of every complete snapshot, newest first.
func (s *Snapshots) metas(ctx context.Context) ([]*raftpb.SnapshotMeta, error) {
	var out []*raftpb.SnapshotMeta
	prefix := storage.TablePrefix(s.shard, storage.TableRaftSnapshotMeta)
	err := s.db.ScanPrefix(ctx, prefix, func(_ []byte, open func(proto.Message) error) error {
		m := &raftpb.SnapshotMeta{}
		if err := open(m); err != nil {
			return err
		}
		out = append(out, m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("raftstore: shard %d: list snapshots: %w", s.shard, err)
	}
	slices.Reverse(out) // keys sort oldest first
	return out, nil
}

func toRaftMeta(m *raftpb.SnapshotMeta) *raft.SnapshotMeta {
	rm := &raft.SnapshotMeta{
		Version:            raft.SnapshotVersion(m.Version),
		ID:                 m.Id,
		Index:              m.Index,
		Term:               m.Term,
		ConfigurationIndex: m.ConfigurationIndex,
		Size:               m.Size,
	}
	for _, srv := range m.Configuration {
		rm.Configuration.Servers = append(rm.Configuration.Servers, raft.Server{
			Suffrage: raft.ServerSuffrage(srv.Suffrage), ID: raft.ServerID(srv.Id), Address: raft.ServerAddress(srv.Address),
		})
	}
	return rm
}

// reapLocked deletes every complete snapshot but the newest retain, except
// those open for reading.
func (s *Snapshots) reapLocked(ctx context.Context) error {
	metas, err := s.metas(ctx)
	if err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, m := range metas[min(len(metas), s.retain):] {
		id, err := parseSnapshotID(m.Id)
		if err != nil {
			return fmt.Errorf("%w: %v", storage.ErrCorrupt, err)
		}
		if s.mu.reading[id] > 0 {
			continue
		}
		if err := s.deleteInto(b, id); err != nil {
			return err
		}
		if err := b.Delete(snapshotMetaKey(s.shard, id)); err != nil {
			return err
		}
	}
	if b.Empty() {
		return nil
	}
	if err := b.Commit(ctx); err != nil {
		return fmt.Errorf("raftstore: shard %d: delete old snapshots: %w", s.shard, err)
	}
	return nil
}

// sweepOrphansLocked deletes the chunks of snapshots that have no metadata
// and no sink in this process: a crash interrupted them. It seeks once per
// snapshot, never reading chunks.
func (s *Snapshots) sweepOrphansLocked(ctx context.Context) error {
	b := s.db.NewBatch()
	defer b.Close()
	lower := storage.TablePrefix(s.shard, storage.TableRaftSnapshot)
	upper := storage.PrefixEnd(lower)
	for {
		k, err := firstKey(ctx, s.db, lower, upper)
		if err != nil {
			return fmt.Errorf("raftstore: shard %d: sweep snapshots: %w", s.shard, err)
		}
		if k == nil {
			break
		}
		id, err := chunkKeyID(k)
		if err != nil {
			return err
		}
		lower = storage.PrefixEnd(chunkPrefix(s.shard, id))
		if s.mu.writing[id] {
			continue
		}
		complete, err := exists(ctx, s.db, snapshotMetaKey(s.shard, id))
		if err != nil {
			return fmt.Errorf("raftstore: shard %d: sweep snapshots: %w", s.shard, err)
		}
		if !complete {
			if err := s.deleteInto(b, id); err != nil {
				return err
			}
		}
	}
	if b.Empty() {
		return nil
	}
	if err := b.Commit(ctx); err != nil {
		return fmt.Errorf("raftstore: shard %d: delete orphan snapshot chunks: %w", s.shard, err)
	}
	return nil
}

// deleteInto adds the removal of every chunk of snapshot id to b.
func (s *Snapshots) deleteInto(b *storage.Batch, id snapshotID) error {
	p := chunkPrefix(s.shard, id)
	return b.DeleteRange(p, storage.PrefixEnd(p))
}

// done forgets sink id and applies retention.
func (s *Snapshots) done(ctx context.Context, id snapshotID, complete bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.mu.writing, id)
	if !complete {
		return nil
	}
	return s.reapLocked(ctx)
}

// closeReader forgets a reader of id and applies the retention it delayed.
func (s *Snapshots) closeReader(ctx context.Context, id snapshotID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.reading[id]--; s.mu.reading[id] <= 0 {
		delete(s.mu.reading, id)
	}
	return s.reapLocked(ctx)
}
