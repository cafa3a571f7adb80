package storage

import (
	"bytes"
	"cmp"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatpacket/chatpacket/storage/storagepb"
	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"
)

// keyring is the key hierarchy: the master key wraps tenant and index keys,
// tenant keys wrap subject and month keys, and every data key seals values.
//
// Records. A key is one KeyRecord at Key(shard(id), TableKey, id), sealed
// like any value, under its parent. Its generations are its rotated
// materials: the newest seals, all open. Deleting the record destroys every
// generation at once; anything sealed under the key, and every key it
// wrapped, can then no longer be opened: ErrErased.
//
// Laziness. Keys are created on their first seal. Creation, reservation of
// encryptions and shredding of one key are serialised by that key's lock,
// and creation consults the shred ledger, so a shredded key is never
// silently created again.
//
// Use counting. Each generation records reserved_uses, persisted before the
// uses happen, in blocks (Options.reserveBlock). A key loaded from disk
// starts with its whole reservation counted as used, so a crash or an
// eviction over-counts and never under-counts. When a generation would pass
// Options.RotateAfter, the next reservation adds a new generation instead.
//
// Cache. Unwrapped keys are held in a CLOCK cache (second-chance LRU)
// bounded by Options.KeyCacheEntries: a hit takes only the read lock and
// sets the entry's referenced bit, so many sealing goroutines do not queue on
// one mutex as they did with a list-based LRU. Every shred bumps an epoch and evicts the key and
// every cached key below it; a load that raced a shred (its epoch changed)
// is thrown away and repeated, so a shredded key never re-enters the cache.
//
// Lock order: the lock of a deeper key (subject, month) before that of a
// shallower one (tenant, index), ties by id; then keyring.mu, then
// dataKey.mu. Sealing a key record takes its parent's lock while holding
// the child's, which is why the order runs child to parent.
type keyring struct {
	db     *pebble.DB
	opts   *Options
	shards int
	master cipher.AEAD
	locks  keyLocks
	ledger *ledgerState

	mu struct {
		sync.RWMutex
		entries map[KeyID]*dataKey
		ring    []*dataKey // the CLOCK; hand is the next slot to consider
		hand    int
		epoch   uint64
	}
}

// errNoRecord is a key without a record that was never shredded: on the
// seal path it is created, on the open path the data is corrupt.
var errNoRecord = errors.New("storage: key has no record")

// dataKey is an unwrapped key held in the cache.
type dataKey struct {
	id         KeyID
	ancestors  []KeyID     // parent, grandparent …, not including the master key
	referenced atomic.Bool // CLOCK: used since the hand last passed

	mu struct {
		sync.Mutex
		gens    map[uint32]cipher.AEAD
		gen0    []byte // material of generation 0: blind-index keys derive from it
		current uint32
		used    uint64 // encryptions handed out by the current generation
		limit   uint64 // its persisted reservation
		blind   map[string][]byte
	}
}

func newKeyring(db *pebble.DB, opts *Options, shards int, master cipher.AEAD) *keyring {
	k := &keyring{db: db, opts: opts, shards: shards, master: master, ledger: newLedgerState()}
	k.locks.m = make(map[KeyID]*keyLock)
	k.mu.entries = make(map[KeyID]*dataKey)
	return k
}

func (k *keyring) recordKey(id KeyID) []byte {
	return Key(ShardOf(id[:], k.shards), TableKey, id[:])
}

func (k *keyring) ledgerKey(id KeyID) []byte {
	return Key(ShardOf(id[:], k.shards), TableLedger, id[:])
}

// seal seals plaintext under ref for the Pebble key pkey, creating the key
// (and its parent) on first use.
func (k *keyring) seal(ctx context.Context, ref KeyRef, pkey, plaintext []byte) ([]byte, error) {
	aead, gen, err := k.sealer(ctx, ref)
	if err != nil {
		return nil, err
	}
	return sealWith(nil, nil, aead, ref.ID, gen, pkey, plaintext), nil
}

