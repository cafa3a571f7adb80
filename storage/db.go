package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/chatpacket/chatpacket/storage/storagepb"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"google.golang.org/protobuf/proto"
)

// DB is a Pebble store whose every value is sealed. It is safe for
// concurrent use; Close waits for calls in flight.
type DB struct {
	pdb    *pebble.DB
	opts   Options
	shards int
	keys   *keyring

	// closeMu is held shared by every call and exclusively by Close, so a
	// call never reaches a closed Pebble (which panics).
	closeMu sync.RWMutex
	closed  bool
}

// Open opens the store in opts.Dir, creating it when absent. A master key
// other than the store's is refused with ErrWrongMasterKey before Pebble
// opens, so nothing in the directory changes.
func Open(ctx context.Context, opts Options) (*DB, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	master, err := masterAEAD(opts.MasterKey)
	if err != nil {
		return nil, fmt.Errorf("storage: master key: %w", err)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("storage: create %s: %w", opts.Dir, err)
	}
	if err := verifyOrCreateKeyCheck(opts.Dir, opts.MasterKey, master); err != nil {
		return nil, err
	}
	cache := pebble.NewCache(opts.CacheBytes)
	defer cache.Unref() // the DB holds its own reference
	po := &pebble.Options{
		FS:                 noRecycleFS{vfs.Default},
		Cache:              cache,
		Logger:             pebbleLogger{opts.Logger},
		FormatMajorVersion: pebble.FormatNewest,
	}
	// Bloom filters on every level (the others inherit L0's): most lookups
	// that matter are for keys that are not there (is this client_id new?),
	// and without a filter each one reads index and data blocks of every
	// overlapping table.
	po.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	pdb, err := pebble.Open(opts.Dir, po)
	if err != nil {
		return nil, fmt.Errorf("storage: open pebble in %s: %w", opts.Dir, err)
	}
	db := &DB{pdb: pdb, opts: opts}
	// The keyring needs the shard count to find key records, and the shard
	// count is a record sealed under the master key, which has no record and
	// no shard: read it first, then tell the keyring.
	db.keys = newKeyring(pdb, &db.opts, 0, master)
	shards, err := db.resolveShards(ctx)
	if err != nil {
		pdb.Close()
		return nil, err
	}
	db.shards = shards
	db.keys.shards = shards
	return db, nil
}

var metaKey = Key(SystemShard, TableMeta, []byte("store"))

// resolveShards reads the shard count the store records, or records
// opts.Shards (or the default) in a new store.
func (db *DB) resolveShards(ctx context.Context) (int, error) {
	var meta storagepb.StoreMeta
	err := db.get(ctx, metaKey, &meta)
	switch {
	case errors.Is(err, ErrNotFound):
		n := db.opts.Shards
		if n == 0 {
			n = DefaultShards
		}
		meta = storagepb.StoreMeta{Shards: uint32(n), CreatedUnix: time.Now().Unix()}
		if err := db.put(ctx, metaKey, KeyRef{ID: MasterKeyID}, &meta); err != nil {
			return 0, err
		}
		return n, nil
	case err != nil:
		return 0, fmt.Errorf("storage: read store metadata: %w", err)
	case meta.Shards == 0 || meta.Shards > MaxShards:
		return 0, fmt.Errorf("%w: store records %d shards", ErrCorrupt, meta.Shards)
	case db.opts.Shards != 0 && uint32(db.opts.Shards) != meta.Shards:
		return 0, fmt.Errorf("storage: %s was created with %d shards; asked for %d", db.opts.Dir, meta.Shards, db.opts.Shards)
	}
	return int(meta.Shards), nil
}

// Shards is the store's shard count.
func (db *DB) Shards() int { return db.shards }

// Close closes the store. Calls after it return ErrClosed; a second Close
// returns nil.
func (db *DB) Close() error {
	db.closeMu.Lock()
	defer db.closeMu.Unlock()
	if db.closed {
		return nil
	}
	db.closed = true
	if err := db.pdb.Close(); err != nil {
		return fmt.Errorf("storage: close: %w", err)
	}
	return nil
}

// enter guards a call against Close; the returned func ends the call.
func (db *DB) enter() (func(), error) {
	db.closeMu.RLock()
	if db.closed {
		db.closeMu.RUnlock()
		return nil, ErrClosed
	}
	return db.closeMu.RUnlock, nil
}

