package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/chatpacket/chatpacket/storage/storagepb"
)

// The shred ledger is a grow-only set of key ids: once in it, a key is never
// created again. Nodes make theirs equal by exchanging entries (union is
// the only merge a grow-only set needs), and they compare digests first so
// that two nodes that agree exchange 40 bytes, not their ledgers.

// LedgerDigest summarises a ledger: how many keys it holds and the XOR of
// their ids' SHA-256. Equal ledgers have equal digests; different ones
// differ but for a hash collision.
type LedgerDigest struct {
	Count int
	Sum   [sha256.Size]byte
}

func (d *LedgerDigest) add(id KeyID) {
	h := sha256.Sum256(id[:])
	for i := range d.Sum {
		d.Sum[i] ^= h[i]
	}
	d.Count++
}

// ledgerState is the digest kept in memory, loaded by the first call that
// wants it and kept up to date by every shred after that, and the signal
// of changes.
type ledgerState struct {
	mu      sync.Mutex // held across a shred's commit, so a load never counts it twice
	loaded  bool
	digest  LedgerDigest
	changed chan struct{} // buffered 1
}

func newLedgerState() *ledgerState { return &ledgerState{changed: make(chan struct{}, 1)} }

// added records newly shredded ids; the caller holds mu.
func (l *ledgerState) addedLocked(ids []KeyID) {
	if l.loaded {
		for _, id := range ids {
			l.digest.add(id)
		}
	}
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// LedgerDigest returns the digest of the shred ledger. The first call reads
// the whole ledger; later ones answer from memory.
func (db *DB) LedgerDigest(ctx context.Context) (LedgerDigest, error) {
	leave, err := db.enter()
	if err != nil {
		return LedgerDigest{}, err
	}
	defer leave()
	l := db.keys.ledger
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.loaded {
		var d LedgerDigest
		err := db.eachLedgerEntry(ctx, nil, -1, func(_ []byte, r ShredRecord) error {
			d.add(r.KeyID)
			return nil
		})
		if err != nil {
			return LedgerDigest{}, err
		}
		l.digest, l.loaded = d, true
	}
	return l.digest, nil
}

// LedgerChanged receives (at most one pending signal) whenever the ledger
// gained entries: a shred, an applied ledger, an imported erased record.
func (db *DB) LedgerChanged() <-chan struct{} { return db.keys.ledger.changed }

// LedgerPage returns up to limit ledger entries after cursor (nil: from the
// start), in ledger order, and the cursor of the next page (nil after the
// last). A cursor is opaque; entries added while paging may be missed by
// this pass, and the next digest comparison finds them.
func (db *DB) LedgerPage(ctx context.Context, cursor []byte, limit int) ([]ShredRecord, []byte, error) {
	if limit <= 0 {
		return nil, nil, fmt.Errorf("storage: ledger page of %d entries", limit)
	}
	leave, err := db.enter()
	if err != nil {
		return nil, nil, err
	}
	defer leave()
	var out []ShredRecord
	var last []byte
	err = db.eachLedgerEntry(ctx, cursor, limit+1, func(key []byte, r ShredRecord) error {
		if len(out) < limit {
			out = append(out, r)
			last = bytes.Clone(key)
		} else {
			last = append(last, 0) // one more exists: there is a next page
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if len(last) == 0 || last[len(last)-1] != 0 || len(out) < limit {
		return out, nil, nil
	}
	return out, last[:len(last)-1], nil
}

// eachLedgerEntry calls fn for the ledger entries after cursor (nil: all),
// at most limit of them (negative: no limit), in key order: shard, then id.
func (db *DB) eachLedgerEntry(ctx context.Context, cursor []byte, limit int, fn func(key []byte, r ShredRecord) error) error {
	first := 0
	if cursor != nil {
		if len(cursor) < 2 {
			return fmt.Errorf("storage: ledger cursor of %d bytes", len(cursor))
		}
		first = int(binary.BigEndian.Uint16(cursor))
	}
	n := 0
	for shard := first; shard < db.shards; shard++ {
		prefix := TablePrefix(uint16(shard), TableLedger)
		lower := prefix
		if cursor != nil && shard == first {
			lower = append(bytes.Clone(cursor), 0)
		}
		err := db.pdbScan(ctx, lower, PrefixEnd(prefix), func(key, val []byte) error {
			if limit >= 0 && n >= limit {
				return errStopScan
			}
			var e storagepb.ShredEntry
			if err := db.unseal(ctx, key, val, &e); err != nil {
				return fmt.Errorf("storage: ledger entry: %w", err)
			}
			if len(e.KeyId) != keyIDLen {
				return fmt.Errorf("%w: ledger entry with a %d-byte key id", ErrCorrupt, len(e.KeyId))
			}
			var id KeyID
			copy(id[:], e.KeyId)
			n++
			return fn(key, ShredRecord{KeyID: id, At: time.Unix(e.ShreddedUnix, 0).UTC()})
		})
		if err == errStopScan {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Shredded reports whether key id is in the shred ledger.
func (db *DB) Shredded(id KeyID) (bool, error) {
	leave, err := db.enter()
	if err != nil {
		return false, err
	}
	defer leave()
	return db.keys.shredded(id)
}

// ErasedValue is a stand-in for a value sealed under key id once id is
// shredded: a well-formed envelope naming id, with nothing in it that any
// key opens. Where a copy of a value must be rewritten after its key was
// shredded (a raft snapshot taken before the shred), the stand-in takes its
// place, so the copy reads as erased, like the original.
func ErasedValue(id KeyID) []byte {
	v := make([]byte, EnvelopeOverhead)
	v[0] = envelopeVersion
	copy(v[1:], id[:])
	rand.Read(v[headerLen:]) // never fails (crypto/rand, Go ≥ 1.24)
	return v
}

// Purge makes the values deleted from the given key ranges leave the
// store's files: it flushes the memtable, deletes the write-ahead logs
// that held them (see wal.go) and compacts each range. Call it after
// deleting personal data that was sealed under a key that is not shredded
// (raft state, under the node's RaftLogKey).
func (db *DB) Purge(ctx context.Context, ranges ...[2][]byte) error {
	leave, err := db.enter()
	if err != nil {
		return err
	}
	defer leave()
	if err := dropObsoleteLogs(db.pdb, db.opts.Dir); err != nil {
		return fmt.Errorf("storage: purge: %w", err)
	}
	for _, r := range ranges {
		if err := db.pdb.Compact(ctx, r[0], r[1], false); err != nil {
			return fmt.Errorf("storage: purge: compact: %w", err)
		}
	}
	return nil
}
