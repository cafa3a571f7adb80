package backup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/cluster/raftstore"
	"github.com/chatpacket/chatpacket/cluster/replica"
	"github.com/chatpacket/chatpacket/storage"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protodelim"
)

// RestoreOptions says what to restore where.
type RestoreOptions struct {
	// From is the backup directory (the one holding manifest.json).
	From string
	// DataDir is the new node's data dir: absent or empty. The store goes
	// in DataDir/store, where `chatpacket serve --data-dir` looks.
	DataDir string
	// MasterKey must be the key the backup was made under; the restored
	// store is sealed under it too.
	MasterKey []byte
	// Ledgers are shred ledger files newer than the backup (another
	// backup's ledger.txt, `chatpacket admin ledger export`): their union
	// with the backup's own is applied before any record is written.
	Ledgers []string
	// RaftAddr is the raft address the node will listen on (serve's
	// --raft). A node started at another address corrects its
	// configuration once it leads its shards.
	RaftAddr string
	// Progress, if set, is called as records are written.
	Progress func(Progress)
	// Logger gets Pebble's messages. Default: slog.Default().
	Logger *slog.Logger
}

// Restored is what Restore did.
type Restored struct {
	Manifest *Manifest
	NodeID   string
	Records  int64 // written
	// Erased is how many records of the backup were left out because a
	// ledger names their key.
	Erased        int64
	LedgerEntries int // in the union of the ledgers applied
}

// restoreBatch bounds the records of one store batch.
const restoreBatch = 1024

// snapshotTerm is the raft term of every restored shard's first snapshot:
// the restored node starts a new history of each shard.
const snapshotTerm = 1

// Restore makes a new node's store from a backup, offline. It checks
// everything it can before it writes anything: the manifest, the master
// key, every file's size and SHA-256, every ledger file; then it applies
// the union of the ledgers to the new store, imports every record whose
// key no ledger names, and makes each shard's raft state: a raft snapshot
// of the shard's restored state, with this node as its only voter. The
// node started on DataDir leads every shard alone; nodes that join it get
// each shard's state from that snapshot (their log starts after it).
// On error the data dir is left as it was found.
func Restore(ctx context.Context, opts RestoreOptions) (*Restored, error) {
	m, err := ReadManifest(opts.From)
	if err != nil {
		return nil, err
	}
	if fp := (storage.MasterKey{Key: opts.MasterKey}).Fingerprint(); fp != m.MasterKey {
		return nil, fmt.Errorf("%w: the backup was made under the master key with fingerprint %s; this one is %s",
			storage.ErrWrongMasterKey, m.MasterKey, fp)
	}
	if err := m.Verify(opts.From); err != nil {
		return nil, err
	}
	ledgers := make([][]storage.ShredRecord, 0, 1+len(opts.Ledgers))
	for _, path := range append([]string{filepath.Join(opts.From, LedgerFile)}, opts.Ledgers...) {
		l, err := ReadLedger(path)
		if err != nil {
			return nil, err
		}
		ledgers = append(ledgers, l)
	}
	ledger := MergeLedgers(ledgers...)
	if err := checkDataFile(opts.From, opts.MasterKey); err != nil {
		return nil, err
	}

	created, err := claimDataDir(opts.DataDir)
	if err != nil {
		return nil, err
	}
	storeDir := filepath.Join(opts.DataDir, "store")
	res, err := restoreInto(ctx, opts, m, ledger, storeDir)
	if err != nil {
		if created {
			os.RemoveAll(opts.DataDir)
		} else {
			os.RemoveAll(storeDir)
		}
		return nil, err
	}
	return res, nil
}

// checkDataFile reads the whole data file through authentication, so that
// a damaged backup is refused before the new store exists.
func checkDataFile(dir string, masterKey []byte) error {
	f, err := os.Open(filepath.Join(dir, DataFile))
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	r, err := newOpenReader(bufio.NewReaderSize(f, 256<<10), masterKey, DataFile)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, r)
	return err
}

// claimDataDir makes sure dir is empty, creating it (0700) when absent.
func claimDataDir(dir string) (created bool, err error) {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return false, fmt.Errorf("backup: %w", err)
		}
		return true, nil
	case err != nil:
		return false, fmt.Errorf("backup: %w", err)
	case len(entries) > 0:
		return false, fmt.Errorf("backup: %s is not empty: restore only into a new or empty data dir, never over a node's data", dir)
	}
	return false, nil
}