// Put seals msg under ref and writes it at pkey with a synced commit.
// Concurrent Puts share fsyncs through Pebble's commit pipeline; write many
// records at once with a Batch.
func (db *DB) Put(ctx context.Context, pkey []byte, ref KeyRef, msg proto.Message) error {
	if ref.ID == MasterKeyID {
		return errMasterKeyData
	}
	leave, err := db.enter()
	if err != nil {
		return err
	}
	defer leave()
	return db.put(ctx, pkey, ref, msg)
}

func (db *DB) put(ctx context.Context, pkey []byte, ref KeyRef, msg proto.Message) error {
	pb := db.pdb.NewBatch()
	defer pb.Close()
	if err := db.putInto(ctx, pb, pkey, ref, msg); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := pb.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("storage: commit: %w", err)
	}
	return nil
}

// Get opens the record at pkey into msg. It returns ErrNotFound when there is
// none, ErrErased when its key was shredded, and ErrCorrupt when it fails
// authentication; msg is then left untouched.
func (db *DB) Get(ctx context.Context, pkey []byte, msg proto.Message) error {
	leave, err := db.enter()
	if err != nil {
		return err
	}
	defer leave()
	return db.get(ctx, pkey, msg)
}

func (db *DB) get(ctx context.Context, pkey []byte, msg proto.Message) error {
	val, closer, err := db.pdb.Get(pkey)
	if errors.Is(err, pebble.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("storage: get: %w", err)
	}
	defer closer.Close()
	return db.unseal(ctx, pkey, val, msg)
}

func (db *DB) unseal(ctx context.Context, pkey, val []byte, msg proto.Message) error {
	pt, err := db.keys.open(ctx, pkey, val)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(pt, msg); err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return nil
}

// Delete removes the record at pkey with a synced commit.
func (db *DB) Delete(ctx context.Context, pkey []byte) error {
	leave, err := db.enter()
	if err != nil {
		return err
	}
	defer leave()
	b := db.NewBatch()
	defer b.Close()
	if err := b.Delete(pkey); err != nil {
		return err
	}
	return b.commit(ctx)
}

// Scan calls fn for each record with lower <= key < upper, in key order. fn
// gets the key and a function that opens the value into a message (it
// returns ErrErased for a record whose key was shredded, so fn decides how
// to show it). The key is valid only during the call. A non-nil error from
// fn stops the scan and is returned.
func (db *DB) Scan(ctx context.Context, lower, upper []byte, fn func(key []byte, open func(proto.Message) error) error) error {
	leave, err := db.enter()
	if err != nil {
		return err
	}
	defer leave()
	it, err := db.pdb.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("storage: scan: %w", err)
	}
	for it.First(); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			it.Close()
			return err
		}
		key, val := it.Key(), it.Value()
		if err := fn(key, func(m proto.Message) error { return db.unseal(ctx, key, val, m) }); err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("storage: scan: %w", err)
	}
	return nil
}

// ScanPrefix is Scan over every key that starts with prefix.
func (db *DB) ScanPrefix(ctx context.Context, prefix []byte, fn func(key []byte, open func(proto.Message) error) error) error {
	return db.Scan(ctx, prefix, PrefixEnd(prefix), fn)
}

// Batch collects sealed writes to commit atomically with one fsync. It is
// not safe for concurrent use.
type Batch struct {
	db *DB
	pb *pebble.Batch
}

// NewBatch starts a batch. Commit or Close it.
func (db *DB) NewBatch() *Batch { return &Batch{db: db, pb: db.pdb.NewBatch()} }

// Put seals msg under ref for pkey and adds it to the batch. Sealing happens
// now (creating ref's key if this is its first use); the write happens at
// Commit. The master key seals only storage's own records: data sealed under
// it could never be shredded, so it is refused here.
func (b *Batch) Put(ctx context.Context, pkey []byte, ref KeyRef, msg proto.Message) error {
	if ref.ID == MasterKeyID {
		return errMasterKeyData
	}
	leave, err := b.db.enter()
	if err != nil {
		return err
	}
	defer leave()
	return b.put(ctx, pkey, ref, msg)
}

