package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chatpacket/chatpacket/cluster/admin"
	"github.com/chatpacket/chatpacket/cluster/backup"
	"github.com/chatpacket/chatpacket/storage"
	"github.com/spf13/cobra"
)

// The backup commands: `admin backup` (through a running node's socket),
// `admin restore` (offline, into a new data dir) and `admin ledger export`
// (the running node's shred ledger, for restoring an older backup).

const backupHelp = `A backup is a directory of three files: data.cpb, every shard's records
encrypted (AES-256-GCM, under a key derived from the node's master key and a
random salt; any change or truncation is detected), ledger.txt, the node's
shred ledger (ids of erased keys and when, no personal data), and
manifest.json (time, node, shard count, per-shard raft index and record
count, each file's size and SHA-256). Data already erased when the backup
runs is left out of it. Backups are kept at most 90 days: the retention job
deletes older ones.`

func addBackupCommands(adminCmd *cobra.Command) {
	adminCmd.AddCommand(newAdminBackupCommand(), newAdminRestoreCommand(), newAdminLedgerCommand())
}

func newAdminBackupCommand() *cobra.Command {
	var dataDir, out string
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Write an encrypted backup of every shard through a running node",
		Long: `Ask the node of --data-dir to write a backup of every shard: each shard as
it was after one raft log index, holding every write acknowledged before the
command started. The node writes it into --out (default
DATA_DIR/backups/<UTC time>, which must not exist) through a temporary
directory renamed into place once complete, so a directory with a manifest
is always a whole backup. Progress shows per shard on stderr.

The node must hold a replica of every shard: with no more nodes than
replicas (3 by default) every node does; with more, it refuses and names the
shards it lacks.

` + backupHelp + `

Restore with 'chatpacket admin restore'; keep the master key: a backup opens
only with the key of the node that made it.

` + adminSocketHelp,
		Example: `  chatpacket admin backup --data-dir /var/lib/chatpacket
  chatpacket admin backup --data-dir /var/lib/chatpacket --out /mnt/backups/2026-06-01`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out != "" {
				abs, err := filepath.Abs(out)
				if err != nil {
					return err
				}
				out = abs
			}
			bar := newProgressBar(cmd.ErrOrStderr(), "backup")
			res, err := admin.NewClient(dataDir).Backup(cmd.Context(), out, func(p admin.BackupProgress) { bar.show(p.Progress) })
			bar.end()
			if err != nil {
				return err
			}
			m := res.Manifest
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "backup %s: %d shards, %d records (%d erased left out), %d ledger entries, %s in %.1fs\n",
				res.Dir, m.ShardCount, m.Records, m.Erased, m.LedgerEntries, sizeOf(m), res.Elapsed)
			return err
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "data dir of the node to back up (its --data-dir)")
	cmd.Flags().StringVar(&out, "out", "", "directory to write the backup into; must not exist (default: DATA_DIR/backups/<UTC time>)")
	return cmd
}

