package storage

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// MasterKeyLen is the length of the master key: AES-256.
const MasterKeyLen = 32

// MasterKeySource says where the master key comes from, in order of
// preference: a file the operator manages, the CHATPACKET_MASTER_KEY
// environment variable, or, for development only, a key generated beside the
// data (which defeats encryption at rest against anyone who can read the data
// dir, hence the warning callers must print).
type MasterKeySource struct {
	File    string // path of a file holding the key as 64 hex digits or base64
	Env     string // the key itself, same encodings
	DevFile string // where a development key is kept when File and Env are empty
}

// MasterKey is a loaded master key and where it came from.
type MasterKey struct {
	Key       []byte
	Dev       bool   // a development key stored in DevFile
	Generated bool   // created by this call
	Origin    string // "file PATH", "environment" or "dev file PATH"
}

// Fingerprint identifies the key without revealing it, for logs and errors.
func (k MasterKey) Fingerprint() string { return fingerprint(k.Key) }

func fingerprint(key []byte) string {
	h := sha256.Sum256(append([]byte("chatpacket master key fingerprint v1"), key...))
	return hex.EncodeToString(h[:8])
}

// LoadMasterKey resolves src. storeDir is the store the key is for: a
// development key is only ever generated for a store that does not exist
// yet, so that a lost key file can never be silently replaced by a new key
// over data sealed under the old one.
func LoadMasterKey(src MasterKeySource, storeDir string) (MasterKey, error) {
	switch {
	case src.File != "" && src.Env != "":
		return MasterKey{}, errors.New("storage: master key given both as a file and in the environment; give one")
	case src.File != "":
		b, err := os.ReadFile(src.File)
		if err != nil {
			return MasterKey{}, fmt.Errorf("storage: read master key: %w", err)
		}
		key, err := decodeMasterKey(b)
		if err != nil {
			return MasterKey{}, fmt.Errorf("storage: master key file %s: %w", src.File, err)
		}
		return MasterKey{Key: key, Origin: "file " + src.File}, nil
	case src.Env != "":
		key, err := decodeMasterKey([]byte(src.Env))
		if err != nil {
			return MasterKey{}, fmt.Errorf("storage: CHATPACKET_MASTER_KEY: %w", err)
		}
		return MasterKey{Key: key, Origin: "environment"}, nil
	case src.DevFile == "":
		return MasterKey{}, fmt.Errorf("%w: give a key file or CHATPACKET_MASTER_KEY", ErrNoMasterKey)
	}

	b, err := os.ReadFile(src.DevFile)
	if err == nil {
		key, err := decodeMasterKey(b)
		if err != nil {
			return MasterKey{}, fmt.Errorf("storage: development master key %s: %w", src.DevFile, err)
		}
		return MasterKey{Key: key, Dev: true, Origin: "dev file " + src.DevFile}, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return MasterKey{}, fmt.Errorf("storage: read development master key: %w", err)
	}
	if exists, err := storeExists(storeDir); err != nil {
		return MasterKey{}, err
	} else if exists {
		return MasterKey{}, fmt.Errorf("%w: %s holds a store but no master key was given and %s is missing; refusing to generate a new key over existing data",
			ErrNoMasterKey, storeDir, src.DevFile)
	}
	key := make([]byte, MasterKeyLen)
	rand.Read(key)
	if err := os.MkdirAll(filepath.Dir(src.DevFile), 0o700); err != nil {
		return MasterKey{}, fmt.Errorf("storage: create development master key: %w", err)
	}
	if err := writeFileAtomic(src.DevFile, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		return MasterKey{}, fmt.Errorf("storage: write development master key: %w", err)
	}
	return MasterKey{Key: key, Dev: true, Generated: true, Origin: "dev file " + src.DevFile}, nil
}

// GenerateMasterKey returns a new random master key in the text form
// LoadMasterKey reads.
func GenerateMasterKey() string {
	key := make([]byte, MasterKeyLen)
	rand.Read(key)
	return hex.EncodeToString(key)
}

func decodeMasterKey(b []byte) ([]byte, error) {
	s := strings.TrimSpace(string(b))
	if k, err := hex.DecodeString(s); err == nil && len(k) == MasterKeyLen {
		return k, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil && len(k) == MasterKeyLen {
			return k, nil
		}
	}
	return nil, fmt.Errorf("want %d bytes as 64 hex digits or base64", MasterKeyLen)
}

// The key check. A store holds KEYCHECK, a short text file naming the
// fingerprint of its master key and a value sealed under that key. Open
// verifies it before it lets Pebble touch the directory, so a wrong key is
// refused with a clear error and nothing in the store is written.

const keyCheckFile = "KEYCHECK"

var keyCheckAD = []byte("chatpacket keycheck v1")

func masterAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// verifyOrCreateKeyCheck checks dir's KEYCHECK against key, or writes it
// when dir holds no store yet.
func verifyOrCreateKeyCheck(dir string, key []byte, aead cipher.AEAD) error {
	path := filepath.Join(dir, keyCheckFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if exists, err := storeExists(dir); err != nil {
			return err
		} else if exists {
			return fmt.Errorf("storage: %s holds a store but no %s file; refusing to open it with an unverified master key", dir, keyCheckFile)
		}
		sealed := sealWith(nil, nil, aead, MasterKeyID, 0, keyCheckAD, keyCheckAD)
		text := fmt.Sprintf("chatpacket keycheck v1\nfingerprint %s\n%s\n", fingerprint(key), base64.StdEncoding.EncodeToString(sealed))
		return writeFileAtomic(path, []byte(text), 0o600)
	}
	if err != nil {
		return fmt.Errorf("storage: read %s: %w", keyCheckFile, err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 3 || lines[0] != "chatpacket keycheck v1" || !strings.HasPrefix(lines[1], "fingerprint ") {
		return fmt.Errorf("storage: %s: %w: not a key check file", path, ErrCorrupt)
	}
	want := strings.TrimPrefix(lines[1], "fingerprint ")
	sealed, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil {
		return fmt.Errorf("storage: %s: %w: %v", path, ErrCorrupt, err)
	}
	e, err := parseEnvelope(sealed)
	if err == nil {
		var pt []byte
		pt, err = openWith(aead, e, keyCheckAD)
		if err == nil && !bytes.Equal(pt, keyCheckAD) {
			err = ErrCorrupt
		}
	}
	if err != nil {
		return fmt.Errorf("%w: the store in %s was created with master key %s; this key is %s",
			ErrWrongMasterKey, dir, want, fingerprint(key))
	}
	return nil
}

// storeExists reports whether dir holds a Pebble store.
func storeExists(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("storage: read %s: %w", dir, err)
	}
	for _, e := range entries {
		n := e.Name()
		if n == "CURRENT" || strings.HasPrefix(n, "MANIFEST-") || strings.HasPrefix(n, "marker.manifest") ||
			strings.HasSuffix(n, ".sst") || strings.HasSuffix(n, ".log") {
			return true, nil
		}
	}
	return false, nil
}

// writeFileAtomic writes data to path so that a crash leaves either the old
// file or the whole new one.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