// PutOrErased is Put, except that when ref's key (or a key above it) is
// shredded in this store it adds the erased stand-in (ErasedValue) instead
// of failing, and reports erased. A replicated state machine writes with it
// where the outcome must not depend on when this node learnt of a shred:
// every replica then holds the same record, readable nowhere once every
// node has the shred.
func (b *Batch) PutOrErased(ctx context.Context, pkey []byte, ref KeyRef, msg proto.Message) (erased bool, err error) {
	err = b.Put(ctx, pkey, ref, msg)
	if !errors.Is(err, ErrErased) {
		return false, err
	}
	if b.pb == nil {
		return false, errBatchClosed
	}
	return true, b.pb.Set(pkey, ErasedValue(ref.ID), nil)
}

func (b *Batch) put(ctx context.Context, pkey []byte, ref KeyRef, msg proto.Message) error {
	if b.pb == nil {
		return errBatchClosed
	}
	return b.db.putInto(ctx, b.pb, pkey, ref, msg)
}

// scratchPool holds buffers for a record's plaintext and additional data.
// Writes are the hot path: marshalling into a pooled buffer and sealing
// straight into the batch's memory leaves no allocation per record.
var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// putInto seals msg under ref and adds it to pb at pkey.
func (db *DB) putInto(ctx context.Context, pb *pebble.Batch, pkey []byte, ref KeyRef, msg proto.Message) error {
	aead, gen, err := db.keys.sealer(ctx, ref)
	if err != nil {
		return err
	}
	scratch := scratchPool.Get().(*[]byte)
	defer func() {
		if cap(*scratch) <= 64<<10 { // let the rare huge buffer go
			scratchPool.Put(scratch)
		}
	}()
	pt, err := proto.MarshalOptions{}.MarshalAppend((*scratch)[:0], msg)
	if err != nil {
		return fmt.Errorf("storage: marshal: %w", err)
	}
	*scratch = pt
	op := pb.SetDeferred(len(pkey), EnvelopeOverhead+len(pt))
	copy(op.Key, pkey)
	// The additional data goes in the scratch buffer after the plaintext.
	if sealed := sealWith(op.Value[:0], pt[len(pt):], aead, ref.ID, gen, pkey, pt); len(sealed) != len(op.Value) {
		panic(fmt.Sprintf("storage: sealed %d bytes into %d", len(sealed), len(op.Value))) // the envelope size is a constant
	}
	return op.Finish()
}

// Delete adds the removal of pkey to the batch.
func (b *Batch) Delete(pkey []byte) error {
	if b.pb == nil {
		return errBatchClosed
	}
	return b.pb.Delete(pkey, nil)
}

// DeleteRange adds the removal of every key in [lower, upper) to the batch,
// as one range tombstone: dropping a raft log prefix or a snapshot's chunks
// costs one record however many keys it covers. As with Delete, the values
// leave the files only when compaction passes over the range.
func (b *Batch) DeleteRange(lower, upper []byte) error {
	if b.pb == nil {
		return errBatchClosed
	}
	return b.pb.DeleteRange(lower, upper, nil)
}

// Commit writes the batch durably (synced) and closes it.
func (b *Batch) Commit(ctx context.Context) error {
	defer b.Close()
	leave, err := b.db.enter()
	if err != nil {
		return err
	}
	defer leave()
	return b.commit(ctx)
}

// Append adds all of other's writes to b, after b's own; other is left as
// it was. It lets a caller stage one unit of work in its own batch and keep
// it or drop it whole.
func (b *Batch) Append(other *Batch) error {
	if b.pb == nil || other.pb == nil {
		return errBatchClosed
	}
	return b.pb.Apply(other.pb, nil)
}

// Empty reports whether the batch holds no writes.
func (b *Batch) Empty() bool { return b.pb == nil || b.pb.Empty() }

var (
	errBatchClosed   = errors.New("storage: batch already committed or closed")
	errMasterKeyData = errors.New("storage: data cannot be sealed under the master key; use a tenant, subject, month or index key")
)

func (b *Batch) commit(ctx context.Context) error { return b.commitWith(ctx, pebble.Sync) }

