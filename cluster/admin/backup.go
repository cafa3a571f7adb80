package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/chatpacket/chatpacket/cluster/backup"
)

// Backups through the admin socket: POST /backup writes a backup of every
// shard (cluster/backup.Create) and streams its progress; GET /ledger
// answers the node's shred ledger in the ledger file format, for a
// restore of an older backup (`chatpacket admin restore --ledger`).

// BackupProgress is one line of a backup's stream: progress, then a last
// line with Done (and the backup's directory and manifest) or Error.
type BackupProgress struct {
	backup.Progress
	Elapsed  float64          `json:"elapsed_seconds"`
	Done     bool             `json:"done,omitempty"`
	Dir      string           `json:"dir,omitempty"`
	Manifest *backup.Manifest `json:"manifest,omitempty"`
	Error    string           `json:"error,omitempty"`
}

// BackupDir is where a backup made at now goes by default:
// DATA_DIR/backups/<UTC time>.
func BackupDir(dataDir string, now time.Time) string {
	return filepath.Join(dataDir, "backups", now.UTC().Format("20060102T150405Z"))
}

// handleBackup writes a backup into ?dir= (absolute), or the default dir.
func (s *Server) handleBackup(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Backups == nil {
		writeError(w, http.StatusServiceUnavailable, "this node was started without backups")
		return
	}
	now := time.Now()
	dir := r.URL.Query().Get("dir")
	switch {
	case dir == "":
		dir = BackupDir(s.cfg.DataDir, now)
	case !filepath.IsAbs(dir):
		writeError(w, http.StatusBadRequest, fmt.Sprintf("dir %q: want an absolute path", dir))
		return
	}
	if !s.backingUp.TryLock() {
		writeError(w, http.StatusConflict, "a backup is running on this node already; wait for it to finish")
		return
	}
	defer s.backingUp.Unlock()

	src := *s.cfg.Backups
	src.NodeID = s.self
	s.log.Info("backup: started", "dir", dir)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	send := func(p BackupProgress) {
		p.Elapsed = time.Since(now).Round(time.Millisecond).Seconds()
		if enc.Encode(p) == nil && flusher != nil { // a write error is a client that went: ctx ends with it
			flusher.Flush()
		}
	}
	m, err := backup.Create(r.Context(), src, dir, now, func(p backup.Progress) { send(BackupProgress{Progress: p}) })
	if err != nil {
		s.log.Warn("backup: failed", "dir", dir, "err", err)
		send(BackupProgress{Error: err.Error()})
		return
	}
	s.log.Info("backup: done", "dir", dir, "records", m.Records, "took", time.Since(now).Round(time.Millisecond))
	send(BackupProgress{Done: true, Dir: dir, Manifest: m})
}

// handleLedger answers the node's shred ledger.
func (s *Server) handleLedger(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Backups == nil {
		writeError(w, http.StatusServiceUnavailable, "this node was started without backups")
		return
	}
	entries, err := s.cfg.Backups.DB.Ledger(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("read the shred ledger: %v", err))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	backup.WriteLedger(w, entries) // a client that went away is no error of ours
}
