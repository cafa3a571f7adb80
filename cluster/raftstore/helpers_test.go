package raftstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/storage"
	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives its test: Pebble's,
// raft's and the transports' must all stop when closed.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newMasterKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, storage.MasterKeyLen)
	rand.Read(k)
	return k
}

// openDB opens the store in dir and closes it when the test ends (a second
// Close is harmless, so tests may close it earlier to restart it).
func openDB(t testing.TB, dir string, key []byte) *storage.DB {
	t.Helper()
	db, err := storage.Open(context.Background(), storage.Options{
		Dir:       dir,
		MasterKey: key,
		Shards:    8,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("storage.Open(%s) = %v", dir, err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// waitFor polls check until it returns nil, and fails the test with its
// last error when within passes first.
func waitFor(t testing.TB, within time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", within, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// filesContaining lists the files under dir whose bytes contain s. Files
// that vanish during the walk (an open store deletes obsolete files in the
// background) are skipped.
func filesContaining(t testing.TB, dir string, s []byte) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if bytes.Contains(data, s) {
			hits = append(hits, path)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return hits
}
