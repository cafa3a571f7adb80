package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Write-ahead logs and shredding.
//
// Pebble recycles WAL files: an obsolete log is kept and later reopened
// under a new name and written over from the start, so its old contents stay
// on disk until they happen to be overwritten. A shredded key's record would
// linger there. Two things close that:
//
//   - noRecycleFS implements ReuseForWrite by deleting the old file and
//     creating the new one, which the vfs.FS contract allows. A log that
//     Pebble keeps for recycling is then never read again, only named, so
//     it may be deleted at any time.
//   - After a shred, dropObsoleteLogs flushes the memtable and deletes every
//     log up to the one that was current: all of them are obsolete once the
//     flush returns, and one of them held the key record.
//
// The cost is a file creation per WAL rotation (every 4 MiB or so of writes)
// instead of a rename: not measurable against the fsyncs.

type noRecycleFS struct{ vfs.FS }

func (f noRecycleFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	if err := f.Remove(oldname); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return f.Create(newname, category)
}

// dropObsoleteLogs makes every WAL written so far obsolete and deletes it.
func dropObsoleteLogs(db *pebble.DB, dir string) error {
	logs, err := walFiles(dir)
	if err != nil {
		return err
	}
	current := uint64(0)
	for n := range logs {
		current = max(current, n)
	}
	// Flush rotates to a new log and returns once the memtables of the old
	// ones are on disk, which makes every log up to current obsolete.
	if err := db.Flush(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	for n, name := range logs {
		if n > current {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove obsolete log: %w", err)
		}
	}
	return nil
}

// walFiles lists the WAL files in dir by number.
func walFiles(dir string) (map[uint64]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list logs: %w", err)
	}
	logs := map[uint64]string{}
	for _, e := range entries {
		num, ok := strings.CutSuffix(e.Name(), ".log")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(num, 10, 64); err == nil {
			logs[n] = e.Name()
		}
	}
	return logs, nil
}
