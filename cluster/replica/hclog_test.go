package replica

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// TestHCLoggerLevels: raft's Info and its per-RPC failure noise go to
// Debug, election warnings to Info, the rest keep their level, and hclog's
// Fmt values and names reach slog.
func TestHCLoggerLevels(t *testing.T) {
	var buf bytes.Buffer
	l := newHCLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	reset := fmt.Errorf("read tcp: %w", syscall.ECONNRESET)
	for _, c := range []struct {
		log  func(hclog.Logger)
		want string
	}{
		{func(l hclog.Logger) { l.Info("entering follower state") }, "level=DEBUG"},
		{func(l hclog.Logger) { l.Error("failed to heartbeat to", "peer", "x") }, "level=DEBUG"},
		{func(l hclog.Logger) { l.Warn("rejecting pre-vote request since node is not in configuration") }, "level=DEBUG"},
		{func(l hclog.Logger) { l.Error("failed to decode incoming command", "error", reset) }, "level=DEBUG"},
		{func(l hclog.Logger) { l.Error("failed to decode incoming command", "error", "bad msgpack") }, "level=ERROR"},
		{func(l hclog.Logger) { l.Warn("heartbeat timeout reached, starting election") }, "level=INFO"},
		{func(l hclog.Logger) { l.Warn("failed to contact quorum of nodes, stepping down") }, "level=INFO"},
		{func(l hclog.Logger) { l.Warn("failed to contact", "server-id", "b") }, "level=DEBUG"},
		{func(l hclog.Logger) { l.Warn("failed to get log entry") }, "level=WARN"},
		{func(l hclog.Logger) { l.Error("failed to commit logs") }, "level=ERROR"},
		{func(l hclog.Logger) { l.Named("net").With("k", 1).Warn("x", "servers", hclog.Fmt("%d+%d", 1, 2)) }, `logger=net k=1 servers=1+2`},
	} {
		buf.Reset()
		c.log(l)
		if !strings.Contains(buf.String(), c.want) {
			t.Errorf("logged %q; want it to contain %q", strings.TrimSpace(buf.String()), c.want)
		}
	}
}
