package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// shredFixture is a tenant with two visitors and a month of analytics, one
// record under each key.
type shredFixture struct {
	tenant, v1, v2                    ID
	tenantRec, v1Rec, v2Rec, monthRec []byte
}

func writeShredFixture(t *testing.T, db *DB) shredFixture {
	t.Helper()
	f := shredFixture{tenant: NewID(), v1: NewID(), v2: NewID()}
	f.tenantRec = userKey(1, NewID())
	f.v1Rec = userKey(2, NewID())
	f.v2Rec = userKey(3, NewID())
	f.monthRec = userKey(4, NewID())
	mustPut(t, db, f.tenantRec, TenantKey(f.tenant), "settings")
	mustPut(t, db, f.v1Rec, SubjectKey(f.tenant, f.v1), "v1 message")
	mustPut(t, db, f.v2Rec, SubjectKey(f.tenant, f.v2), "v2 message")
	mustPut(t, db, f.monthRec, MonthKey(f.tenant, testMonth), "page view")
	return f
}

func TestShredSubject(t *testing.T) {
	ctx := context.Background()
	dir, key := t.TempDir(), newMasterKey(t)
	db := openDB(t, dir, key)
	f := writeShredFixture(t, db)

	if err := db.Shred(ctx, SubjectKey(f.tenant, f.v1).ID); err != nil {
		t.Fatalf("Shred = %v", err)
	}
	wantErr(t, db, f.v1Rec, ErrErased)
	wantString(t, db, f.v2Rec, "v2 message")
	wantString(t, db, f.tenantRec, "settings")

	// Nothing new can be sealed under a shredded key: a late write for an
	// erased visitor must not bring them back.
	err := db.Put(ctx, userKey(2, NewID()), SubjectKey(f.tenant, f.v1), str("late"))
	if !errors.Is(err, ErrErased) {
		t.Fatalf("Put under a shredded key = %v; want ErrErased", err)
	}

	// Shredding again is a no-op.
	if err := db.Shred(ctx, SubjectKey(f.tenant, f.v1).ID); err != nil {
		t.Fatalf("second Shred = %v", err)
	}
	db.Close()

	db = openDB(t, dir, key)
	wantErr(t, db, f.v1Rec, ErrErased)
	wantString(t, db, f.v2Rec, "v2 message")
}

// TestShredTenantCascades shreds a tenant key: everything sealed under it
// and under every key it wrapped is erased, including keys cached before.
func TestShredTenantCascades(t *testing.T) {
	ctx := context.Background()
	dir, key := t.TempDir(), newMasterKey(t)
	db := openDB(t, dir, key)
	f := writeShredFixture(t, db)
	wantString(t, db, f.v2Rec, "v2 message") // the subject key is now cached

	if err := db.Shred(ctx, TenantKey(f.tenant).ID); err != nil {
		t.Fatalf("Shred = %v", err)
	}
	for _, rec := range [][]byte{f.tenantRec, f.v1Rec, f.v2Rec, f.monthRec} {
		wantErr(t, db, rec, ErrErased)
	}
	if _, err := db.Blind(ctx, TenantKey(f.tenant), "email", []byte("a@b.c")); !errors.Is(err, ErrErased) {
		t.Fatalf("Blind under a shredded tenant = %v; want ErrErased", err)
	}
	if err := db.Put(ctx, userKey(0, NewID()), SubjectKey(f.tenant, NewID()), str("new visitor")); !errors.Is(err, ErrErased) {
		t.Fatalf("Put under a new subject of a shredded tenant = %v; want ErrErased", err)
	}
	db.Close()

	db = openDB(t, dir, key)
	for _, rec := range [][]byte{f.tenantRec, f.v1Rec, f.v2Rec, f.monthRec} {
		wantErr(t, db, rec, ErrErased)
	}
}