// sealer returns the generation of ref to seal one value with, counting the
// use, and creates the key (and its parent) on first use.
func (k *keyring) sealer(ctx context.Context, ref KeyRef) (cipher.AEAD, uint32, error) {
	if ref.ID == MasterKeyID {
		return k.master, 0, nil
	}
	dk, err := k.ensure(ctx, ref)
	if err != nil {
		return nil, 0, err
	}
	return k.use(ctx, dk)
}

// open opens a sealed value stored under pkey.
func (k *keyring) open(ctx context.Context, pkey, sealed []byte) ([]byte, error) {
	e, err := parseEnvelope(sealed)
	if err != nil {
		return nil, err
	}
	aead, _, err := k.generation(ctx, e.keyID, e.generation)
	if err != nil {
		return nil, err
	}
	return openWith(aead, e, pkey)
}

// generation returns generation gen of key id and the key's ancestors.
func (k *keyring) generation(ctx context.Context, id KeyID, gen uint32) (cipher.AEAD, []KeyID, error) {
	if id == MasterKeyID {
		if gen != 0 {
			return nil, nil, fmt.Errorf("%w: master key generation %d is unknown", ErrCorrupt, gen)
		}
		return k.master, nil, nil
	}
	for range 2 {
		dk, err := k.get(ctx, id)
		if errors.Is(err, errNoRecord) {
			return nil, nil, fmt.Errorf("%w: key %s has no record and was never shredded", ErrCorrupt, id)
		}
		if err != nil {
			return nil, nil, err
		}
		dk.mu.Lock()
		aead := dk.mu.gens[gen]
		dk.mu.Unlock()
		if aead != nil {
			return aead, dk.ancestors, nil
		}
		// Rotated since we cached it (by another process sharing the
		// replicated store): drop the entry and read the record again.
		k.drop(id)
	}
	return nil, nil, fmt.Errorf("%w: key %s has no generation %d", ErrCorrupt, id, gen)
}

// get returns key id from the cache, loading it on a miss.
func (k *keyring) get(ctx context.Context, id KeyID) (*dataKey, error) {
	for {
		k.mu.RLock()
		dk, ok := k.mu.entries[id]
		epoch := k.mu.epoch
		k.mu.RUnlock()
		if ok {
			dk.referenced.Store(true)
			return dk, nil
		}

		rec, ancestors, err := k.readRecord(ctx, id)
		if err != nil {
			return nil, err
		}
		dk, err = newDataKey(rec, ancestors)
		if err != nil {
			return nil, err
		}
		if k.insert(dk, epoch) {
			return dk, nil
		}
		// A shred raced this load, or another load won: look again.
	}
}

// insert adds dk to the cache unless a shred happened since epoch was read
// or dk's key is cached already. It reports whether dk was added.
func (k *keyring) insert(dk *dataKey, epoch uint64) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.mu.epoch != epoch {
		return false
	}
	if _, ok := k.mu.entries[dk.id]; ok {
		return false
	}
	k.mu.entries[dk.id] = dk
	if len(k.mu.ring) < k.opts.KeyCacheEntries {
		k.mu.ring = append(k.mu.ring, dk)
		return true
	}
	for {
		k.mu.hand %= len(k.mu.ring)
		old := k.mu.ring[k.mu.hand]
		if !old.referenced.Swap(false) {
			delete(k.mu.entries, old.id)
			k.mu.ring[k.mu.hand] = dk
			k.mu.hand++
			return true
		}
		k.mu.hand++
	}
}

