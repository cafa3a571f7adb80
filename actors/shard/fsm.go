package shard

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"
)

// FSM is one shard's replicated state machine: the raft group of the shard
// hands it the committed log, in order, on every replica, and it applies
// each entry's Command to the store with the same code on every node.
//
// Durability. Applying writes without waiting for the disk: the raft log
// is synced before an entry is applied and lives in the same store (the
// same write-ahead log), so the next synced log append makes the applied
// writes durable too. The index of the last applied entry is written in
// the same batch as its changes, so after a crash the FSM knows exactly
// which entries raft replays it had already applied (raft is configured
// not to restore snapshots at start: the FSM's state is in the store).
//
// Concurrency: raft calls ApplyBatch, Snapshot and Restore from one
// goroutine; reads of the machine run alongside on the store and may wait
// for the applied index to reach a point (waitApplied).
type FSM struct {
	db    *storage.DB
	shard uint16

	// applied is written only by raft's FSM goroutine (ApplyBatch,
	// Restore), under mu, and read under mu by others; the FSM goroutine
	// reads it without. convs is the FSM goroutine's alone.
	mu      sync.Mutex
	applied uint64
	// advanced is closed (and replaced) whenever applied grows.
	advanced chan struct{}
	// convs holds committed conversation records. The FSM is its shard's
	// only writer on this node, so the cache is exact; it saves a read and
	// an open per command. Eviction is random (map order).
	convs map[storage.ID]*actorspb.ConversationRecord
}

var _ raft.BatchingFSM = (*FSM)(nil)

// NewFSM opens the state machine of one shard of db.
func NewFSM(db *storage.DB, shard uint16) (*FSM, error) {
	f := &FSM{db: db, shard: shard, convs: map[storage.ID]*actorspb.ConversationRecord{}, advanced: make(chan struct{})}
	var rec actorspb.AppliedRecord
	switch err := db.Get(context.Background(), f.appliedKey(), &rec); {
	case errors.Is(err, storage.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("shard %d: read applied index: %w", shard, err)
	}
	f.applied = rec.Index
	return f, nil
}

func (f *FSM) appliedKey() []byte { return AppliedKey(f.shard) }

// Applied is the index of the last log entry applied here.
func (f *FSM) Applied() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

// Apply applies one entry.
func (f *FSM) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies committed entries in one store batch. Each command's
// answer is a *actorspb.Reply; a command that fails is dropped whole and
// answered with its error, the rest still apply. Entries this FSM applied
// before a restart are skipped (answered nil: no one waits for them).
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	ctx := context.Background()
	group := f.db.NewBatch()
	defer group.Close()
	st := newState(f.db, f.convs)
	last := f.applied
	for i, l := range logs {
		if l.Index <= f.applied {
			continue
		}
		last = l.Index
		if l.Type != raft.LogCommand {
			continue
		}
		var cmd actorspb.Command
		if err := proto.Unmarshal(l.Data, &cmd); err != nil {
			out[i] = replyOf(nil, fmt.Errorf("%w: undecodable command: %v", ErrInvalid, err))
			continue
		}
		if err := f.owns(&cmd); err != nil {
			out[i] = replyOf(nil, err)
			continue
		}
		res, err := st.apply(ctx, group, &cmd)
		out[i] = replyOf(res, err)
	}
	if last == f.applied {
		return out
	}
	err := group.Put(ctx, f.appliedKey(), storage.RaftLogKey, &actorspb.AppliedRecord{Index: last})
	if err == nil {
		err = group.CommitNoSync(ctx)
	}
	if err != nil {
		// The store failed under us: nothing of the batch is applied, and
		// this replica cannot go on consistently. Raft has no way to retry
		// an apply, so stop here rather than diverge.
		panic(fmt.Sprintf("shard %d: applying log entries up to %d: %v", f.shard, last, err))
	}
	f.advance(last)
	f.remember(st.convs)
	return out
}

// advance records a new applied index and wakes its waiters.
func (f *FSM) advance(index uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = index
	close(f.advanced)
	f.advanced = make(chan struct{})
}

// waitApplied returns once the FSM has applied index, or ctx ends.
func (f *FSM) waitApplied(ctx context.Context, index uint64) error {
	for {
		f.mu.Lock()
		applied, advanced := f.applied, f.advanced
		f.mu.Unlock()
		if applied >= index {
			return nil
		}
		select {
		case <-advanced:
		case <-ctx.Done():
			return fmt.Errorf("%w: shard %d applied %d of %d: %v", ErrUnavailable, f.shard, applied, index, ctx.Err())
		}
	}
}

// owns checks that cmd belongs to this shard: a command applied to another
// shard's log would write records that shard's replicas never see.
func (f *FSM) owns(cmd *actorspb.Command) error {
	route, err := routeOf(cmd)
	if err != nil {
		return err
	}
	if s := storage.ShardOf(route, f.db.Shards()); s != f.shard {
		return fmt.Errorf("%w: a command of shard %d in the log of shard %d", ErrInvalid, s, f.shard)
	}
	return nil
}

