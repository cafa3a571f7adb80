package backup

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// The manifest: manifest.json beside the files of a backup, in clear (it
// holds no personal data: counts, sizes, checksums, ids of nodes). Restore
// checks every file against it before it writes anything; Prune reads its
// created_at.

// Names of the files of a backup directory.
const (
	ManifestFile = "manifest.json"
	DataFile     = "data.cpb"   // the shards' records, sealed (crypt.go)
	LedgerFile   = "ledger.txt" // the shred ledger when the backup was made (ledger.go)
)

// FormatVersion is the backup format this build writes and reads.
const FormatVersion = 1

// Manifest describes one backup.
type Manifest struct {
	Format    int       `json:"format"`
	CreatedAt time.Time `json:"created_at"`
	NodeID    string    `json:"node_id"`
	// MasterKey is the fingerprint of the master key the data file is
	// sealed under (storage.MasterKey.Fingerprint): restore refuses
	// another key with a clear error before reading the data.
	MasterKey  string `json:"master_key_fingerprint"`
	ShardCount int    `json:"shard_count"`
	// Records is how many records the data file holds; Erased how many
	// were left out because their key was shredded when the backup ran.
	Records       int64        `json:"records"`
	Erased        int64        `json:"erased_left_out"`
	LedgerEntries int          `json:"ledger_entries"`
	Shards        []ShardEntry `json:"shards"`
	Files         []FileEntry  `json:"files"`
}

// ShardEntry is one shard as the backup holds it.
type ShardEntry struct {
	Shard uint16 `json:"shard"`
	// Applied is the raft log index the shard's state was at on the node.
	Applied uint64 `json:"applied_index"`
	Records int64  `json:"records"`
}

// FileEntry is one file of the backup with its size and SHA-256.
type FileEntry struct {
	Name   string `json:"name"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// ReadManifest reads dir's manifest.
func ReadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("backup: %s is not a backup (no %s)", dir, ManifestFile)
	}
	if err != nil {
		return nil, fmt.Errorf("backup: read manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("backup: %s: %w", filepath.Join(dir, ManifestFile), err)
	}
	switch {
	case m.Format != FormatVersion:
		return nil, fmt.Errorf("backup: %s is format %d; this build reads format %d", dir, m.Format, FormatVersion)
	case m.CreatedAt.IsZero():
		return nil, fmt.Errorf("backup: %s: manifest has no created_at", dir)
	case m.ShardCount < 1 || len(m.Shards) != m.ShardCount:
		return nil, fmt.Errorf("backup: %s: manifest lists %d shards of %d", dir, len(m.Shards), m.ShardCount)
	}
	return &m, nil
}

// file returns the manifest's entry of name.
func (m *Manifest) file(name string) (FileEntry, bool) {
	for _, f := range m.Files {
		if f.Name == name {
			return f, true
		}
	}
	return FileEntry{}, false
}

// Verify checks that every file the manifest lists is in dir with its size
// and SHA-256, and that the data and ledger files are among them.
func (m *Manifest) Verify(dir string) error {
	for _, need := range []string{DataFile, LedgerFile} {
		if _, ok := m.file(need); !ok {
			return fmt.Errorf("backup: %s: manifest lists no %s", dir, need)
		}
	}
	for _, fe := range m.Files {
		if fe.Name != filepath.Base(fe.Name) || fe.Name == ManifestFile {
			return fmt.Errorf("backup: %s: manifest lists a bad file name %q", dir, fe.Name)
		}
		got, err := hashFile(filepath.Join(dir, fe.Name))
		if err != nil {
			return err
		}
		if got.Bytes != fe.Bytes || got.SHA256 != fe.SHA256 {
			return fmt.Errorf("%w: %s is %d bytes with SHA-256 %s; the manifest says %d bytes, %s",
				ErrTampered, filepath.Join(dir, fe.Name), got.Bytes, got.SHA256, fe.Bytes, fe.SHA256)
		}
	}
	return nil
}

func hashFile(path string) (FileEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return FileEntry{}, fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return FileEntry{}, fmt.Errorf("backup: read %s: %w", path, err)
	}
	return FileEntry{Name: filepath.Base(path), Bytes: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}