// readRecord reads key id's record and opens it under its parent.
func (k *keyring) readRecord(ctx context.Context, id KeyID) (*storagepb.KeyRecord, []KeyID, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	pkey := k.recordKey(id)
	val, closer, err := k.db.Get(pkey)
	if errors.Is(err, pebble.ErrNotFound) {
		shredded, err := k.shredded(id)
		switch {
		case err != nil:
			return nil, nil, err
		case shredded:
			return nil, nil, fmt.Errorf("%w: key %s was shredded", ErrErased, id)
		}
		return nil, nil, errNoRecord
	}
	if err != nil {
		return nil, nil, fmt.Errorf("storage: read key %s: %w", id, err)
	}
	defer closer.Close()

	e, err := parseEnvelope(val)
	if err != nil {
		return nil, nil, fmt.Errorf("key %s: %w", id, err)
	}
	parent := e.keyID
	if depth(parent) != depth(id)-1 || depth(parent) == 0 && parent != MasterKeyID {
		return nil, nil, fmt.Errorf("%w: key %s is wrapped by %s", ErrCorrupt, id, parent)
	}
	paead, pancestors, err := k.generation(ctx, parent, e.generation)
	if err != nil {
		return nil, nil, err // ErrErased when the parent was shredded
	}
	pt, err := openWith(paead, e, pkey)
	if err != nil {
		return nil, nil, fmt.Errorf("key %s: %w", id, err)
	}
	rec := &storagepb.KeyRecord{}
	if err := proto.Unmarshal(pt, rec); err != nil {
		return nil, nil, fmt.Errorf("%w: key %s: %v", ErrCorrupt, id, err)
	}
	if !bytes.Equal(rec.Id, id[:]) || !bytes.Equal(rec.Parent, parent[:]) || len(rec.Generations) == 0 {
		return nil, nil, fmt.Errorf("%w: key record %s does not match its place", ErrCorrupt, id)
	}
	var ancestors []KeyID
	if parent != MasterKeyID {
		ancestors = append([]KeyID{parent}, pancestors...)
	}
	return rec, ancestors, nil
}

func newDataKey(rec *storagepb.KeyRecord, ancestors []KeyID) (*dataKey, error) {
	dk := &dataKey{ancestors: ancestors}
	copy(dk.id[:], rec.Id)
	dk.mu.gens = make(map[uint32]cipher.AEAD, len(rec.Generations))
	if err := dk.adoptLocked(rec); err != nil {
		return nil, err
	}
	dk.mu.used = dk.mu.limit // a fresh load assumes the whole reservation spent
	return dk, nil
}

// adoptLocked takes rec's generations and its current reservation; the
// caller sets how much of it is already used.
func (dk *dataKey) adoptLocked(rec *storagepb.KeyRecord) error {
	for _, g := range rec.Generations {
		if len(g.Material) != 32 {
			return fmt.Errorf("%w: key %s generation %d has %d bytes of material", ErrCorrupt, dk.id, g.Number, len(g.Material))
		}
		if g.Number == 0 {
			dk.mu.gen0 = g.Material
		}
		if _, ok := dk.mu.gens[g.Number]; ok {
			continue
		}
		block, _ := aes.NewCipher(g.Material) // 32 bytes: cannot fail
		aead, _ := cipher.NewGCM(block)
		dk.mu.gens[g.Number] = aead
	}
	cur := rec.Generations[len(rec.Generations)-1]
	dk.mu.current = cur.Number
	dk.mu.limit = cur.ReservedUses
	return nil
}

// ensure returns key ref.ID, creating it, and its parent, on first use.
func (k *keyring) ensure(ctx context.Context, ref KeyRef) (*dataKey, error) {
	if err := validRef(ref); err != nil {
		return nil, err
	}
	dk, err := k.get(ctx, ref.ID)
	if !errors.Is(err, errNoRecord) {
		return dk, err
	}
	if ref.Parent != MasterKeyID {
		grand, _ := parentOf(ref.Parent)
		if _, err := k.ensure(ctx, KeyRef{ID: ref.Parent, Parent: grand}); err != nil {
			return nil, err
		}
	}
	if err := k.create(ctx, ref); err != nil {
		return nil, err
	}
	return k.get(ctx, ref.ID)
}

func validRef(ref KeyRef) error {
	want := KindTenant
	switch ref.ID.Kind() {
	case KindTenant, KindIndex:
		want = KindMaster
	case KindSubject, KindMonth:
	default:
		return fmt.Errorf("storage: cannot seal under a %s key", ref.ID.Kind())
	}
	if ref.Parent.Kind() != want || want == KindMaster && ref.Parent != MasterKeyID {
		return fmt.Errorf("storage: a %s key cannot be wrapped by %s", ref.ID.Kind(), ref.Parent)
	}
	return nil
}

