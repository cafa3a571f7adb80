package backup

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/storage"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"
)

// Source is a running node's side of a backup.
type Source struct {
	DB      *storage.DB
	Machine *shard.Machine
	// MasterKey is the node's master key: the backup's file keys derive
	// from it, and its fingerprint goes in the manifest.
	MasterKey []byte
	NodeID    string
}

// Progress is how far a backup or a restore is.
type Progress struct {
	Shard   int   `json:"shard"`  // shards done
	Shards  int   `json:"shards"` // of
	Records int64 `json:"records"`
	Bytes   int64 `json:"bytes"` // of the data file, sealed
}

// ErrMissingShards is Create's refusal on a node that holds no replica of
// some shards.
var ErrMissingShards = errors.New("backup: this node holds no replica of some shards")

// Create writes a backup of every shard into dir, which must not exist:
// the records of each shard's replicated tables, open, in a data file
// sealed under a key derived from the master key; the node's shred ledger
// beside it; and the manifest. It first catches this node's replica of
// each shard up with its leader, then reads every shard from one store
// snapshot, so each shard is exactly as it was after one log index (the
// manifest's applied_index) and holds every write acknowledged before
// Create was called. Records sealed under a shredded key are left out.
// Files are written into a temporary directory beside dir and renamed
// into place once durable, so dir is a whole backup or absent. progress,
// if set, is called after each shard.
func Create(ctx context.Context, src Source, dir string, now time.Time, progress func(Progress)) (*Manifest, error) {
	dir = filepath.Clean(dir)
	if _, err := os.Stat(dir); err == nil {
		return nil, fmt.Errorf("backup: %s exists; give a new directory", dir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("backup: %w", err)
	}
	shards := src.DB.Shards()
	var missing []int
	for s := range shards {
		err := src.Machine.CatchUp(ctx, uint16(s))
		switch {
		case errors.Is(err, shard.ErrNoReplica):
			missing = append(missing, s)
		case err != nil:
			return nil, fmt.Errorf("backup: shard %d: catch up with its leader: %w", s, err)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: %v of %d. Back up on a node that holds every shard (with no more nodes than replicas, every node does)",
			ErrMissingShards, missing, shards)
	}

	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+".partial-")
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()

	m := &Manifest{
		Format: FormatVersion, CreatedAt: now.UTC().Truncate(time.Second), NodeID: src.NodeID,
		MasterKey: storage.MasterKey{Key: src.MasterKey}.Fingerprint(), ShardCount: shards,
	}
	data, err := writeSealedFile(filepath.Join(tmp, DataFile), src.MasterKey, func(w io.Writer, counted func() int64) error {
		return exportShards(ctx, src.DB, w, m, func(p Progress) {
			p.Bytes = counted()
			if progress != nil {
				progress(p)
			}
		})
	})
	if err != nil {
		return nil, err
	}
	// The ledger is read after the data: it then names at least every key
	// shredded before any record was read, whatever the exchange of
	// ledgers between nodes brought in meanwhile.
	entries, err := src.DB.Ledger(ctx)
	if err != nil {
		return nil, fmt.Errorf("backup: read the shred ledger: %w", err)
	}
	m.LedgerEntries = len(entries)
	ledger, err := writeFile(filepath.Join(tmp, LedgerFile), func(w io.Writer) error { return WriteLedger(w, entries) })
	if err != nil {
		return nil, err
	}
	m.Files = []FileEntry{data, ledger}
	body, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if _, err := writeFile(filepath.Join(tmp, ManifestFile), func(w io.Writer) error {
		_, err := w.Write(append(body, '\n'))
		return err
	}); err != nil {
		return nil, err
	}
	if err := syncDir(tmp); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	done = true
	if err := syncDir(parent); err != nil {
		return nil, err
	}
	return m, nil
}

// exportShards writes every shard's records to w as length-delimited
// actorspb.SnapshotRecords, from one snapshot of the store, and fills in
// m's shard entries and counts.
func exportShards(ctx context.Context, db *storage.DB, w io.Writer, m *Manifest, progress func(Progress)) error {
	snap, err := db.NewSnapshot()
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer snap.Close()
	for s := range m.ShardCount {
		entry := ShardEntry{Shard: uint16(s)}
		applied := shard.AppliedKey(uint16(s))
		lower, upper := shard.ReplicatedRange(uint16(s))
		err := snap.Export(ctx, lower, upper, func(e storage.Exported) error {
			switch {
			case e.Plaintext == nil:
				m.Erased++
				return nil
			case slices.Equal(e.Key, applied):
				// The restored shard starts a raft history of its own;
				// Restore writes its applied index afresh.
				var rec actorspb.AppliedRecord
				if err := proto.Unmarshal(e.Plaintext, &rec); err != nil {
					return fmt.Errorf("applied index: %w", err)
				}
				entry.Applied = rec.Index
				return nil
			}
			entry.Records++
			_, err := protodelim.MarshalTo(w, &actorspb.SnapshotRecord{
				Key: e.Key, KeyId: e.Ref.ID[:], ParentKeyId: e.Ref.Parent[:], Plaintext: e.Plaintext,
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("backup: shard %d: %w", s, err)
		}
		m.Shards = append(m.Shards, entry)
		m.Records += entry.Records
		progress(Progress{Shard: s + 1, Shards: m.ShardCount, Records: m.Records})
	}
	return nil
}

// writeSealedFile writes a sealed file at path through fill, which gets
// the plaintext writer and a count of the sealed bytes so far.
func writeSealedFile(path string, masterKey []byte, fill func(w io.Writer, counted func() int64) error) (FileEntry, error) {
	return writeFile(path, func(w io.Writer) error {
		cw := &countingWriter{w: w}
		sw, err := newSealWriter(cw, masterKey, DataFile)
		if err != nil {
			return err
		}
		bw := bufio.NewWriterSize(sw, chunkSize)
		if err := fill(bw, func() int64 { return cw.n + int64(bw.Buffered()) }); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		return sw.Close()
	})
}

// writeFile creates path (0600), writes it through fill, syncs it and
// returns its size and SHA-256.
func writeFile(path string, fill func(io.Writer) error) (FileEntry, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return FileEntry{}, fmt.Errorf("backup: %w", err)
	}
	h := sha256.New()
	cw := &countingWriter{w: io.MultiWriter(f, h)}
	bw := bufio.NewWriterSize(cw, 256<<10)
	err = fill(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return FileEntry{}, fmt.Errorf("backup: write %s: %w", filepath.Base(path), err)
	}
	return FileEntry{Name: filepath.Base(path), Bytes: cw.n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("backup: sync %s: %w", dir, err)
	}
	return nil
}