func sizeOf(m *backup.Manifest) string {
	var n int64
	for _, f := range m.Files {
		n += f.Bytes
	}
	return humanBytes(n)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func newAdminRestoreCommand() *cobra.Command {
	var from, dataDir, masterKeyFile, raftAddr string
	var ledgers []string
	cmd := &cobra.Command{
		Use:   "restore --from BACKUP_DIR --data-dir NEW_DIR",
		Short: "Make a new node's data dir from a backup, re-applying every erasure since",
		Long: `Restore a backup into a new data dir, offline (no node runs on it), then
start a node on it with 'chatpacket serve --data-dir NEW_DIR' and the same
master key. That node is the first node of a new cluster and holds every
shard; start others with --join and they get every shard's data from it.

Erasure survives restores. Before any record is written, the shred ledger of
the backup and every ledger given with --ledger (a newer backup's
ledger.txt, or 'chatpacket admin ledger export' from a live node: give the
newest you have) are applied, and every record sealed under a key any of
them names is left out: a person erased after the backup was made does not
come back.

Nothing is written until everything is checked: --data-dir must be absent or
empty, the master key must be the backup's, and every file must match the
manifest's SHA-256 and decrypt whole (a changed or cut file is refused).

` + backupHelp,
		Example: `  chatpacket admin restore --from /mnt/backups/20260601T020000Z \
      --ledger /mnt/backups/20260615T020000Z/ledger.txt \
      --data-dir /var/lib/chatpacket-restored --master-key-file /etc/chatpacket/master.key
  chatpacket serve --data-dir /var/lib/chatpacket-restored --master-key-file /etc/chatpacket/master.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || dataDir == "" {
				return errors.New("give --from (the backup directory) and --data-dir (a new, empty data dir)")
			}
			key, err := restoreMasterKey(masterKeyFile)
			if err != nil {
				return err
			}
			bar := newProgressBar(cmd.ErrOrStderr(), "restore")
			res, err := backup.Restore(cmd.Context(), backup.RestoreOptions{
				From: from, DataDir: dataDir, MasterKey: key, Ledgers: ledgers, RaftAddr: raftAddr,
				Progress: bar.show, Logger: slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn})),
			})
			bar.end()
			if err != nil {
				return err
			}
			keyFlag := "the same master key (CHATPACKET_MASTER_KEY)"
			if masterKeyFile != "" {
				keyFlag = "--master-key-file " + masterKeyFile
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), `restored %s (made %s by node %s) into %s:
  %d records, %d left out as erased by %d ledger entries; node id %s
start it with: chatpacket serve --data-dir %s --raft %s and %s
`, from, res.Manifest.CreatedAt.Format(time.RFC3339), res.Manifest.NodeID, dataDir,
				res.Records, res.Erased, res.LedgerEntries, res.NodeID, dataDir, raftAddr, keyFlag)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "backup directory to restore (the one holding manifest.json)")
	f.StringVar(&dataDir, "data-dir", "", "new data dir to restore into: absent or empty")
	f.StringArrayVar(&ledgers, "ledger", nil, "a newer shred ledger file to apply too (repeatable): another backup's ledger.txt, or 'chatpacket admin ledger export'")
	f.StringVar(&masterKeyFile, "master-key-file", "", "file holding the master key the backup was made under (default: CHATPACKET_MASTER_KEY)")
	f.StringVar(&raftAddr, "raft", "127.0.0.1:8300", "raft address the restored node will listen on (its serve --raft)")
	return cmd
}

// restoreMasterKey loads the key as serve does, but never generates one:
// a backup opens only with the key it was made under.
func restoreMasterKey(file string) ([]byte, error) {
	env := os.Getenv("CHATPACKET_MASTER_KEY")
	if file == "" && env == "" {
		return nil, errors.New("give the master key the backup was made under: --master-key-file FILE or CHATPACKET_MASTER_KEY " +
			"(a node on a development key keeps it in DATA_DIR/master.key)")
	}
	mk, err := storage.LoadMasterKey(storage.MasterKeySource{File: file, Env: env}, "")
	if err != nil {
		return nil, err
	}
	return mk.Key, nil
}

func newAdminLedgerCommand() *cobra.Command {
	ledger := &cobra.Command{
		Use:   "ledger",
		Short: "The shred ledger: which keys were erased, and when",
	}
	var dataDir, out string
	export := &cobra.Command{
		Use:   "export",
		Short: "Write the running node's shred ledger, for restoring an older backup",
		Long: `Write the shred ledger of the node of --data-dir to --out (default: stdout):
one line per erased key (its id and when it was shredded), no personal data,
closed by a line with the count and a SHA-256, so that a cut or edited file
is refused. Give it to 'chatpacket admin restore --ledger' so that nothing
erased since a backup comes back when that backup is restored.

` + adminSocketHelp,
		Example: `  chatpacket admin ledger export --data-dir /var/lib/chatpacket --out ledger-now.txt`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			b, err := admin.NewClient(dataDir).Ledger(ctx)
			if err != nil {
				return err
			}
			if out == "" {
				_, err = cmd.OutOrStdout().Write(b)
				return err
			}
			if err := os.WriteFile(out, b, 0o600); err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "ledger of %d entries written to %s\n", strings.Count(string(b), "\n")-2, out)
			return err
		},
	}
	export.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "data dir of the node to ask (its --data-dir)")
	export.Flags().StringVar(&out, "out", "", "file to write (mode 0600; default: stdout)")
	ledger.AddCommand(export)
	return ledger
}

// progressBar draws a backup's or restore's progress on w: a bar redrawn
// in place on a terminal, one line per tenth of the shards otherwise (a
// log file or a pipe).
type progressBar struct {
	w        io.Writer
	what     string
	terminal bool
	start    time.Time
	last     int // shards done at the last line drawn
	drawn    bool
}

func newProgressBar(w io.Writer, what string) *progressBar {
	b := &progressBar{w: w, what: what, start: time.Now(), last: -1}
	if f, ok := w.(*os.File); ok {
		if info, err := f.Stat(); err == nil && info.Mode()&os.ModeCharDevice != 0 {
			b.terminal = true
		}
	}
	return b
}

func (b *progressBar) show(p backup.Progress) {
	if p.Shards == 0 || p.Shard == b.last {
		return
	}
	step := max(p.Shards/10, 1)
	if !b.terminal && p.Shard != p.Shards && p.Shard/step == b.last/step {
		return
	}
	b.last = p.Shard
	secs := time.Since(b.start).Seconds()
	rate := ""
	if secs > 0 {
		rate = fmt.Sprintf(" %s/s", humanBytes(int64(float64(p.Bytes)/secs)))
	}
	line := fmt.Sprintf("%s: shard %d/%d, %d records, %s%s", b.what, p.Shard, p.Shards, p.Records, humanBytes(p.Bytes), rate)
	if !b.terminal {
		fmt.Fprintln(b.w, line)
		return
	}
	const width = 30
	filled := width * p.Shard / p.Shards
	fmt.Fprintf(b.w, "\r[%s%s] %s\x1b[K", strings.Repeat("=", filled), strings.Repeat(" ", width-filled), line)
	b.drawn = true
}

// end ends the bar's line on a terminal.
func (b *progressBar) end() {
	if b.terminal && b.drawn {
		fmt.Fprintln(b.w)
	}
}
