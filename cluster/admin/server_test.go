package admin_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/nodetest"
	"github.com/chatpacket/chatpacket/cluster/admin"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, nodetest.LeakIgnores...) }

// TestServerOnOneNode serves a node's endpoint in process: status shows
// the node leading every shard alone, a drain is refused where nothing
// could take the replicas, and Close removes the socket.
func TestServerOnOneNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node")
	}
	n := nodetest.Start(t)
	dir := t.TempDir()
	srv, err := admin.Start(admin.Config{DataDir: dir, Node: n.Node, Logger: nodetest.Quiet})
	if err != nil {
		t.Fatalf("Start() = %v", err)
	}
	defer srv.Close()
	if _, err := admin.Start(admin.Config{DataDir: dir, Node: n.Node, Logger: nodetest.Quiet}); !errors.Is(err, admin.ErrInUse) {
		t.Fatalf("a second Start on the same data dir = %v; want ErrInUse", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := admin.NewClient(dir)
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatalf("Status() = %v", err)
	}
	if st.NodeID == "" || len(st.Members) != 1 || !st.Members[0].Self || st.Members[0].NodeID != st.NodeID {
		t.Fatalf("Status() node %q, members %+v; want this node alone", st.NodeID, st.Members)
	}
	if len(st.Shards) != n.DB.Shards() {
		t.Fatalf("Status() has %d shards; want %d", len(st.Shards), n.DB.Shards())
	}
	for _, sh := range st.Shards {
		if sh.Leader != st.NodeID || sh.Role != "leader" || !slices.Equal(sh.Voters, []string{st.NodeID}) {
			t.Errorf("shard %d: %+v; want led by %s, its only voter", sh.Shard, sh, st.NodeID)
		}
	}
	if s := st.Summary; len(s.Leaderless)+len(s.UnderReplicated)+len(s.NotReplica) != 0 || s.Leading != len(st.Shards) || s.WantVoters != 1 {
		t.Errorf("Summary = %+v; want every shard led here, none short", s)
	}

	if err := c.Drain(ctx, "n-other", time.Minute, nil); err == nil || !strings.Contains(err.Error(), "this is node "+st.NodeID) {
		t.Errorf("Drain(wrong node) = %v; want a refusal naming %s", err, st.NodeID)
	}
	if err := c.Drain(ctx, st.NodeID, time.Minute, nil); err == nil || !strings.Contains(err.Error(), "only node") {
		t.Errorf("Drain() of the only node = %v; want a refusal", err)
	}

	if err := srv.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if _, err := os.Lstat(srv.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after Close: %v; want it removed", err)
	}
	if _, err := c.Status(ctx); !errors.Is(err, admin.ErrNoNode) {
		t.Errorf("Status() after Close = %v; want ErrNoNode", err)
	}
}
