package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/chatpacket/chatpacket/storage/storagepb"
	"google.golang.org/protobuf/proto"
)

// readKeyRecord returns key id's record as stored.
func readKeyRecord(t *testing.T, db *DB, id KeyID) *storagepb.KeyRecord {
	t.Helper()
	rec, _, err := db.keys.readRecord(context.Background(), id)
	if err != nil {
		t.Fatalf("readRecord(%s) = %v", id, err)
	}
	return rec
}

// TestRotation seals past RotateAfter: new generations appear, each within
// its budget, and every value stays readable, also after reopening.
func TestRotation(t *testing.T) {
	dir, key := t.TempDir(), newMasterKey(t)
	const rotateAfter = 32
	small := func(o *Options) { o.RotateAfter = rotateAfter }
	db := openDB(t, dir, key, small)
	ref := SubjectKey(NewID(), NewID())
	var keys [][]byte
	for i := range 200 {
		k := userKey(0, NewID())
		keys = append(keys, k)
		mustPut(t, db, k, ref, fmt.Sprint(i))
	}
	rec := readKeyRecord(t, db, ref.ID)
	if len(rec.Generations) < 200/rotateAfter {
		t.Fatalf("%d generations after 200 seals with RotateAfter %d; want at least %d", len(rec.Generations), rotateAfter, 200/rotateAfter)
	}
	for _, g := range rec.Generations {
		if g.ReservedUses > rotateAfter {
			t.Fatalf("generation %d reserved %d uses; RotateAfter is %d", g.Number, g.ReservedUses, rotateAfter)
		}
	}
	db.Close()

	db = openDB(t, dir, key, small)
	for i, k := range keys {
		wantString(t, db, k, fmt.Sprint(i))
	}
	// A reload counts the whole persisted reservation as used, so the next
	// seal reserves afresh rather than reusing counts.
	gens := len(readKeyRecord(t, db, ref.ID).Generations)
	mustPut(t, db, userKey(0, NewID()), ref, "after reopen")
	after := readKeyRecord(t, db, ref.ID)
	last := after.Generations[len(after.Generations)-1]
	if len(after.Generations) == gens && last.ReservedUses == rec.Generations[len(rec.Generations)-1].ReservedUses {
		t.Fatal("the first seal after a reopen did not reserve new uses")
	}
}

// TestConcurrentFirstUse seals under one new key from many goroutines: the
// key is created once, so every value opens.
func TestConcurrentFirstUse(t *testing.T) {
	db := openDB(t, t.TempDir(), newMasterKey(t))
	tenant := NewID()
	refs := []KeyRef{SubjectKey(tenant, NewID()), SubjectKey(tenant, NewID())}
	const writers = 32
	keys := make([][]byte, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		keys[i] = userKey(uint16(i%8), NewID())
		wg.Go(func() {
			errs[i] = db.Put(context.Background(), keys[i], refs[i%2], str(fmt.Sprint(i)))
		})
	}
	wg.Wait()
	for i := range writers {
		if errs[i] != nil {
			t.Fatalf("Put %d = %v", i, errs[i])
		}
		wantString(t, db, keys[i], fmt.Sprint(i))
	}
}

// TestKeyCacheBound fills the cache past its bound: values under evicted
// keys still open (from their records), and the cache never grows beyond it.
func TestKeyCacheBound(t *testing.T) {
	db := openDB(t, t.TempDir(), newMasterKey(t), func(o *Options) { o.KeyCacheEntries = 4 })
	tenant := NewID()
	var keys [][]byte
	for i := range 20 {
		k := userKey(0, NewID())
		keys = append(keys, k)
		mustPut(t, db, k, SubjectKey(tenant, NewID()), fmt.Sprint(i))
	}
	for i, k := range keys {
		wantString(t, db, k, fmt.Sprint(i))
	}
	if n := db.keys.cached(); n > 4 {
		t.Fatalf("cache holds %d keys; bound is 4", n)
	}
}

func TestBlind(t *testing.T) {
	ctx := context.Background()
	dir, key := t.TempDir(), newMasterKey(t)
	db := openDB(t, dir, key)
	tenant := NewID()
	a, err := db.Blind(ctx, TenantKey(tenant), "email", []byte("ada@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ref     KeyRef
		purpose string
		value   string
		same    bool
	}{
		{TenantKey(tenant), "email", "ada@example.com", true},
		{TenantKey(tenant), "email", "bob@example.com", false},
		{TenantKey(tenant), "phone", "ada@example.com", false},
		{TenantKey(NewID()), "email", "ada@example.com", false},
		{GlobalIndexKey, "email", "ada@example.com", false},
	} {
		b, err := db.Blind(ctx, c.ref, c.purpose, []byte(c.value))
		if err != nil || bytes.Equal(a, b) != c.same {
			t.Errorf("Blind(%s, %q, %q) equal = %v, %v; want %v", c.ref.ID, c.purpose, c.value, bytes.Equal(a, b), err, c.same)
		}
	}
	db.Close()
	db = openDB(t, dir, key)
	b, err := db.Blind(ctx, TenantKey(tenant), "email", []byte("ada@example.com"))
	if err != nil || !bytes.Equal(a, b) {
		t.Fatalf("Blind after reopen changed: %x, %v; want %x", b, err, a)
	}
}

// TestKeyRecordsAreSealedUnderTheirParent checks the hierarchy on disk: a
// subject key's record opens only under its tenant key.
func TestKeyRecordsAreSealedUnderTheirParent(t *testing.T) {
	db := openDB(t, t.TempDir(), newMasterKey(t))
	tenant, visitor := NewID(), NewID()
	mustPut(t, db, userKey(0, NewID()), SubjectKey(tenant, visitor), "x")
	for _, c := range []struct{ child, parent KeyID }{
		{SubjectKey(tenant, visitor).ID, TenantKey(tenant).ID},
		{TenantKey(tenant).ID, MasterKeyID},
	} {
		e, err := parseEnvelope(rawGet(t, db, db.keys.recordKey(c.child)))
		if err != nil || e.keyID != c.parent {
			t.Fatalf("record of %s is sealed under %s, %v; want %s", c.child, e.keyID, err, c.parent)
		}
	}
	var rec storagepb.KeyRecord
	pt, err := db.keys.open(context.Background(), db.keys.recordKey(TenantKey(tenant).ID), rawGet(t, db, db.keys.recordKey(TenantKey(tenant).ID)))
	if err != nil || proto.Unmarshal(pt, &rec) != nil || len(rec.Generations[0].Material) != 32 {
		t.Fatalf("tenant record: %v", err)
	}
	if _, err := db.keys.open(context.Background(), userKey(0, NewID()), rawGet(t, db, db.keys.recordKey(TenantKey(tenant).ID))); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a key record opened at another key: %v; want ErrCorrupt", err)
	}
}
