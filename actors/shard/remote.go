package shard

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
	"google.golang.org/protobuf/proto"
)

// Reads of a shard on any node. A node with a replica catches up with the
// leader and reads its own store; a node without one sends the read to the
// leader, which opens the records with its keys and sends them back open
// (as the raft log carries commands). Records leave a node open only to
// another node of the cluster, never to a client.

// maxRemoteRecords bounds what one remote read carries back.
const maxRemoteRecords = 1000

// get reads the record at key into into.
func (m *Machine) get(ctx context.Context, key []byte, into proto.Message) error {
	local, err := m.local(ctx, key)
	if err != nil {
		return err
	}
	if local {
		err := m.db.Get(ctx, key, into)
		if errors.Is(err, storage.ErrNotFound) {
			return ErrNotFound
		}
		return err
	}
	found := false
	err = m.remoteScan(ctx, key, append(bytes.Clone(key), 0), 1, func(_ []byte, open func(proto.Message) error) error {
		found = true
		return open(into)
	})
	if err == nil && !found {
		return ErrNotFound
	}
	return err
}

// scan calls fn for the records with lower <= key < upper, in key order,
// at most limit (fn may stop earlier by returning errStop, which scan does
// not return). All keys are of one shard.
func (m *Machine) scan(ctx context.Context, lower, upper []byte, limit int, fn func(key []byte, open func(proto.Message) error) error) error {
	local, err := m.local(ctx, lower)
	if err != nil {
		return err
	}
	n := 0
	count := func(key []byte, open func(proto.Message) error) error {
		if n >= limit {
			return errStop
		}
		n++
		return fn(key, open)
	}
	if local {
		err = m.db.Scan(ctx, lower, upper, count)
	} else {
		err = m.remoteScan(ctx, lower, upper, limit, count)
	}
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// local catches this node's replica of key's shard up with the leader and
// reports true, or reports false when this node holds no replica of it.
func (m *Machine) local(ctx context.Context, key []byte) (bool, error) {
	err := m.caughtUp(ctx, key)
	if errors.Is(err, ErrNoReplica) {
		return false, nil
	}
	return err == nil, err
}

// remoteScan reads records of a shard this node holds no replica of from
// its leader, in pages.
func (m *Machine) remoteScan(ctx context.Context, lower, upper []byte, limit int, fn func(key []byte, open func(proto.Message) error) error) error {
	m.mu.RLock()
	log := m.log
	m.mu.RUnlock()
	if log == nil {
		return ErrStopped
	}
	shard := binary.BigEndian.Uint16(lower)
	for limit > 0 {
		page := min(limit, maxRemoteRecords)
		req, err := proto.Marshal(&actorspb.RecordRead{Lower: lower, Upper: upper, Limit: int32(page)})
		if err != nil {
			return err
		}
		raw, err := log.Read(ctx, shard, req)
		if err != nil {
			return err
		}
		var res actorspb.RecordReadResult
		if err := proto.Unmarshal(raw, &res); err != nil {
			return fmt.Errorf("shard: remote read: %w", err)
		}
		if err := errorOf(&actorspb.Reply{Error: res.Error, Message: res.Message}); err != nil {
			return err
		}
		for _, r := range res.Records {
			open := func(into proto.Message) error {
				if r.Erased {
					return storage.ErrErased
				}
				return proto.Unmarshal(r.Plaintext, into)
			}
			if err := fn(r.Key, open); err != nil {
				return err
			}
		}
		if len(res.Records) < page {
			return nil
		}
		limit -= page
		lower = append(bytes.Clone(res.Records[len(res.Records)-1].Key), 0)
	}
	return nil
}

// ServeRead answers a RecordRead of shard for a node without a replica of
// it; the caller leads the shard.
func (m *Machine) ServeRead(ctx context.Context, shard uint16, raw []byte) ([]byte, error) {
	var req actorspb.RecordRead
	if err := proto.Unmarshal(raw, &req); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	lower, upper, limit := req.Lower, req.Upper, int(req.Limit)
	// Only the state machine's tables: storage's own (key records, the
	// ledger) and raft's never leave the node.
	if len(lower) < 3 || binary.BigEndian.Uint16(lower) != shard || storage.Table(lower[2]) < storage.TableFirstUser ||
		limit <= 0 || limit > maxRemoteRecords {
		return nil, fmt.Errorf("%w: a read of shard %d", ErrInvalid, shard)
	}
	if len(upper) == 0 || bytes.Compare(upper, storage.PrefixEnd(lower[:2])) > 0 {
		upper = storage.PrefixEnd(lower[:2]) // never past the shard
	}
	var res actorspb.RecordReadResult
	err := m.db.ScanOpen(ctx, lower, upper, func(key, plaintext []byte, err error) error {
		if len(res.Records) >= limit {
			return errStop
		}
		res.Records = append(res.Records, &actorspb.RawRecord{Key: bytes.Clone(key), Plaintext: bytes.Clone(plaintext), Erased: err != nil})
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		r := replyOf(nil, err)
		res.Error, res.Message, res.Records = r.Error, r.Message, nil
	}
	return proto.Marshal(&res)
}