// remember caches the conversations a committed batch changed.
func (f *FSM) remember(changed map[storage.ID]*actorspb.ConversationRecord) {
	for id, conv := range changed {
		if _, ok := f.convs[id]; !ok && len(f.convs) >= cachedConversations {
			for old := range f.convs {
				delete(f.convs, old)
				break
			}
		}
		f.convs[id] = conv
	}
}

// replyOf turns an apply's outcome into what travels back to the proposer.
func replyOf(res *actorspb.Result, err error) *actorspb.Reply {
	if err == nil {
		return &actorspb.Reply{Result: res}
	}
	code := actorspb.ErrorCode_ERROR_CODE_INTERNAL
	switch {
	case errors.Is(err, ErrNotFound):
		code = actorspb.ErrorCode_ERROR_CODE_NOT_FOUND
	case errors.Is(err, ErrInvalid):
		code = actorspb.ErrorCode_ERROR_CODE_INVALID
	case errors.Is(err, ErrExists):
		code = actorspb.ErrorCode_ERROR_CODE_EXISTS
	case errors.Is(err, storage.ErrErased):
		code = actorspb.ErrorCode_ERROR_CODE_ERASED
	}
	return &actorspb.Reply{Error: code, Message: err.Error()}
}

// errorOf is replyOf's inverse: the error a reply carries, matching the
// package's sentinel errors under errors.Is.
func errorOf(r *actorspb.Reply) error {
	var base error
	switch r.GetError() {
	case actorspb.ErrorCode_ERROR_CODE_NONE:
		return nil
	case actorspb.ErrorCode_ERROR_CODE_NOT_FOUND:
		base = ErrNotFound
	case actorspb.ErrorCode_ERROR_CODE_INVALID:
		base = ErrInvalid
	case actorspb.ErrorCode_ERROR_CODE_EXISTS:
		base = ErrExists
	case actorspb.ErrorCode_ERROR_CODE_ERASED:
		base = storage.ErrErased
	default:
		return errors.New(r.GetMessage())
	}
	return &replyError{base: base, msg: r.GetMessage()}
}

type replyError struct {
	base error
	msg  string
}

func (e *replyError) Error() string { return e.msg }
func (e *replyError) Unwrap() error { return e.base }

// shardRange is the replicated part of the shard's keyspace: the state
// machine's tables. Storage's own tables (key records, the shred ledger)
// and the raft tables below TableFirstUser are the node's, never a
// snapshot's.
func (f *FSM) shardRange() (lower, upper []byte) { return ReplicatedRange(f.shard) }

// Snapshot pins the shard's state as of the last applied entry; Persist
// streams it while applies go on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	snap, err := f.db.NewSnapshot()
	if err != nil {
		return nil, err
	}
	lower, upper := f.shardRange()
	return &fsmSnapshot{snap: snap, lower: lower, upper: upper}, nil
}

type fsmSnapshot struct {
	snap         *storage.Snapshot
	lower, upper []byte
}

// Persist writes the shard's records as length-delimited SnapshotRecords.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriterSize(sink, 64<<10)
	err := s.snap.Export(context.Background(), s.lower, s.upper, func(e storage.Exported) error {
		rec := &actorspb.SnapshotRecord{Key: e.Key, KeyId: e.Ref.ID[:], Plaintext: e.Plaintext, Sealed: e.Sealed}
		if e.Plaintext != nil {
			rec.ParentKeyId = e.Ref.Parent[:]
		}
		_, err := protodelim.MarshalTo(w, rec)
		return err
	})
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("shard snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() { s.snap.Close() }

// restoreBatch bounds how many records one restore batch carries.
const restoreBatch = 1024

// Restore replaces the shard's state with a snapshot's (a replica that fell
// behind the leader's log, or a new one).
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	ctx := context.Background()
	lower, upper := f.shardRange()
	b := f.db.NewBatch()
	defer func() { b.Close() }()
	if err := b.DeleteRange(lower, upper); err != nil {
		return err
	}
	r := bufio.NewReaderSize(rc, 64<<10)
	for n := 1; ; n++ {
		var rec actorspb.SnapshotRecord
		err := protodelim.UnmarshalFrom(r, &rec)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("shard %d: read snapshot: %w", f.shard, err)
		}
		e := storage.Exported{Key: rec.Key, Plaintext: rec.Plaintext, Sealed: rec.Sealed}
		copy(e.Ref.ID[:], rec.KeyId)
		copy(e.Ref.Parent[:], rec.ParentKeyId)
		if err := b.Import(ctx, e); err != nil {
			return fmt.Errorf("shard %d: restore: %w", f.shard, err)
		}
		if n%restoreBatch == 0 {
			if err := b.CommitNoSync(ctx); err != nil {
				return err
			}
			b = f.db.NewBatch()
		}
	}
	if err := b.Commit(ctx); err != nil {
		return err
	}
	var rec actorspb.AppliedRecord
	if err := f.db.Get(ctx, f.appliedKey(), &rec); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	f.advance(rec.Index)
	clear(f.convs)
	return nil
}
