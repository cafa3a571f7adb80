package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// rawSet writes val at pkey behind the storage API, as an attacker or a
// damaged disk would.
func rawSet(t *testing.T, db *DB, pkey, val []byte) {
	t.Helper()
	if err := db.pdb.Set(pkey, val, pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

func rawGet(t *testing.T, db *DB, pkey []byte) []byte {
	t.Helper()
	val, closer, err := db.pdb.Get(pkey)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	return bytes.Clone(val)
}

// TestTamperEveryByte flips each bit of each byte of a sealed value in turn:
// every variant fails to open with ErrCorrupt, and the message passed in is
// left as it was (no wrong plaintext reaches the caller).
func TestTamperEveryByte(t *testing.T) {
	db := openDB(t, t.TempDir(), newMasterKey(t))
	pkey := userKey(0, NewID())
	mustPut(t, db, pkey, SubjectKey(NewID(), NewID()), "the original message")
	sealed := rawGet(t, db, pkey)

	for i := range sealed {
		for bit := range 8 {
			bad := bytes.Clone(sealed)
			bad[i] ^= 1 << bit
			rawSet(t, db, pkey, bad)
			v := wrapperspb.String("untouched")
			err := db.Get(context.Background(), pkey, v)
			if !errors.Is(err, ErrCorrupt) || v.Value != "untouched" {
				t.Fatalf("byte %d bit %d flipped: Get = %v, value %q; want ErrCorrupt, value untouched", i, bit, err, v.Value)
			}
		}
	}
	for _, cut := range []int{0, 1, headerLen, EnvelopeOverhead - 1, len(sealed) - 1} {
		rawSet(t, db, pkey, sealed[:cut])
		wantErr(t, db, pkey, ErrCorrupt)
	}
	rawSet(t, db, pkey, append(bytes.Clone(sealed), 0))
	wantErr(t, db, pkey, ErrCorrupt)

	rawSet(t, db, pkey, sealed)
	wantString(t, db, pkey, "the original message")
}

// TestMovedValueFailsToOpen copies a sealed value to another key: the key is
// bound into the AEAD, so the copy does not open.
func TestMovedValueFailsToOpen(t *testing.T) {
	db := openDB(t, t.TempDir(), newMasterKey(t))
	from, to := userKey(0, NewID()), userKey(0, NewID())
	mustPut(t, db, from, SubjectKey(NewID(), NewID()), "belongs at from")
	rawSet(t, db, to, rawGet(t, db, from))
	wantErr(t, db, to, ErrCorrupt)
}

// TestTamperedKeyRecord damages a key record: data under it reports
// ErrCorrupt (not ErrErased, which would hide the damage as an erasure).
func TestTamperedKeyRecord(t *testing.T) {
	db := openDB(t, t.TempDir(), newMasterKey(t))
	tenant, visitor := NewID(), NewID()
	pkey := userKey(0, NewID())
	mustPut(t, db, pkey, SubjectKey(tenant, visitor), "hello")

	rk := db.keys.recordKey(SubjectKey(tenant, visitor).ID)
	rec := rawGet(t, db, rk)
	rec[len(rec)-1] ^= 1
	rawSet(t, db, rk, rec)
	db.keys.drop(SubjectKey(tenant, visitor).ID)
	wantErr(t, db, pkey, ErrCorrupt)
}

// FuzzOpenEnvelope feeds arbitrary bytes to the envelope parser and opener.
// Nothing may panic, and nothing but the authentic envelope may open.
func FuzzOpenEnvelope(f *testing.F) {
	key := make([]byte, 32)
	rand.Read(key)
	aead, err := masterAEAD(key)
	if err != nil {
		f.Fatal(err)
	}
	pkey := []byte("fuzz key")
	plaintext := []byte("authentic plaintext")
	authentic := sealWith(nil, nil, aead, MasterKeyID, 0, pkey, plaintext)
	f.Add(authentic)
	f.Add(authentic[:EnvelopeOverhead])
	f.Add([]byte{})
	f.Add([]byte{envelopeVersion})
	f.Add(append([]byte{0x02}, authentic[1:]...))
	f.Add(bytes.Repeat([]byte{0xff}, EnvelopeOverhead+10))

	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := parseEnvelope(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("parseEnvelope error %v is not ErrCorrupt", err)
			}
			return
		}
		if len(e.nonce) != nonceLen || len(e.header) != headerLen || len(e.ciphertext) < tagLen {
			t.Fatalf("parseEnvelope(%x) gave malformed parts", b)
		}
		pt, err := openWith(aead, e, pkey)
		if err == nil && (!bytes.Equal(b, authentic) || !bytes.Equal(pt, plaintext)) {
			t.Fatalf("openWith(%x) = %q; only the authentic envelope may open", b, pt)
		}
	})
}