// create writes a new record for ref unless one exists or the key was
// shredded (ErrErased).
func (k *keyring) create(ctx context.Context, ref KeyRef) error {
	unlock := k.locks.lock(ref.ID)
	defer unlock()
	switch _, closer, err := k.db.Get(k.recordKey(ref.ID)); {
	case err == nil:
		closer.Close()
		return nil // created by someone else meanwhile
	case !errors.Is(err, pebble.ErrNotFound):
		return fmt.Errorf("storage: read key %s: %w", ref.ID, err)
	}
	if shredded, err := k.shredded(ref.ID); err != nil {
		return err
	} else if shredded {
		return fmt.Errorf("%w: key %s was shredded", ErrErased, ref.ID)
	}
	now := time.Now().Unix()
	rec := &storagepb.KeyRecord{
		Id:          ref.ID[:],
		Parent:      ref.Parent[:],
		CreatedUnix: now,
		Generations: []*storagepb.KeyGeneration{{
			Number: 0, Material: newMaterial(), ReservedUses: k.opts.reserveBlock(), CreatedUnix: now,
		}},
	}
	return k.writeRecord(ctx, rec)
}

func newMaterial() []byte {
	m := make([]byte, 32)
	rand.Read(m)
	return m
}

// writeRecord seals rec under its parent and commits it synced. The caller
// holds rec's key lock.
func (k *keyring) writeRecord(ctx context.Context, rec *storagepb.KeyRecord) error {
	var id, parent KeyID
	copy(id[:], rec.Id)
	copy(parent[:], rec.Parent)
	grand, _ := parentOf(parent)
	pt, err := proto.Marshal(rec)
	if err != nil {
		return fmt.Errorf("storage: marshal key %s: %w", id, err)
	}
	pkey := k.recordKey(id)
	sealed, err := k.seal(ctx, KeyRef{ID: parent, Parent: grand}, pkey, pt)
	if err != nil {
		return fmt.Errorf("storage: wrap key %s: %w", id, err)
	}
	if err := k.db.Set(pkey, sealed, pebble.Sync); err != nil {
		return fmt.Errorf("storage: write key %s: %w", id, err)
	}
	return nil
}

// use counts one encryption by dk and returns the generation to seal with,
// reserving more uses (or rotating) when the reservation is spent.
func (k *keyring) use(ctx context.Context, dk *dataKey) (cipher.AEAD, uint32, error) {
	for {
		dk.mu.Lock()
		if dk.mu.used < dk.mu.limit {
			dk.mu.used++
			gen := dk.mu.current
			aead := dk.mu.gens[gen]
			dk.mu.Unlock()
			return aead, gen, nil
		}
		dk.mu.Unlock()
		if err := k.reserve(ctx, dk); err != nil {
			return nil, 0, err
		}
	}
}

// reserve persists another block of encryptions for dk's current
// generation, or a new generation when the current one has had its share.
// It works from the persisted record, not the cache, so two cache entries of
// one key (one evicted while in use) never hand out the same reservation.
func (k *keyring) reserve(ctx context.Context, dk *dataKey) error {
	unlock := k.locks.lock(dk.id)
	defer unlock()
	dk.mu.Lock()
	spare := dk.mu.used < dk.mu.limit
	dk.mu.Unlock()
	if spare {
		return nil // reserved by another goroutine while we waited
	}
	rec, _, err := k.readRecord(ctx, dk.id)
	if errors.Is(err, errNoRecord) {
		err = fmt.Errorf("%w: key %s vanished", ErrErased, dk.id)
	}
	if err != nil {
		return err
	}
	block := k.opts.reserveBlock()
	cur := rec.Generations[len(rec.Generations)-1]
	used := cur.ReservedUses
	if cur.ReservedUses+block > k.opts.RotateAfter {
		now := time.Now().Unix()
		rec.Generations = append(rec.Generations, &storagepb.KeyGeneration{
			Number: cur.Number + 1, Material: newMaterial(), ReservedUses: block, CreatedUnix: now,
		})
		used = 0
	} else {
		cur.ReservedUses += block
	}
	if err := k.writeRecord(ctx, rec); err != nil {
		return err
	}
	dk.mu.Lock()
	defer dk.mu.Unlock()
	if err := dk.adoptLocked(rec); err != nil {
		return err
	}
	dk.mu.used = used
	return nil
}

