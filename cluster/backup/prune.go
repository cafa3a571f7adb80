package backup

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// MaxAge is how long backups are kept: the privacy policy promises at most
// 90 days, after which the retention job deletes them with Prune.
const MaxAge = 90 * 24 * time.Hour

// Prune deletes the backups in dir (a backups directory such as
// DATA_DIR/backups: one sub-directory per backup) whose manifest's
// created_at is more than maxAge before now, and the leftovers of
// backups that never finished (".NAME.partial-*", by modification time).
// It returns the paths it removed. A sub-directory that is neither a
// backup nor a leftover is left alone; an unreadable manifest is an
// error for that backup (reported, the others still pruned), never a
// reason to keep data longer silently. A missing dir has nothing to prune.
func Prune(dir string, now time.Time, maxAge time.Duration) (removed []string, err error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("backup: prune: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		created, ok, err := createdAt(path, e)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ok || now.Sub(created) <= maxAge {
			continue
		}
		if err := os.RemoveAll(path); err != nil {
			errs = append(errs, fmt.Errorf("backup: prune %s: %w", path, err))
			continue
		}
		removed = append(removed, path)
	}
	return removed, errors.Join(errs...)
}

// createdAt is when the backup at path was made, and false for a
// directory that is no backup.
func createdAt(path string, e fs.DirEntry) (time.Time, bool, error) {
	if strings.HasPrefix(e.Name(), ".") && strings.Contains(e.Name(), ".partial-") {
		info, err := e.Info()
		if err != nil {
			return time.Time{}, false, fmt.Errorf("backup: prune %s: %w", path, err)
		}
		return info.ModTime(), true, nil
	}
	if _, err := os.Stat(filepath.Join(path, ManifestFile)); errors.Is(err, fs.ErrNotExist) {
		return time.Time{}, false, nil
	}
	m, err := ReadManifest(path)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("backup: prune: %w", err)
	}
	return m.CreatedAt, true, nil
}
