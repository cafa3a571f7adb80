package raftstore

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/chatpacket/chatpacket/storage"
)

// Scrubbing after an erasure. A snapshot holds a shard's records open (it
// travels to other nodes, which seal under keys of their own), sealed here
// only under the node's storage.RaftLogKey, which no erasure destroys; the
// log holds whole commands. So once a person's key is shredded, the
// snapshots taken before and the log entries behind them still hold their
// data. Scrub and TruncateThrough take it out.

// Scrub rewrites the newest snapshot through rewrite (which reads the old
// data and writes the new) as a new snapshot of the same index, term and
// configuration, then deletes every older snapshot. Snapshots open for
// reading are left, and Scrub reports that it must be run again. A
// snapshot completed meanwhile by raft is newer and kept.
func (s *Snapshots) Scrub(ctx context.Context, rewrite func(io.Reader, io.Writer) error) (newest uint64, err error) {
	metas, err := s.metas(ctx)
	if err != nil || len(metas) == 0 {
		return 0, err
	}
	old := toRaftMeta(metas[0])
	_, rc, err := s.Open(old.ID)
	if err != nil {
		return 0, err
	}
	k, err := s.Create(old.Version, old.Index, old.Term, old.Configuration, old.ConfigurationIndex, nil)
	if err != nil {
		rc.Close()
		return 0, err
	}
	err = rewrite(rc, k)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		k.Cancel()
		return 0, fmt.Errorf("raftstore: shard %d: scrub snapshot %s: %w", s.shard, old.ID, err)
	}
	if err := k.Close(); err != nil {
		return 0, err
	}
	scrubbed := k.(*sink).id

	s.mu.Lock()
	defer s.mu.Unlock()
	metas, err = s.metas(ctx)
	if err != nil {
		return 0, err
	}
	b := s.db.NewBatch()
	defer b.Close()
	busy := 0
	for _, m := range metas {
		id, err := parseSnapshotID(m.Id)
		if err != nil {
			return 0, fmt.Errorf("%w: %v", storage.ErrCorrupt, err)
		}
		if !id.less(scrubbed) {
			continue // the scrubbed one, or newer
		}
		if s.mu.reading[id] > 0 {
			busy++
			continue
		}
		if err := s.deleteInto(b, id); err != nil {
			return 0, err
		}
		if err := b.Delete(snapshotMetaKey(s.shard, id)); err != nil {
			return 0, err
		}
	}
	if !b.Empty() {
		if err := b.Commit(ctx); err != nil {
			return 0, fmt.Errorf("raftstore: shard %d: delete scrubbed snapshots: %w", s.shard, err)
		}
	}
	if busy > 0 {
		return 0, fmt.Errorf("raftstore: shard %d: %d old snapshots are being read; scrub again later", s.shard, busy)
	}
	return old.Index, nil
}

// Ranges are the key ranges of shard's raft log and snapshots, for
// storage.DB.Purge once they were scrubbed.
func Ranges(shard uint16) [][2][]byte {
	var out [][2][]byte
	for _, t := range []storage.Table{storage.TableRaftLog, storage.TableRaftSnapshot, storage.TableRaftSnapshotMeta} {
		p := storage.TablePrefix(shard, t)
		out = append(out, [2][]byte{p, storage.PrefixEnd(p)})
	}
	return out
}

func (id snapshotID) less(o snapshotID) bool { return bytes.Compare(id[:], o[:]) < 0 }

// TruncateThrough deletes the log entries up to index, which a snapshot
// covers: raft's own compaction keeps Config.TrailingLogs of them for slow
// followers, and a follower that needs one then gets the snapshot instead.
func (s *Store) TruncateThrough(index uint64) error {
	first, err := s.FirstIndex()
	if err != nil || first == 0 || first > index {
		return err
	}
	return s.DeleteRange(first, index)
}
