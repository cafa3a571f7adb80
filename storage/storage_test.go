package storage

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"

	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestMain(m *testing.M) {
	// Every goroutine Pebble and the store start must stop with Close.
	goleak.VerifyTestMain(m)
}

func newMasterKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, MasterKeyLen)
	rand.Read(k)
	return k
}

func openDB(t testing.TB, dir string, key []byte, mutate ...func(*Options)) *DB {
	t.Helper()
	opts := Options{Dir: dir, MasterKey: key, Shards: 8}
	for _, m := range mutate {
		m(&opts)
	}
	db, err := Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("Open(%s) = %v", dir, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func str(s string) *wrapperspb.StringValue { return wrapperspb.String(s) }

func mustPut(t testing.TB, db *DB, pkey []byte, ref KeyRef, s string) {
	t.Helper()
	if err := db.Put(context.Background(), pkey, ref, str(s)); err != nil {
		t.Fatalf("Put(%x) = %v", pkey, err)
	}
}

// readString returns the record at pkey, or the error reading it.
func readString(db *DB, pkey []byte) (string, error) {
	var v wrapperspb.StringValue
	if err := db.Get(context.Background(), pkey, &v); err != nil {
		return "", err
	}
	return v.Value, nil
}

func wantString(t testing.TB, db *DB, pkey []byte, want string) {
	t.Helper()
	got, err := readString(db, pkey)
	if err != nil || got != want {
		t.Fatalf("Get(%x) = %q, %v; want %q", pkey, got, err, want)
	}
}

func wantErr(t testing.TB, db *DB, pkey []byte, want error) {
	t.Helper()
	got, err := readString(db, pkey)
	if !errors.Is(err, want) {
		t.Fatalf("Get(%x) = %q, %v; want %v", pkey, got, err, want)
	}
}

func userKey(shard uint16, id ID) []byte { return Key(shard, TableFirstUser, id[:]) }

func TestPutGetScan(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir(), newMasterKey(t))
	tenant, visitor := NewID(), NewID()
	refs := []KeyRef{TenantKey(tenant), SubjectKey(tenant, visitor), GlobalIndexKey}
	var keys [][]byte
	for i, ref := range refs {
		k := userKey(3, NewID())
		keys = append(keys, k)
		mustPut(t, db, k, ref, "value "+string(rune('a'+i)))
	}
	for i, k := range keys {
		wantString(t, db, k, "value "+string(rune('a'+i)))
	}
	wantErr(t, db, userKey(3, NewID()), ErrNotFound)

	n := 0
	err := db.ScanPrefix(ctx, TablePrefix(3, TableFirstUser), func(key []byte, open func(proto.Message) error) error {
		var v wrapperspb.StringValue
		if err := open(&v); err != nil {
			return err
		}
		n++
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("ScanPrefix = %d records, %v; want 3, nil", n, err)
	}

	if err := db.Delete(ctx, keys[0]); err != nil {
		t.Fatalf("Delete = %v", err)
	}
	wantErr(t, db, keys[0], ErrNotFound)
}

func TestBadKeyRefsAreRefused(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir(), newMasterKey(t))
	tenant := NewID()
	bad := []KeyRef{
		{ID: TenantKey(tenant).ID, Parent: SubjectKey(tenant, NewID()).ID}, // tenant under a subject
		{ID: SubjectKey(tenant, NewID()).ID, Parent: MasterKeyID},          // subject straight under master
		{ID: KeyID{}, Parent: MasterKeyID},                                 // no kind
		{ID: MasterKeyID},                                                  // data under the master key could never be shredded
	}
	for _, ref := range bad {
		if err := db.Put(ctx, userKey(0, NewID()), ref, str("x")); err == nil {
			t.Errorf("Put under %s wrapped by %s succeeded; want an error", ref.ID, ref.Parent)
		}
	}
}

func TestClosedDB(t *testing.T) {
	db := openDB(t, t.TempDir(), newMasterKey(t))
	if err := db.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("second Close = %v; want nil", err)
	}
	if _, err := readString(db, userKey(0, NewID())); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close = %v; want ErrClosed", err)
	}
}

func TestShardsAreRecorded(t *testing.T) {
	dir, key := t.TempDir(), newMasterKey(t)
	db := openDB(t, dir, key, func(o *Options) { o.Shards = 16 })
	db.Close()

	db = openDB(t, dir, key, func(o *Options) { o.Shards = 0 })
	if db.Shards() != 16 {
		t.Fatalf("reopened with Shards 0: Shards() = %d; want the recorded 16", db.Shards())
	}
	db.Close()

	_, err := Open(context.Background(), Options{Dir: dir, MasterKey: key, Shards: 32})
	if err == nil {
		t.Fatal("Open with 32 shards over a 16-shard store succeeded; want an error")
	}
}

func TestIDText(t *testing.T) {
	id := NewID()
	got, err := ParseID(id.String())
	if err != nil || got != id {
		t.Fatalf("ParseID(%q) = %v, %v; want %v", id.String(), got, err, id)
	}
	for _, bad := range []string{"", "short", id.String() + "a", "!!!!!!!!!!!!!!!!!!!!!!!!!!"} {
		if _, err := ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) succeeded; want an error", bad)
		}
	}
	if BytesID(id[:]) != id || BytesID(id[:15]) != (ID{}) {
		t.Fatalf("BytesID: round trip or short input wrong")
	}
	kid := SubjectKey(NewID(), NewID()).ID
	if got, err := ParseKeyID(kid.String()); err != nil || got != kid {
		t.Fatalf("ParseKeyID(%q) = %v, %v; want %v", kid.String(), got, err, kid)
	}
}

// TestBatch commits several records atomically and refuses use after
// Commit.
func TestBatch(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir(), newMasterKey(t))
	tenant := NewID()
	gone := userKey(0, NewID())
	mustPut(t, db, gone, TenantKey(tenant), "to delete")

	b := db.NewBatch()
	var keys [][]byte
	for i := range 3 {
		k := userKey(0, NewID())
		keys = append(keys, k)
		if err := b.Put(ctx, k, SubjectKey(tenant, NewID()), str(string(rune('a'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Delete(gone); err != nil {
		t.Fatal(err)
	}
	wantErr(t, db, keys[0], ErrNotFound) // nothing visible before Commit
	if err := b.Commit(ctx); err != nil {
		t.Fatalf("Commit = %v", err)
	}
	for i, k := range keys {
		wantString(t, db, k, string(rune('a'+i)))
	}
	wantErr(t, db, gone, ErrNotFound)
	if err := b.Put(ctx, userKey(0, NewID()), TenantKey(tenant), str("late")); err == nil {
		t.Fatal("Put on a committed batch succeeded; want an error")
	}
	if err := b.Commit(ctx); err == nil {
		t.Fatal("second Commit succeeded; want an error")
	}
	b.Close() // harmless after Commit
}
