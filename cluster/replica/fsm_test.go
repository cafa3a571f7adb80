package replica

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/chatpacket/chatpacket/storage"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// logFSM is the tests' state machine, built the way the product's is: it
// keeps its state in the node's store (each command's data by log index,
// and the last applied index), commits each batch in one synced write, and
// skips entries it already applied, since raft replays them at start.
type logFSM struct {
	db    *storage.DB
	shard uint16
}

const (
	tableEntries = storage.TableFirstUser
	tableApplied = storage.TableFirstUser + 1
)

// response is what Apply answers for a command: deterministic, so a test
// can tell it came from this FSM and this entry.
type response struct {
	Shard uint16
	Index uint64
	Data  string
}

var _ raft.BatchingFSM = (*logFSM)(nil)

func (f *logFSM) appliedKey() []byte { return storage.Key(f.shard, tableApplied) }

func (f *logFSM) entryKey(index uint64) []byte {
	return storage.Key(f.shard, tableEntries, binary.BigEndian.AppendUint64(nil, index))
}

func (f *logFSM) applied() (uint64, error) {
	var v wrapperspb.UInt64Value
	err := f.db.Get(context.Background(), f.appliedKey(), &v)
	if errors.Is(err, storage.ErrNotFound) {
		return 0, nil
	}
	return v.Value, err
}

func (f *logFSM) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

func (f *logFSM) ApplyBatch(logs []*raft.Log) []any {
	ctx := context.Background()
	out := make([]any, len(logs))
	done, err := f.applied()
	if err != nil {
		for i := range out {
			out[i] = err
		}
		return out
	}
	b := f.db.NewBatch()
	defer b.Close()
	last := done
	for i, l := range logs {
		if l.Type != raft.LogCommand || l.Index <= done {
			continue
		}
		if err := b.Put(ctx, f.entryKey(l.Index), storage.RaftLogKey, wrapperspb.Bytes(l.Data)); err != nil {
			out[i] = err
			continue
		}
		out[i] = response{f.shard, l.Index, string(l.Data)}
		last = l.Index
	}
	if last == done {
		return out
	}
	if err := b.Put(ctx, f.appliedKey(), storage.RaftLogKey, wrapperspb.UInt64(last)); err == nil {
		err = b.Commit(ctx)
	}
	if err != nil {
		for i := range out {
			out[i] = err
		}
	}
	return out
}

// entries returns the data of every applied command, in log order.
func (f *logFSM) entries() ([]string, error) {
	var out []string
	err := f.db.ScanPrefix(context.Background(), storage.TablePrefix(f.shard, tableEntries), func(_ []byte, open func(proto.Message) error) error {
		var v wrapperspb.BytesValue
		if err := open(&v); err != nil {
			return err
		}
		out = append(out, string(v.Value))
		return nil
	})
	return out, err
}

// Snapshot writes the applied index, then each entry's index and data,
// length-prefixed.
func (f *logFSM) Snapshot() (raft.FSMSnapshot, error) {
	done, err := f.applied()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Write(binary.AppendUvarint(nil, done))
	err = f.db.ScanPrefix(context.Background(), storage.TablePrefix(f.shard, tableEntries), func(key []byte, open func(proto.Message) error) error {
		var v wrapperspb.BytesValue
		if err := open(&v); err != nil {
			return err
		}
		buf.Write(key[len(key)-8:])
		buf.Write(binary.AppendUvarint(nil, uint64(len(v.Value))))
		buf.Write(v.Value)
		return nil
	})
	return snapshot(buf.Bytes()), err
}

func (f *logFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	ctx := context.Background()
	b := f.db.NewBatch()
	defer b.Close()
	prefix := storage.TablePrefix(f.shard, tableEntries)
	if err := b.DeleteRange(prefix, storage.PrefixEnd(prefix)); err != nil {
		return err
	}
	r := bytes.NewReader(data)
	done, err := binary.ReadUvarint(r)
	if err != nil {
		return fmt.Errorf("snapshot header: %w", err)
	}
	for r.Len() > 0 {
		var idx [8]byte
		if _, err := io.ReadFull(r, idx[:]); err != nil {
			return err
		}
		n, err := binary.ReadUvarint(r)
		if err != nil {
			return err
		}
		v := make([]byte, n)
		if _, err := io.ReadFull(r, v); err != nil {
			return err
		}
		if err := b.Put(ctx, f.entryKey(binary.BigEndian.Uint64(idx[:])), storage.RaftLogKey, wrapperspb.Bytes(v)); err != nil {
			return err
		}
	}
	if err := b.Put(ctx, f.appliedKey(), storage.RaftLogKey, wrapperspb.UInt64(done)); err != nil {
		return err
	}
	return b.Commit(ctx)
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (snapshot) Release() {}