// TestShredReachesCheckpoints restores a checkpoint taken before a shred:
// the data is readable there until the live store's ledger is applied, and
// erased afterwards, also after reopening the restored copy.
func TestShredReachesCheckpoints(t *testing.T) {
	ctx := context.Background()
	key := newMasterKey(t)
	db := openDB(t, t.TempDir(), key)
	f := writeShredFixture(t, db)
	backup := filepath.Join(t.TempDir(), "checkpoint")
	if err := db.Checkpoint(ctx, backup); err != nil {
		t.Fatalf("Checkpoint = %v", err)
	}
	if err := db.Shred(ctx, SubjectKey(f.tenant, f.v1).ID); err != nil {
		t.Fatal(err)
	}
	if err := db.Shred(ctx, MonthKey(f.tenant, testMonth).ID); err != nil {
		t.Fatal(err)
	}
	ledger, err := db.Ledger(ctx)
	if err != nil || len(ledger) != 2 {
		t.Fatalf("Ledger = %v, %v; want 2 entries", ledger, err)
	}

	restored := openDB(t, backup, key)
	wantString(t, restored, f.v1Rec, "v1 message") // before the ledger: the old copy still holds it
	n, err := restored.ApplyLedger(ctx, ledger)
	if err != nil || n != 2 {
		t.Fatalf("ApplyLedger = %d, %v; want 2, nil", n, err)
	}
	wantErr(t, restored, f.v1Rec, ErrErased)
	wantErr(t, restored, f.monthRec, ErrErased)
	wantString(t, restored, f.v2Rec, "v2 message")
	if n, err := restored.ApplyLedger(ctx, ledger); err != nil || n != 0 {
		t.Fatalf("second ApplyLedger = %d, %v; want 0, nil", n, err)
	}
	got, err := restored.Ledger(ctx)
	if err != nil || len(got) != 2 || !got[0].At.Equal(ledger[0].At) {
		t.Fatalf("restored Ledger = %v, %v; want %v", got, err, ledger)
	}
	restored.Close()

	restored = openDB(t, backup, key)
	wantErr(t, restored, f.v1Rec, ErrErased)
}

// TestShredRemovesKeyBytes checks that the wrapped key record leaves the
// disk: after the shred no file of the store, SST or write-ahead log, holds
// it, although both did before.
func TestShredRemovesKeyBytes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := openDB(t, dir, newMasterKey(t))
	f := writeShredFixture(t, db)
	id := SubjectKey(f.tenant, f.v1).ID
	val, closer, err := db.pdb.Get(db.keys.recordKey(id))
	if err != nil {
		t.Fatal(err)
	}
	record := bytes.Clone(val)
	closer.Close()
	if err := db.Compact(ctx); err != nil { // the record is now in an SST
		t.Fatal(err)
	}
	mustPut(t, db, userKey(5, NewID()), TenantKey(f.tenant), "the record is also in a log") // not compacted yet
	if hits := sstsContaining(t, dir, record[headerLen:]); len(hits) == 0 {
		t.Fatal("the key record is in no SST before the shred: the check is broken")
	}
	if hits := filesContaining(t, dir, [][]byte{record[headerLen:]}); !slices.ContainsFunc(hits, func(p string) bool { return strings.HasSuffix(p, ".log") }) {
		t.Fatalf("the key record is in no write-ahead log before the shred (only %v): the check is broken", hits)
	}

	if err := db.Shred(ctx, id); err != nil {
		t.Fatal(err)
	}
	// Pebble deletes the SSTs a compaction replaced in the background.
	eventually(t, 5*time.Second, func() error {
		if hits := filesContaining(t, dir, [][]byte{record[headerLen:]}); len(hits) > 0 {
			return fmt.Errorf("the shredded key record is still in %v", hits)
		}
		return nil
	})
	// More writes rotate and reuse logs; the store still works.
	for range 2000 {
		mustPut(t, db, userKey(5, NewID()), TenantKey(f.tenant), strings.Repeat("x", 4000))
	}
	wantString(t, db, f.v2Rec, "v2 message")
	db.Close()
	if hits := filesContaining(t, dir, [][]byte{record[headerLen:]}); len(hits) > 0 {
		t.Fatalf("the shredded key record is back in %v", hits)
	}
}

func sstsContaining(t *testing.T, dir string, b []byte) []string {
	t.Helper()
	var hits []string
	forEachFile(t, dir, func(path string, data []byte, _ fs.FileInfo) {
		if strings.HasSuffix(path, ".sst") && bytes.Contains(data, b) {
			hits = append(hits, path)
		}
	})
	return hits
}

func TestShredRefusesMasterKey(t *testing.T) {
	db := openDB(t, t.TempDir(), newMasterKey(t))
	if err := db.Shred(context.Background(), MasterKeyID); err == nil {
		t.Fatal("Shred(master) succeeded; want an error")
	}
}