// blindKey returns the HMAC key of ref's blind index for purpose. It derives
// from generation 0, so it stays the same across rotations and dies with the
// key.
func (k *keyring) blindKey(ctx context.Context, ref KeyRef, purpose string) ([]byte, error) {
	dk, err := k.ensure(ctx, ref)
	if err != nil {
		return nil, err
	}
	dk.mu.Lock()
	defer dk.mu.Unlock()
	if bk, ok := dk.mu.blind[purpose]; ok {
		return bk, nil
	}
	if dk.mu.gen0 == nil {
		return nil, fmt.Errorf("%w: key %s has no generation 0", ErrCorrupt, dk.id)
	}
	bk, err := hkdf.Key(sha256.New, dk.mu.gen0, nil, "chatpacket blind index v1 "+purpose, 32)
	if err != nil {
		return nil, err
	}
	if dk.mu.blind == nil {
		dk.mu.blind = make(map[string][]byte)
	}
	dk.mu.blind[purpose] = bk
	return bk, nil
}

// shredded reports whether id is in the shred ledger.
func (k *keyring) shredded(id KeyID) (bool, error) {
	_, closer, err := k.db.Get(k.ledgerKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("storage: read shred ledger: %w", err)
	}
	closer.Close()
	return true, nil
}

// shred destroys the keys of entries: their records go, the ledger gains
// their ids, the cache forgets them and everything below them, and the
// ranges that held the records are compacted so their bytes leave the SSTs.
// Entries already in the ledger are skipped; it returns how many were new.
func (k *keyring) shred(ctx context.Context, entries []ShredRecord) (int, error) {
	ids := make([]KeyID, 0, len(entries))
	at := make(map[KeyID]time.Time, len(entries))
	for _, e := range entries {
		if !e.KeyID.Kind().valid() || e.KeyID.Kind() == KindMaster {
			return 0, fmt.Errorf("storage: cannot shred %s", e.KeyID)
		}
		if _, dup := at[e.KeyID]; !dup {
			ids = append(ids, e.KeyID)
		}
		at[e.KeyID] = e.At
	}
	unlock := k.locks.lockAll(ids)
	shredded, err := k.shredLocked(ctx, ids, at)
	unlock()
	if err != nil || len(shredded) == 0 {
		return 0, err
	}

	// Drop the write-ahead logs that held the records (see wal.go), then
	// compact each affected shard's stretch of key records: the tombstones
	// meet the records they delete in the bottom level, where both are
	// dropped, so the wrapped material leaves the SSTs.
	spans := map[uint16][2][]byte{}
	for _, id := range shredded {
		rk := k.recordKey(id)
		shard := ShardOf(id[:], k.shards)
		s, ok := spans[shard]
		if !ok || bytes.Compare(rk, s[0]) < 0 {
			s[0] = rk
		}
		if end := append(append([]byte(nil), rk...), 0); !ok || bytes.Compare(end, s[1]) > 0 {
			s[1] = end
		}
		spans[shard] = s
	}
	if err := dropObsoleteLogs(k.db, k.opts.Dir); err != nil {
		return len(shredded), fmt.Errorf("storage: drop logs after shred: %w", err)
	}
	for _, s := range spans {
		if err := k.db.Compact(ctx, s[0], s[1], false); err != nil {
			return len(shredded), fmt.Errorf("storage: compact after shred: %w", err)
		}
	}
	return len(shredded), nil
}