func (b *Batch) commitWith(ctx context.Context, opts *pebble.WriteOptions) error {
	if b.pb == nil {
		return errBatchClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := b.pb.Commit(opts); err != nil {
		return fmt.Errorf("storage: commit: %w", err)
	}
	return nil
}

// Close discards an uncommitted batch. Closing after Commit is a no-op.
func (b *Batch) Close() {
	if b.pb != nil {
		b.pb.Close()
		b.pb = nil
	}
}

// ShredRecord is one entry of the shred ledger.
type ShredRecord struct {
	KeyID KeyID
	At    time.Time
}

// Shred destroys key id: its record is deleted, its id enters the shred
// ledger, it and every key it wrapped leave the cache, and the range that
// held it is compacted so its bytes leave the SSTs. From then on every read
// of data sealed under it, or under a key it wrapped, returns ErrErased, and
// sealing under it fails with ErrErased. Shredding a shredded key, or one
// never used, only makes sure it is in the ledger.
func (db *DB) Shred(ctx context.Context, id KeyID) error {
	leave, err := db.enter()
	if err != nil {
		return err
	}
	defer leave()
	_, err = db.keys.shred(ctx, []ShredRecord{{KeyID: id, At: time.Now()}})
	return err
}

// Ledger returns the shred ledger: every key id this store has shredded and
// when, ordered by shard and id. It holds no personal data.
func (db *DB) Ledger(ctx context.Context) ([]ShredRecord, error) {
	leave, err := db.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	var out []ShredRecord
	err = db.eachLedgerEntry(ctx, nil, -1, func(_ []byte, r ShredRecord) error {
		out = append(out, r)
		return nil
	})
	return out, err
}

// ApplyLedger shreds every key of entries that this store has not shredded
// yet, keeping their original times. Run it on a store restored from a
// checkpoint, with the ledger of the live store, so that erasures made after
// the checkpoint reach the restored copy too. It returns how many were new.
func (db *DB) ApplyLedger(ctx context.Context, entries []ShredRecord) (int, error) {
	leave, err := db.enter()
	if err != nil {
		return 0, err
	}
	defer leave()
	return db.keys.shred(ctx, entries)
}

func (db *DB) pdbScanPrefix(ctx context.Context, prefix []byte, fn func(key, val []byte) error) error {
	return db.pdbScan(ctx, prefix, PrefixEnd(prefix), fn)
}

// errStopScan ends a pdbScan early without an error.
var errStopScan = errors.New("storage: stop the scan")

func (db *DB) pdbScan(ctx context.Context, lower, upper []byte, fn func(key, val []byte) error) error {
	it, err := db.pdb.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			it.Close()
			return err
		}
	}
	return it.Close()
}

// Checkpoint writes a consistent copy of the store into dir, which must not
// exist, openable with Open and the same master key. Data shredded later is
// still readable in the copy until the later ledger is applied to it
// (ApplyLedger).
func (db *DB) Checkpoint(ctx context.Context, dir string) error {
	leave, err := db.enter()
	if err != nil {
		return err
	}
	defer leave()
	if err := db.pdb.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
		return fmt.Errorf("storage: checkpoint: %w", err)
	}
	check, err := os.ReadFile(filepath.Join(db.opts.Dir, keyCheckFile))
	if err != nil {
		return fmt.Errorf("storage: checkpoint: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, keyCheckFile), check, 0o600); err != nil {
		return fmt.Errorf("storage: checkpoint: %w", err)
	}
	return nil
}

// Compact flushes the memtable and compacts the whole keyspace, so deleted
// and overwritten values leave the files. It can take long on a big store.
func (db *DB) Compact(ctx context.Context) error {
	leave, err := db.enter()
	if err != nil {
		return err
	}
	defer leave()
	if err := db.pdb.Flush(); err != nil {
		return fmt.Errorf("storage: flush: %w", err)
	}
	if err := db.pdb.Compact(ctx, []byte{0}, []byte{0xff, 0xff, 0xff, 0xff}, true); err != nil {
		return fmt.Errorf("storage: compact: %w", err)
	}
	return nil
}

// pebbleLogger sends Pebble's messages to slog: its routine INFO lines at
// Debug, so a running node's log stays readable.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug("pebble: " + fmt.Sprintf(format, args...))
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error("pebble: " + fmt.Sprintf(format, args...))
}

// Fatalf is Pebble reporting a broken invariant; it must not return.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := "pebble: " + fmt.Sprintf(format, args...)
	p.l.Error(msg)
	panic(msg)
}

var _ io.Closer = (*DB)(nil)
