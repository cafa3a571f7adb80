package storage

import (
	"bytes"
	"context"
	"encoding/base64"
	"io/fs"
	"slices"
	"testing"
	"unicode/utf16"

	"github.com/cockroachdb/pebble/v2"
)

// markerForms returns the byte strings whose presence in a file means the
// marker leaked: the marker itself, in UTF-16 both ways, and the parts of
// its base64 forms that do not depend on the alignment of the surrounding
// bytes.
func markerForms(marker string) [][]byte {
	forms := [][]byte{[]byte(marker)}
	for _, bigEndian := range []bool{false, true} {
		var b []byte
		for _, u := range utf16.Encode([]rune(marker)) {
			if bigEndian {
				b = append(b, byte(u>>8), byte(u))
			} else {
				b = append(b, byte(u), byte(u>>8))
			}
		}
		forms = append(forms, b)
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for shift := range 3 {
			s := enc.EncodeToString(append(make([]byte, shift), marker...))
			// Drop the characters that mix with neighbouring bytes.
			forms = append(forms, []byte(s[(shift*4+2)/3+1:len(s)-4]))
		}
	}
	return forms
}

// filesContaining lists the files under dir that contain any of forms.
func filesContaining(t *testing.T, dir string, forms [][]byte) []string {
	t.Helper()
	var hits []string
	forEachFile(t, dir, func(path string, data []byte, _ fs.FileInfo) {
		if slices.ContainsFunc(forms, func(f []byte) bool { return bytes.Contains(data, f) }) {
			hits = append(hits, path)
		}
	})
	return hits
}

// TestCanary writes records holding a unique marker through the storage API
// and checks that, after flush, compaction and close, no file of the store
// contains the marker in any common encoding.
func TestCanary(t *testing.T) {
	ctx := context.Background()
	marker := "canary-" + NewID().String() + "-visitor@example.com"
	forms := markerForms(marker)

	// The detector works: the same marker written through plain Pebble is
	// found, in each encoding.
	plainDir := t.TempDir()
	pdb, err := pebble.Open(plainDir, &pebble.Options{Logger: pebbleLogger{discardLogger()}})
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range forms {
		if err := pdb.Set([]byte{byte(i)}, append([]byte("prefix:"), f...), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	pdb.Close()
	if hits := filesContaining(t, plainDir, forms); len(hits) == 0 {
		t.Fatal("the marker written through plain Pebble was not found: the detector is broken")
	}

	dir := t.TempDir()
	db := openDB(t, dir, newMasterKey(t))
	tenant := NewID()
	for i := range 50 {
		visitor := NewID()
		mustPut(t, db, userKey(uint16(i%8), NewID()), SubjectKey(tenant, visitor), marker)
		mustPut(t, db, userKey(uint16(i%8), NewID()), TenantKey(tenant), "said "+marker+" twice: "+marker)
		mustPut(t, db, userKey(uint16(i%8), NewID()), MonthKey(tenant, testMonth), marker)
	}
	if _, err := db.Blind(ctx, GlobalIndexKey, "email", []byte(marker)); err != nil {
		t.Fatal(err)
	}
	// While open, the WAL holds the records; they must not leak there either.
	if hits := filesContaining(t, dir, forms); len(hits) > 0 {
		t.Fatalf("marker found in %v while open", hits)
	}
	if err := db.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if hits := filesContaining(t, dir, forms); len(hits) > 0 {
		t.Fatalf("marker found in %v", hits)
	}
}