// shredLocked deletes the records of ids not yet shredded and records them
// in the ledger, in one synced batch. The caller holds the ids' locks.
func (k *keyring) shredLocked(ctx context.Context, ids []KeyID, at map[KeyID]time.Time) ([]KeyID, error) {
	b := k.db.NewBatch()
	defer b.Close()
	var shredded []KeyID
	for _, id := range ids {
		if done, err := k.shredded(id); err != nil {
			return nil, err
		} else if done {
			continue
		}
		lkey := k.ledgerKey(id)
		pt, err := proto.Marshal(&storagepb.ShredEntry{KeyId: id[:], ShreddedUnix: at[id].Unix()})
		if err != nil {
			return nil, err
		}
		sealed, err := k.seal(ctx, KeyRef{ID: MasterKeyID}, lkey, pt)
		if err != nil {
			return nil, err
		}
		b.Delete(k.recordKey(id), nil)
		b.Set(lkey, sealed, nil)
		shredded = append(shredded, id)
	}
	if len(shredded) == 0 {
		return nil, nil
	}
	k.ledger.mu.Lock()
	err := b.Commit(pebble.Sync)
	if err == nil {
		k.ledger.addedLocked(shredded)
	}
	k.ledger.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("storage: commit shred: %w", err)
	}
	k.evict(shredded)
	return shredded, nil
}

// evict drops ids, and every cached key below one of them, from the cache.
func (k *keyring) evict(ids []KeyID) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.mu.epoch++
	k.removeLocked(func(dk *dataKey) bool {
		return slices.Contains(ids, dk.id) || slices.ContainsFunc(dk.ancestors, func(a KeyID) bool { return slices.Contains(ids, a) })
	})
}

// drop forgets one cached key without bumping the epoch (it is not erased).
func (k *keyring) drop(id KeyID) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.removeLocked(func(dk *dataKey) bool { return dk.id == id })
}

// removeLocked removes the cached keys that match. It walks the whole ring:
// shreds and drops are rare next to hits.
func (k *keyring) removeLocked(match func(*dataKey) bool) {
	k.mu.ring = slices.DeleteFunc(k.mu.ring, func(dk *dataKey) bool {
		if match(dk) {
			delete(k.mu.entries, dk.id)
			return true
		}
		return false
	})
}

// cached is the number of keys in the cache.
func (k *keyring) cached() int {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return len(k.mu.ring)
}

// keyLocks serialises the mutations of one key record: creation,
// reservation and shredding.
type keyLocks struct {
	mu sync.Mutex
	m  map[KeyID]*keyLock
}

type keyLock struct {
	sync.Mutex
	refs int
}

func (l *keyLocks) lock(id KeyID) (unlock func()) {
	l.mu.Lock()
	kl, ok := l.m[id]
	if !ok {
		kl = &keyLock{}
		l.m[id] = kl
	}
	kl.refs++
	l.mu.Unlock()

	kl.Lock()
	return func() {
		kl.Unlock()
		l.mu.Lock()
		if kl.refs--; kl.refs == 0 {
			delete(l.m, id)
		}
		l.mu.Unlock()
	}
}

// lockAll locks ids in the documented order: deeper kinds first, then by id.
func (l *keyLocks) lockAll(ids []KeyID) (unlock func()) {
	sorted := slices.Clone(ids)
	slices.SortFunc(sorted, func(a, b KeyID) int {
		if c := cmp.Compare(depth(b), depth(a)); c != 0 {
			return c
		}
		return bytes.Compare(a[:], b[:])
	})
	unlocks := make([]func(), 0, len(sorted))
	for _, id := range sorted {
		unlocks = append(unlocks, l.lock(id))
	}
	return func() {
		for i := len(unlocks) - 1; i >= 0; i-- {
			unlocks[i]()
		}
	}
}

// depth is a key's level below the master key.
func depth(id KeyID) int {
	switch id.Kind() {
	case KindSubject, KindMonth:
		return 2
	case KindTenant, KindIndex:
		return 1
	}
	return 0
}
