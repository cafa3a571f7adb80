package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Moving records between stores. A raft snapshot carries a shard's records
// from one node to another; each node seals under keys of its own (its own
// master key, its own tenant and subject keys), so a record travels open,
// with the KeyRef that seals it, and is sealed again on arrival. A record
// whose key was shredded cannot be opened by anyone: it travels as it is
// stored, with its key id, and the receiver records that id as shredded so
// that it reads as erased there too.

// Exported is one record as Export hands it out: open (Plaintext, under
// Ref), or erased (Sealed, under the shredded key Ref.ID).
type Exported struct {
	Key       []byte
	Ref       KeyRef
	Plaintext []byte // nil when erased
	Sealed    []byte // set only when erased
}

// Snapshot is a point-in-time view of the store, for exporting a shard as
// it was at one raft log index while writes go on. Close it.
type Snapshot struct {
	db   *DB
	snap *pebble.Snapshot
}

// NewSnapshot pins the store's current state.
func (db *DB) NewSnapshot() (*Snapshot, error) {
	leave, err := db.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	return &Snapshot{db: db, snap: db.pdb.NewSnapshot()}, nil
}

// Close releases the snapshot.
func (s *Snapshot) Close() error { return s.snap.Close() }

// Export calls fn for every record of the snapshot with lower <= key <
// upper, in key order. The slices are valid only during the call.
func (s *Snapshot) Export(ctx context.Context, lower, upper []byte, fn func(Exported) error) error {
	leave, err := s.db.enter()
	if err != nil {
		return err
	}
	defer leave()
	db := s.db
	it, err := s.snap.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("storage: export: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		key, val := it.Key(), it.Value()
		e, err := parseEnvelope(val)
		if err != nil {
			return fmt.Errorf("storage: export %x: %w", key, err)
		}
		out := Exported{Key: key, Ref: KeyRef{ID: e.keyID}}
		pt, err := db.keys.open(ctx, key, val)
		switch {
		case errors.Is(err, ErrErased):
			out.Sealed = val
		case err != nil:
			return fmt.Errorf("storage: export %x: %w", key, err)
		default:
			out.Plaintext = pt
			if out.Ref.Parent, err = db.keys.parent(ctx, e.keyID); err != nil {
				return fmt.Errorf("storage: export %x: %w", key, err)
			}
		}
		if err := fn(out); err != nil {
			return err
		}
	}
	return it.Error()
}

// parent returns the id of the key that wraps id.
func (k *keyring) parent(ctx context.Context, id KeyID) (KeyID, error) {
	if p, ok := parentOf(id); ok {
		return p, nil
	}
	dk, err := k.get(ctx, id)
	if err != nil {
		return KeyID{}, err
	}
	if len(dk.ancestors) == 0 {
		return MasterKeyID, nil
	}
	return dk.ancestors[0], nil
}

// Import adds one exported record to the batch: an open one is sealed
// under its ref (creating the key here on first use); an erased one is
// stored as it came, its key entered in this store's shred ledger so that
// reads of it answer ErrErased. Import the records of a whole snapshot into
// a store whose range was emptied first.
func (b *Batch) Import(ctx context.Context, rec Exported) error {
	if b.pb == nil {
		return errBatchClosed
	}
	leave, err := b.db.enter()
	if err != nil {
		return err
	}
	defer leave()
	if rec.Plaintext == nil {
		if _, err := b.db.keys.shred(ctx, []ShredRecord{{KeyID: rec.Ref.ID, At: time.Now()}}); err != nil {
			return err
		}
		return b.pb.Set(rec.Key, rec.Sealed, nil)
	}
	if rec.Ref.ID == MasterKeyID {
		return errMasterKeyData
	}
	sealed, err := b.db.keys.seal(ctx, rec.Ref, rec.Key, rec.Plaintext)
	if err != nil {
		return err
	}
	return b.pb.Set(rec.Key, sealed, nil)
}

// CommitNoSync writes the batch without waiting for the disk, and closes it.
// The raft state machine uses it: its log is synced before any entry is
// applied, and both live in this one store, so the next synced write (the
// next log append) makes these durable too, and a crash before that loses
// only applies that raft replays.
func (b *Batch) CommitNoSync(ctx context.Context) error {
	defer b.Close()
	leave, err := b.db.enter()
	if err != nil {
		return err
	}
	defer leave()
	return b.commitWith(ctx, pebble.NoSync)
}

// ScanOpen calls fn for every record with lower <= key < upper, in key
// order, with its plaintext (the marshaled message), or with ErrErased for
// a record whose key was shredded. It serves reads made for another node,
// which opens the message itself. The slices are valid only during the
// call; a non-nil error from fn stops the scan and is returned.
func (db *DB) ScanOpen(ctx context.Context, lower, upper []byte, fn func(key, plaintext []byte, err error) error) error {
	leave, err := db.enter()
	if err != nil {
		return err
	}
	defer leave()
	it, err := db.pdb.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("storage: scan: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		pt, err := db.keys.open(ctx, it.Key(), it.Value())
		if err != nil && !errors.Is(err, ErrErased) {
			return fmt.Errorf("storage: scan %x: %w", it.Key(), err)
		}
		if err := fn(it.Key(), pt, err); err != nil {
			return err
		}
	}
	return it.Error()
}
