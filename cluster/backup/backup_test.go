package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/cluster/replica"
	"github.com/chatpacket/chatpacket/storage"
)

// scenario is a node with two visitors in one conversation each, backed up
// before and after the first visitor's erasure.
type scenario struct {
	key                  []byte
	node                 *node
	nodeDir, backups     string
	before, after        string // backup dirs
	tenant               storage.ID
	erased, kept         storage.ID // visitors
	erasedConv, keptConv storage.ID
}

const canary = "canary-7f3a9c-only-in-this-test"

func newScenario(t *testing.T) *scenario {
	t.Helper()
	ctx := context.Background()
	s := &scenario{key: newKey(), nodeDir: t.TempDir(), backups: filepath.Join(t.TempDir(), "backups"),
		tenant: storage.NewID(), erased: storage.NewID(), kept: storage.NewID(), erasedConv: storage.NewID(), keptConv: storage.NewID()}
	s.node = startNode(t, s.nodeDir, s.key, true)
	for i, body := range []string{canary, "second " + canary} {
		if _, err := s.node.m.Apply(ctx, post(s.tenant, s.erasedConv, s.erased, string(rune('a'+i)), body)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.node.m.Apply(ctx, post(s.tenant, s.keptConv, s.kept, "k", "keep me")); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	s.before = filepath.Join(s.backups, "before")
	mustCreate(t, s.node, s.key, s.before, now)
	if err := s.node.m.Shred(ctx, s.erased, now, storage.SubjectKey(s.tenant, s.erased).ID); err != nil {
		t.Fatal(err)
	}
	s.after = filepath.Join(s.backups, "after")
	mustCreate(t, s.node, s.key, s.after, now)
	return s
}

// TestRestoreReappliesNewerLedger is the promise: a backup taken before a
// visitor's erasure, restored with a newer ledger, does not bring the
// visitor back, while the rest of the data is there; restored without it
// (as a control that the test sees data at all) the canary reads back; and
// no file of any backup, of the node or of the restored data dirs holds
// the canary in clear.
func TestRestoreReappliesNewerLedger(t *testing.T) {
	s := newScenario(t)
	if got := bodies(t, s.node.m, s.tenant, s.erasedConv); !slices.Equal(got, []string{"<erased>", "<erased>"}) {
		t.Fatalf("on the live node after the shred: %q; want both erased", got)
	}

	withLedger := t.TempDir()
	res := restore(t, s.before, withLedger, s.key, filepath.Join(s.after, LedgerFile))
	// The visitor's key seals their messages and more (client ids, their
	// list of conversations): the backup made after the shred left out
	// exactly those, and so must the restore.
	after, err := ReadManifest(s.after)
	if err != nil {
		t.Fatal(err)
	}
	if res.Erased < 2 || res.Erased != after.Erased || res.LedgerEntries != 1 || after.LedgerEntries != 1 {
		t.Errorf("restore with the newer ledger left out %d records by %d ledger entries; the backup after the shred left out %d by %d; want the same, at least the 2 messages, by 1",
			res.Erased, res.LedgerEntries, after.Erased, after.LedgerEntries)
	}
	withoutLedger := t.TempDir()
	restore(t, s.before, withoutLedger, s.key)

	// The canary check runs on closed stores, before they are started
	// (Pebble's files are then all there is).
	dirs := []string{s.backups, s.nodeDir, withLedger, withoutLedger}
	if hits := filesContaining(t, []byte(canary), dirs...); len(hits) > 0 {
		t.Errorf("the canary is in clear in %q", hits)
	}
	for _, dir := range []string{s.before, s.after} {
		for _, f := range []string{"", DataFile, LedgerFile, ManifestFile} {
			info, err := os.Stat(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if want := os.FileMode(0o600) | info.Mode()&os.ModeDir; f == "" && info.Mode().Perm() != 0o700 || f != "" && info.Mode() != want {
				t.Errorf("%s: mode %v; want 0700 for the dir, 0600 for files", filepath.Join(dir, f), info.Mode())
			}
		}
	}

	restored := startNode(t, withLedger, s.key, true)
	if got := bodies(t, restored.m, s.tenant, s.erasedConv); len(got) != 0 {
		t.Errorf("erased visitor's messages after restore with the newer ledger: %q; want none", got)
	}
	if got := bodies(t, restored.m, s.tenant, s.keptConv); !slices.Equal(got, []string{"keep me"}) {
		t.Errorf("other visitor's messages after restore: %q; want [keep me]", got)
	}
	ledger, err := restored.db.Ledger(context.Background())
	if err != nil || len(ledger) != 1 || ledger[0].KeyID != storage.SubjectKey(s.tenant, s.erased).ID {
		t.Errorf("restored ledger = %v, %v; want the erased visitor's key", ledger, err)
	}
	// The restored node takes writes, after the snapshot's index.
	if _, err := restored.m.Apply(context.Background(), post(s.tenant, s.keptConv, s.kept, "k2", "after restore")); err != nil {
		t.Fatal(err)
	}
	if got := bodies(t, restored.m, s.tenant, s.keptConv); !slices.Equal(got, []string{"keep me", "after restore"}) {
		t.Errorf("after a write on the restored node: %q", got)
	}

	control := startNode(t, withoutLedger, s.key, true)
	if got := bodies(t, control.m, s.tenant, s.erasedConv); !slices.Equal(got, []string{canary, "second " + canary}) {
		t.Errorf("restore without the newer ledger: %q; want the canary back (the control)", got)
	}

}

// TestRestoreRefuses: a wrong master key, a non-empty data dir, a changed
// or cut data file (even with a manifest made to match), a cut ledger: each
// is refused before the data dir changes.
func TestRestoreRefuses(t *testing.T) {
	s := newScenario(t)
	ctx := context.Background()
	try := func(from, dataDir string, key []byte, ledgers ...string) error {
		_, err := Restore(ctx, RestoreOptions{From: from, DataDir: dataDir, MasterKey: key, Ledgers: ledgers, RaftAddr: "127.0.0.1:1", Logger: quiet})
		return err
	}
	empty := filepath.Join(t.TempDir(), "new")
	if err := try(s.before, empty, newKey()); !errors.Is(err, storage.ErrWrongMasterKey) {
		t.Errorf("wrong key: %v; want ErrWrongMasterKey", err)
	}
	busy := t.TempDir()
	os.WriteFile(filepath.Join(busy, "something"), []byte("x"), 0o600)
	if err := try(s.before, busy, s.key); err == nil {
		t.Error("restore into a non-empty dir succeeded")
	}

	copyDir := func(t *testing.T) string {
		t.Helper()
		dst := t.TempDir()
		for _, f := range []string{DataFile, LedgerFile, ManifestFile} {
			b, err := os.ReadFile(filepath.Join(s.before, f))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(dst, f), b, 0o600)
		}
		return dst
	}
	// rehash makes the manifest match the files again, as someone who
	// tampers on purpose would.
	rehash := func(t *testing.T, dir string) {
		t.Helper()
		m, err := ReadManifest(dir)
		if err != nil {
			t.Fatal(err)
		}
		for i, f := range m.Files {
			if m.Files[i], err = hashFile(filepath.Join(dir, f.Name)); err != nil {
				t.Fatal(err)
			}
		}
		writeManifest(t, dir, m)
	}
	for name, damage := range map[string]func(b []byte) []byte{
		"flipped": func(b []byte) []byte { b[len(b)/2] ^= 1; return b },
		"cut":     func(b []byte) []byte { return b[:len(b)-1] },
		"no final chunk": func(b []byte) []byte {
			return b[:headerSize] // a file with only its header
		},
	} {
		for _, matching := range []bool{false, true} {
			dir := copyDir(t)
			b, _ := os.ReadFile(filepath.Join(dir, DataFile))
			os.WriteFile(filepath.Join(dir, DataFile), damage(b), 0o600)
			if matching {
				rehash(t, dir)
			}
			if err := try(dir, empty, s.key); !errors.Is(err, ErrTampered) {
				t.Errorf("%s data file (manifest rehashed: %v): %v; want ErrTampered", name, matching, err)
			}
		}
	}
	cutLedger := filepath.Join(t.TempDir(), "ledger.txt")
	b, _ := os.ReadFile(filepath.Join(s.after, LedgerFile))
	os.WriteFile(cutLedger, b[:len(b)-20], 0o600)
	if err := try(s.before, empty, s.key, cutLedger); err == nil {
		t.Error("a cut ledger was accepted")
	}
	if _, err := os.Stat(empty); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after refused restores, %s: %v; want it never created", empty, err)
	}
	if entries, _ := os.ReadDir(busy); len(entries) != 1 {
		t.Errorf("the non-empty dir now holds %d entries; want it untouched", len(entries))
	}
}

// TestRestoredNodeServesJoiner: a second node that joins a restored node
// gets every shard's state from it (by raft snapshot: the restored log
// does not reach back), and then the writes that follow.
func TestRestoredNodeServesJoiner(t *testing.T) {
	if testing.Short() {
		t.Skip("two nodes and a placement change")
	}
	s := newScenario(t)
	dataDir := t.TempDir()
	restore(t, s.before, dataDir, s.key, filepath.Join(s.after, LedgerFile))
	a := startNode(t, dataDir, s.key, true)
	b := startNode(t, t.TempDir(), newKey(), false)
	members := []replica.Member{a.member(), b.member()}
	a.groups.SetMembers(members)
	b.groups.SetMembers(members)
	waitFor(t, 30*time.Second, func() error {
		if got := bodies(t, b.m, s.tenant, s.keptConv); !slices.Equal(got, []string{"keep me"}) {
			return fmt.Errorf("the joiner reads %q; want [keep me]", got)
		}
		return nil
	})
	if got := bodies(t, b.m, s.tenant, s.erasedConv); len(got) != 0 {
		t.Errorf("the joiner reads the erased visitor's messages %q; want none", got)
	}
	if _, err := a.m.Apply(context.Background(), post(s.tenant, s.keptConv, s.kept, "k2", "after the join")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() error {
		if got := bodies(t, b.m, s.tenant, s.keptConv); !slices.Equal(got, []string{"keep me", "after the join"}) {
			return fmt.Errorf("the joiner reads %q after a new write", got)
		}
		return nil
	})
}

// TestPrune removes a backup made 91 days ago and a partial one as old,
// and keeps one of 89 days and anything that is no backup.
func TestPrune(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	for name, age := range map[string]time.Duration{"old": 91 * 24 * time.Hour, "young": 89 * 24 * time.Hour} {
		os.Mkdir(filepath.Join(dir, name), 0o700)
		writeManifest(t, filepath.Join(dir, name), &Manifest{Format: FormatVersion, CreatedAt: now.Add(-age), ShardCount: 1, Shards: []ShardEntry{{}}})
	}
	partial := filepath.Join(dir, ".x.partial-123")
	os.Mkdir(partial, 0o700)
	os.Chtimes(partial, now.Add(-100*24*time.Hour), now.Add(-100*24*time.Hour))
	os.Mkdir(filepath.Join(dir, "not-a-backup"), 0o700)
	removed, err := Prune(dir, now, MaxAge)
	slices.Sort(removed)
	if want := []string{partial, filepath.Join(dir, "old")}; err != nil || !slices.Equal(removed, want) {
		t.Fatalf("Prune = %q, %v; want %q", removed, err, want)
	}
	for _, kept := range []string{"young", "not-a-backup"} {
		if _, err := os.Stat(filepath.Join(dir, kept)); err != nil {
			t.Errorf("%s: %v; want it kept", kept, err)
		}
	}
	if removed, err := Prune(filepath.Join(dir, "absent"), now, MaxAge); err != nil || len(removed) > 0 {
		t.Errorf("Prune of a missing dir = %q, %v; want nothing", removed, err)
	}
}

func writeManifest(t *testing.T, dir string, m *Manifest) {
	t.Helper()
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
}
