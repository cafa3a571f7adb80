package shard

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/protobuf/encoding/protodelim"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
)

// Erasure. Shredding a key is a command like any other, so that it is
// acknowledged only once a majority of the shard's replicas applied it:
// each replica destroys the keys in its own store and enters them in its
// shred ledger. Nodes that hold no replica of the shard (and former
// replicas, whose copies stay on disk) learn the ids from the ledger
// exchange between nodes (cluster/ledger.go), which every node runs.

// maxShredKeys bounds the keys one command may shred.
const maxShredKeys = 1024

func (s *state) shredKeys(ctx context.Context, c *actorspb.ShredKeys) (*actorspb.Result, error) {
	if len(c.KeyIds) == 0 || len(c.KeyIds) > maxShredKeys {
		return nil, fmt.Errorf("%w: %d key ids; want 1 to %d", ErrInvalid, len(c.KeyIds), maxShredKeys)
	}
	if c.UnixMs <= 0 {
		return nil, fmt.Errorf("%w: a shred needs its time", ErrInvalid)
	}
	at := time.UnixMilli(c.UnixMs).UTC()
	entries := make([]storage.ShredRecord, 0, len(c.KeyIds))
	for i, raw := range c.KeyIds {
		var id storage.KeyID
		if len(raw) != len(id) {
			return nil, fmt.Errorf("%w: key_ids[%d] has %d bytes; want %d", ErrInvalid, i, len(raw), len(id))
		}
		copy(id[:], raw)
		switch id.Kind() {
		case storage.KindTenant, storage.KindSubject, storage.KindMonth:
		default:
			return nil, fmt.Errorf("%w: key_ids[%d] is a %s key; only tenant, subject and month keys are shredded", ErrInvalid, i, id.Kind())
		}
		entries = append(entries, storage.ShredRecord{KeyID: id, At: at})
	}
	// The shred is its own synced write, outside the batch: it must not
	// wait for the batch, and repeating it (a replay after a crash) does
	// nothing. Records of this batch sealed under these keys before it
	// become unreadable with them, which is the point.
	if _, err := s.db.ApplyLedger(ctx, entries); err != nil {
		return nil, err
	}
	return &actorspb.Result{}, nil
}

// LedgerPusher is a Log that can also hand shred ledger entries to every
// live node at once (cluster.ShardLog).
type LedgerPusher interface {
	PushLedger(ctx context.Context, entries []storage.ShredRecord)
}

// Shred destroys keys on every replica of route's shard (route is the id
// of what they belong to: the visitor for its subject key, the tenant for
// its tenant and month keys), once a majority applied it, and then on
// every other live node, so that when it returns no node reads what the
// keys sealed. A node it cannot reach learns it from the ledger exchange.
func (m *Machine) Shred(ctx context.Context, route storage.ID, at time.Time, keys ...storage.KeyID) error {
	ids := make([][]byte, len(keys))
	entries := make([]storage.ShredRecord, len(keys))
	for i, k := range keys {
		ids[i] = k[:]
		entries[i] = storage.ShredRecord{KeyID: k, At: at.UTC()}
	}
	_, err := m.Apply(ctx, &actorspb.Command{Op: &actorspb.Command_ShredKeys{ShredKeys: &actorspb.ShredKeys{
		Route: route[:], KeyIds: ids, UnixMs: at.UnixMilli(),
	}}})
	if err != nil {
		return err
	}
	// This node may be a replica that has not applied it yet, or hold none.
	if _, err := m.db.ApplyLedger(ctx, entries); err != nil {
		return err
	}
	m.mu.RLock()
	pusher, ok := m.log.(LedgerPusher)
	m.mu.RUnlock()
	if ok {
		pusher.PushLedger(ctx, entries)
	}
	return nil
}

// ScrubSnapshot returns the rewrite that cluster/replica's Scrub runs over
// a snapshot of a shard taken before an erasure: every record whose key,
// or the key that wraps it, is now shredded in db leaves as an erased
// stand-in (storage.ErasedValue), and the rest pass unchanged. A node that
// restores the snapshot then reads those records as erased, as this one
// does.
func ScrubSnapshot(db *storage.DB) func(io.Reader, io.Writer) error {
	return func(r io.Reader, w io.Writer) error {
		br := bufio.NewReaderSize(r, 64<<10)
		bw := bufio.NewWriterSize(w, 64<<10)
		for {
			var rec actorspb.SnapshotRecord
			err := protodelim.UnmarshalFrom(br, &rec)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("scrub snapshot: %w", err)
			}
			if rec.Plaintext != nil {
				erased, err := anyShredded(db, rec.KeyId, rec.ParentKeyId)
				if err != nil {
					return err
				}
				if erased {
					var id storage.KeyID
					copy(id[:], rec.KeyId)
					rec.Plaintext, rec.ParentKeyId, rec.Sealed = nil, nil, storage.ErasedValue(id)
				}
			}
			if _, err := protodelim.MarshalTo(bw, &rec); err != nil {
				return err
			}
		}
		return bw.Flush()
	}
}

// anyShredded reports whether any of the raw key ids is in db's ledger.
func anyShredded(db *storage.DB, raw ...[]byte) (bool, error) {
	for _, b := range raw {
		var id storage.KeyID
		if len(b) != len(id) {
			continue
		}
		copy(id[:], b)
		if id == storage.MasterKeyID {
			continue
		}
		if ok, err := db.Shredded(id); ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}
