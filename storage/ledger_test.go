package storage

import (
	"context"
	"testing"
)

// Two stores that shredded different keys make their ledgers equal by
// exchanging pages, and their digests say so; a store's digest counts its
// own shreds, and the change signal fires.
func TestLedgerExchange(t *testing.T) {
	ctx := context.Background()
	key := newMasterKey(t)
	a, b := openDB(t, t.TempDir(), key), openDB(t, t.TempDir(), key)
	tenant := NewID()

	da, err := a.LedgerDigest(ctx)
	if err != nil || da.Count != 0 {
		t.Fatalf("empty digest = %+v, %v", da, err)
	}
	var shredded []KeyID
	for range 7 {
		id := SubjectKey(tenant, NewID()).ID
		shredded = append(shredded, id)
		if err := a.Shred(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-a.LedgerChanged():
	default:
		t.Fatal("no change signal after a shred")
	}
	if err := b.Shred(ctx, shredded[0]); err != nil { // one in common
		t.Fatal(err)
	}
	if err := b.Shred(ctx, MonthKey(tenant, testMonth).ID); err != nil {
		t.Fatal(err)
	}
	if da, _ = a.LedgerDigest(ctx); da.Count != 7 {
		t.Fatalf("a's digest counts %d; want 7", da.Count)
	}
	if db, _ := b.LedgerDigest(ctx); db == da {
		t.Fatal("different ledgers have one digest")
	}

	// Page a's ledger into b, and b's into a, three entries at a time.
	exchange := func(from, to *DB) {
		var cursor []byte
		pages := 0
		for {
			page, next, err := from.LedgerPage(ctx, cursor, 3)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := to.ApplyLedger(ctx, page); err != nil {
				t.Fatal(err)
			}
			if pages++; next == nil || pages > 10 {
				return
			}
			cursor = next
		}
	}
	exchange(a, b)
	exchange(b, a)
	da, _ = a.LedgerDigest(ctx)
	db, _ := b.LedgerDigest(ctx)
	if da != db || da.Count != 8 {
		t.Fatalf("after the exchange: a %d entries, b %d, equal digests %v; want 8 and equal", da.Count, db.Count, da == db)
	}
	// A digest computed from disk agrees with the one kept in memory.
	reopened := openDB(t, t.TempDir(), key)
	if _, err := reopened.ApplyLedger(ctx, mustLedger(t, a)); err != nil {
		t.Fatal(err)
	}
	if dr, _ := reopened.LedgerDigest(ctx); dr != da {
		t.Fatalf("a fresh store's digest %+v differs from a's %+v", dr, da)
	}
	for _, id := range shredded {
		if ok, _ := b.keys.shredded(id); !ok {
			t.Fatalf("b did not learn %s", id)
		}
	}
}

func mustLedger(t *testing.T, db *DB) []ShredRecord {
	t.Helper()
	l, err := db.Ledger(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return l
}