func restoreInto(ctx context.Context, opts RestoreOptions, m *Manifest, ledger []storage.ShredRecord, storeDir string) (*Restored, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	db, err := storage.Open(ctx, storage.Options{Dir: storeDir, MasterKey: opts.MasterKey, Shards: m.ShardCount, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("backup: create the store: %w", err)
	}
	defer db.Close()
	res := &Restored{Manifest: m, LedgerEntries: len(ledger)}
	// The ledger first: from here on no key it names can seal anything.
	if _, err := db.ApplyLedger(ctx, ledger); err != nil {
		return nil, fmt.Errorf("backup: apply the shred ledger: %w", err)
	}
	shredded := make(map[storage.KeyID]bool, len(ledger))
	for _, e := range ledger {
		shredded[e.KeyID] = true
	}
	if err := importRecords(ctx, db, opts, m, shredded, res); err != nil {
		return nil, err
	}
	if res.NodeID, err = replica.NodeID(ctx, db); err != nil {
		return nil, err
	}
	if err := makeRaftState(ctx, db, m, res.NodeID, opts.RaftAddr); err != nil {
		return nil, err
	}
	if err := db.Close(); err != nil {
		return nil, err
	}
	return res, nil
}

// importRecords writes the data file's records into db, leaving out those
// sealed under a shredded key (or under a subject or month key of a
// shredded tenant).
func importRecords(ctx context.Context, db *storage.DB, opts RestoreOptions, m *Manifest, shredded map[storage.KeyID]bool, res *Restored) error {
	f, err := os.Open(filepath.Join(opts.From, DataFile))
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	cr := &countingReader{r: f}
	or, err := newOpenReader(bufio.NewReaderSize(cr, 256<<10), opts.MasterKey, DataFile)
	if err != nil {
		return err
	}
	r := bufio.NewReaderSize(or, chunkSize)
	b := db.NewBatch()
	defer func() { b.Close() }()
	pending, shardDone := 0, -1
	report := func(s int) {
		if opts.Progress != nil && s > shardDone {
			shardDone = s
			opts.Progress(Progress{Shard: s, Shards: m.ShardCount, Records: res.Records, Bytes: cr.n})
		}
	}
	for {
		var rec actorspb.SnapshotRecord
		err := protodelim.UnmarshalFrom(r, &rec)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("backup: read record %d: %w", res.Records+res.Erased+1, err)
		}
		e := storage.Exported{Key: rec.Key, Plaintext: rec.Plaintext}
		if len(rec.Key) < 3 || len(rec.KeyId) != len(e.Ref.ID) || len(rec.ParentKeyId) != len(e.Ref.Parent) {
			return fmt.Errorf("%w: record %d is malformed", ErrTampered, res.Records+res.Erased+1)
		}
		if e.Plaintext == nil {
			e.Plaintext = []byte{} // an empty message: open, not erased
		}
		copy(e.Ref.ID[:], rec.KeyId)
		copy(e.Ref.Parent[:], rec.ParentKeyId)
		s := int(rec.Key[0])<<8 | int(rec.Key[1])
		if s >= m.ShardCount {
			return fmt.Errorf("%w: a record of shard %d in a backup of %d shards", ErrTampered, s, m.ShardCount)
		}
		report(s)
		if shredded[e.Ref.ID] || shredded[e.Ref.Parent] {
			res.Erased++
			continue
		}
		switch err := b.Import(ctx, e); {
		case errors.Is(err, storage.ErrErased):
			res.Erased++
			continue
		case err != nil:
			return fmt.Errorf("backup: import a record of shard %d: %w", s, err)
		}
		res.Records++
		if pending++; pending == restoreBatch {
			if err := b.CommitNoSync(ctx); err != nil {
				return err
			}
			b, pending = db.NewBatch(), 0
		}
	}
	if err := b.Commit(ctx); err != nil {
		return err
	}
	report(m.ShardCount)
	return nil
}

// makeRaftState gives every shard the raft state of a group that has
// applied everything up to the backup's index: the FSM's applied index,
// a raft snapshot at that index whose configuration is this node alone,
// and the current term. Raft (which does not restore snapshots at start,
// see replica.Config.FSM) takes its last index and configuration from the
// snapshot, so the node leads each shard alone and new entries follow the
// snapshot; a node that joins is sent the snapshot, since the log does
// not reach back before it.
func makeRaftState(ctx context.Context, db *storage.DB, m *Manifest, nodeID, raftAddr string) error {
	conf := raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter, ID: raft.ServerID(nodeID), Address: raft.ServerAddress(raftAddr),
	}}}
	for _, se := range m.Shards {
		index := max(se.Applied, 1)
		if err := db.Put(ctx, shard.AppliedKey(se.Shard), storage.RaftLogKey, &actorspb.AppliedRecord{Index: index}); err != nil {
			return fmt.Errorf("backup: shard %d: applied index: %w", se.Shard, err)
		}
		fsm, err := shard.NewFSM(db, se.Shard)
		if err != nil {
			return err
		}
		snaps, err := raftstore.NewSnapshots(db, se.Shard, replica.DefaultSnapshotRetain)
		if err != nil {
			return err
		}
		fsnap, err := fsm.Snapshot()
		if err != nil {
			return fmt.Errorf("backup: shard %d: %w", se.Shard, err)
		}
		sink, err := snaps.Create(raft.SnapshotVersionMax, index, snapshotTerm, conf, index, nil)
		if err == nil {
			err = fsnap.Persist(sink) // closes or cancels the sink
		}
		fsnap.Release()
		if err != nil {
			return fmt.Errorf("backup: shard %d: raft snapshot: %w", se.Shard, err)
		}
		// raft's key of the current term in its stable store.
		if err := raftstore.New(db, se.Shard).SetUint64([]byte("CurrentTerm"), snapshotTerm); err != nil {
			return fmt.Errorf("backup: shard %d: raft term: %w", se.Shard, err)
		}
	}
	return nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
