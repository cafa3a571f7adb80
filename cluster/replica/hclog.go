package replica

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// hcLogger hands raft's hclog lines to slog, quieter than raft means them.
//
// Raft logs every state change and replication start at Info; with one
// group per shard that is 64 lines for each leadership move, so Info goes
// to Debug. Its per-RPC failures (a peer down, a removed server still
// campaigning) repeat every heartbeat for as long as the failure lasts, per
// shard: those go to Debug too, and the reconcile loop reports the node's
// loss once, at Info. Everything else keeps its level.
type hcLogger struct {
	l       *slog.Logger
	name    string
	implied []any
}

func newHCLogger(l *slog.Logger) hclog.Logger { return &hcLogger{l: l} }

// quietPrefixes are raft messages repeated per RPC while a peer is down or
// removed: expected during failover and drain, and not actionable one by one.
var quietPrefixes = []string{
	"failed to heartbeat to",
	"failed to appendEntries to",
	"failed to pipeline appendEntries",
	"failed to start pipeline replication to",
	"failed to make requestVote RPC",
	"failed to contact",
	"rejecting vote request since",
	"rejecting pre-vote request since",
	"no known peers, aborting election",
	"not part of stable configuration, aborting election",
	"heartbeat timeout reached, not part of a stable configuration",
	"appendEntries rejected, sending older logs",
	"previous log term mis-match",
	"failed to get previous log",
	"duplicate requestVote from",
	"Election timeout reached, restarting election",
	"peer has newer term, stopping replication",
}

// electionWarnings are raft's Warn lines of a normal failover: worth an
// Info line each, not a warning.
var electionWarnings = []string{
	"heartbeat timeout reached, starting election",
	"failed to contact quorum of nodes, stepping down",
	"new leader elected, stepping down",
}

func (h *hcLogger) level(level hclog.Level, msg string, args []any) slog.Level {
	// Before quietPrefixes: "failed to contact quorum…" starts like the
	// per-peer "failed to contact".
	for _, p := range electionWarnings {
		if strings.HasPrefix(msg, p) {
			return slog.LevelInfo
		}
	}
	for _, p := range quietPrefixes {
		if strings.HasPrefix(msg, p) {
			return slog.LevelDebug
		}
	}
	if msg == "failed to decode incoming command" && peerHungUp(args) {
		return slog.LevelDebug
	}
	if msg == "failed to get log" && hasError(args, raft.ErrLogNotFound) {
		// A follower behind the log's truncation: raft sends it the
		// latest snapshot next, which is worth knowing, not an error.
		return slog.LevelInfo
	}
	switch level {
	case hclog.Error:
		return slog.LevelError
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelDebug
	}
}

func (h *hcLogger) Log(level hclog.Level, msg string, args ...any) {
	lvl := h.level(level, msg, args)
	ctx := context.Background()
	if !h.l.Enabled(ctx, lvl) {
		return
	}
	attrs := make([]any, 0, len(h.implied)+len(args)+2)
	if h.name != "" {
		attrs = append(attrs, "logger", h.name)
	}
	attrs = append(attrs, flatten(h.implied)...)
	attrs = append(attrs, flatten(args)...)
	h.l.Log(ctx, lvl, msg, attrs...)
}

func hasError(args []any, target error) bool {
	for _, a := range args {
		if err, ok := a.(error); ok && errors.Is(err, target) {
			return true
		}
	}
	return false
}

// peerHungUp reports whether args hold the error of a connection its peer
// closed. A leader that steps down or moves closes its pipelined
// connections with responses still unread, which resets them: the
// follower's transport logs that at Error, for every shard that moved.
func peerHungUp(args []any) bool {
	return hasError(args, syscall.ECONNRESET) || hasError(args, io.EOF) || hasError(args, net.ErrClosed)
}

// flatten turns hclog.Fmt values into strings; slog takes the rest as is.
func flatten(args []any) []any {
	out := make([]any, len(args))
	for i, a := range args {
		if f, ok := a.(hclog.Format); ok && len(f) > 0 {
			if format, ok := f[0].(string); ok {
				a = fmt.Sprintf(format, f[1:]...)
			}
		}
		out[i] = a
	}
	return out
}

func (h *hcLogger) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hcLogger) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hcLogger) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hcLogger) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hcLogger) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }

func (h *hcLogger) IsTrace() bool { return false }
func (h *hcLogger) IsDebug() bool { return h.l.Enabled(context.Background(), slog.LevelDebug) }
func (h *hcLogger) IsInfo() bool  { return h.IsDebug() } // raft's Info is our Debug
func (h *hcLogger) IsWarn() bool  { return h.l.Enabled(context.Background(), slog.LevelWarn) }
func (h *hcLogger) IsError() bool { return h.l.Enabled(context.Background(), slog.LevelError) }

func (h *hcLogger) ImpliedArgs() []any { return h.implied }

func (h *hcLogger) With(args ...any) hclog.Logger {
	c := *h
	c.implied = append(append([]any(nil), h.implied...), args...)
	return &c
}

func (h *hcLogger) Name() string { return h.name }

func (h *hcLogger) Named(name string) hclog.Logger {
	c := *h
	if c.name != "" {
		name = c.name + "." + name
	}
	c.name = name
	return &c
}

func (h *hcLogger) ResetNamed(name string) hclog.Logger {
	c := *h
	c.name = name
	return &c
}

// SetLevel does nothing: the slog handler decides what is written.
func (h *hcLogger) SetLevel(hclog.Level) {}

func (h *hcLogger) GetLevel() hclog.Level {
	if h.IsDebug() {
		return hclog.Debug
	}
	return hclog.Warn
}

func (h *hcLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(h.StandardWriter(opts), "", 0)
}

func (h *hcLogger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		h.Log(hclog.Info, strings.TrimSpace(string(p)))
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

var _ hclog.Logger = (*hcLogger)(nil)
