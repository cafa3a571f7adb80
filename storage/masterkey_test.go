package storage

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dirState is every file under dir with a hash of its content and its
// modification time: what "nothing was changed" compares.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	state := map[string]string{}
	forEachFile(t, dir, func(path string, data []byte, info fs.FileInfo) {
		sum := sha256.Sum256(data)
		state[path] = hex.EncodeToString(sum[:]) + " " + info.ModTime().String()
	})
	return state
}

func sameState(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestWrongMasterKeyIsRefusedAndChangesNothing(t *testing.T) {
	dir := t.TempDir()
	right := newMasterKey(t)
	db := openDB(t, dir, right)
	pkey := userKey(0, NewID())
	mustPut(t, db, pkey, TenantKey(NewID()), "kept")
	db.Close()
	before := dirState(t, dir)

	_, err := Open(context.Background(), Options{Dir: dir, MasterKey: newMasterKey(t)})
	if !errors.Is(err, ErrWrongMasterKey) {
		t.Fatalf("Open with a wrong key = %v; want ErrWrongMasterKey", err)
	}
	if !strings.Contains(err.Error(), fingerprint(right)) {
		t.Errorf("error %q does not name the store's key fingerprint %s", err, fingerprint(right))
	}
	if !sameState(before, dirState(t, dir)) {
		t.Fatal("opening with a wrong key changed the store's files")
	}

	db = openDB(t, dir, right)
	wantString(t, db, pkey, "kept")
}

func TestStoreWithoutKeyCheckIsRefused(t *testing.T) {
	dir, key := t.TempDir(), newMasterKey(t)
	openDB(t, dir, key).Close()
	if err := os.Remove(filepath.Join(dir, keyCheckFile)); err != nil {
		t.Fatal(err)
	}
	before := dirState(t, dir)
	if _, err := Open(context.Background(), Options{Dir: dir, MasterKey: key}); err == nil {
		t.Fatal("Open of a store without KEYCHECK succeeded; want an error")
	}
	if !sameState(before, dirState(t, dir)) {
		t.Fatal("the refused Open changed the store's files")
	}
}

func TestLoadMasterKey(t *testing.T) {
	dataDir := t.TempDir()
	storeDir := filepath.Join(dataDir, "store")
	devFile := filepath.Join(dataDir, "master.key")

	// Development default: generated once, then reused.
	mk, err := LoadMasterKey(MasterKeySource{DevFile: devFile}, storeDir)
	if err != nil || !mk.Dev || !mk.Generated || len(mk.Key) != MasterKeyLen {
		t.Fatalf("first LoadMasterKey = %+v, %v; want a generated dev key", mk, err)
	}
	if info, err := os.Stat(devFile); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("dev key file: %v, %v; want mode 0600", info, err)
	}
	again, err := LoadMasterKey(MasterKeySource{DevFile: devFile}, storeDir)
	if err != nil || again.Generated || again.Fingerprint() != mk.Fingerprint() {
		t.Fatalf("second LoadMasterKey = %+v, %v; want the same key, not generated", again, err)
	}

	// A store whose dev key went missing is not given a new key.
	openDB(t, storeDir, mk.Key).Close()
	os.Remove(devFile)
	if _, err := LoadMasterKey(MasterKeySource{DevFile: devFile}, storeDir); !errors.Is(err, ErrNoMasterKey) {
		t.Fatalf("LoadMasterKey with the dev key gone = %v; want ErrNoMasterKey", err)
	}
	if _, err := os.Stat(devFile); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("a new dev key was written over an existing store")
	}

	// File and environment, hex and base64.
	file := filepath.Join(t.TempDir(), "kek")
	os.WriteFile(file, []byte(hex.EncodeToString(mk.Key)+"\n"), 0o600)
	if got, err := LoadMasterKey(MasterKeySource{File: file}, storeDir); err != nil || got.Fingerprint() != mk.Fingerprint() || got.Dev {
		t.Fatalf("LoadMasterKey(file) = %+v, %v", got, err)
	}
	env := base64.StdEncoding.EncodeToString(mk.Key)
	if got, err := LoadMasterKey(MasterKeySource{Env: env}, storeDir); err != nil || got.Fingerprint() != mk.Fingerprint() {
		t.Fatalf("LoadMasterKey(env) = %+v, %v", got, err)
	}
	for _, bad := range []MasterKeySource{
		{Env: "too short"},
		{Env: hex.EncodeToString(mk.Key[:31])},
		{File: file, Env: env},
		{File: filepath.Join(t.TempDir(), "missing")},
		{},
	} {
		if _, err := LoadMasterKey(bad, storeDir); err == nil {
			t.Errorf("LoadMasterKey(%+v) succeeded; want an error", bad)
		}
	}
	if k := GenerateMasterKey(); len(k) != 64 {
		t.Errorf("GenerateMasterKey() = %q; want 64 hex digits", k)
	}
}
