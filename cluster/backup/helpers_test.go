package backup

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/cluster/raftmux"
	"github.com/chatpacket/chatpacket/cluster/replica"
	"github.com/chatpacket/chatpacket/storage"
	"github.com/hashicorp/raft"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newKey() []byte {
	k := make([]byte, storage.MasterKeyLen)
	rand.Read(k)
	return k
}

// node is one node's store, state machine and raft groups, over a real
// listener on loopback: what `chatpacket serve` runs, without gossip and
// grains (members are set by hand).
type node struct {
	id     string
	db     *storage.DB
	m      *shard.Machine
	groups *replica.Groups
	mux    *raftmux.Mux
}

// startNode opens the store in dataDir/store (created with 4 shards when
// new) and starts its raft groups; bootstrap makes it the first node of a
// new cluster (a restored store has its raft state already, and Bootstrap
// leaves it alone, as serve's does).
func startNode(t *testing.T, dataDir string, key []byte, bootstrap bool) *node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	db, err := storage.Open(ctx, storage.Options{Dir: filepath.Join(dataDir, "store"), MasterKey: key, Shards: 4, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	n := &node{db: db}
	if n.id, err = replica.NodeID(ctx, db); err != nil {
		t.Fatal(err)
	}
	if n.m, err = shard.New(db); err != nil {
		t.Fatal(err)
	}
	if n.mux, err = raftmux.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	n.groups, err = replica.Start(ctx, replica.Config{
		NodeID: n.id, DB: db, Mux: n.mux, Timing: replica.LocalTiming(), Logger: quiet,
		FSM: func(s uint16) (raft.FSM, error) { return n.m.FSM(s), nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.stop)
	if bootstrap {
		if err := n.groups.Bootstrap(); err != nil {
			t.Fatal(err)
		}
		if err := n.groups.WaitLeaders(ctx); err != nil {
			t.Fatal(err)
		}
	}
	n.m.SetLog(localLog{n.groups})
	return n
}

func (n *node) member() replica.Member {
	return replica.Member{ID: n.id, RaftAddr: n.mux.Addr().String()}
}

func (n *node) stop() {
	n.m.Close()
	n.groups.Close()
	n.mux.Close()
	n.db.Close()
}

// localLog proposes through this node's groups and reads this node's
// replicas as they are: the tests wait for replication themselves.
type localLog struct{ *replica.Groups }

func (localLog) ReadIndex(context.Context, uint16) (uint64, error) { return 0, nil }

func (localLog) Read(context.Context, uint16, []byte) ([]byte, error) {
	return nil, errors.New("test nodes read only their own replicas")
}

func post(tenant, conv, visitor storage.ID, clientID, body string) *actorspb.Command {
	return &actorspb.Command{Op: &actorspb.Command_Post{Post: &actorspb.PostMessage{
		TenantId: tenant[:], ConversationId: conv[:], VisitorId: visitor[:],
		Author:   &actorspb.Author{Kind: actorspb.AuthorKind_AUTHOR_KIND_VISITOR, Id: visitor[:]},
		ClientId: clientID, Body: body, UnixMs: time.Now().UnixMilli(),
	}}}
}

// bodies lists the readable bodies of conv's messages ("<erased>" for one
// whose key is shredded).
func bodies(t *testing.T, m *shard.Machine, tenant, conv storage.ID) []string {
	t.Helper()
	msgs, err := m.Messages(context.Background(), tenant, conv, 0, 1000)
	if err != nil && !errors.Is(err, shard.ErrNotFound) {
		t.Fatalf("Messages = %v", err)
	}
	var out []string
	for _, msg := range msgs {
		if msg.Erased {
			out = append(out, "<erased>")
			continue
		}
		out = append(out, msg.Record.Body)
	}
	return out
}

// filesContaining lists the files under dirs whose bytes contain s.
func filesContaining(t *testing.T, s []byte, dirs ...string) []string {
	t.Helper()
	var hits []string
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Type()&fs.ModeSocket != 0 {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if bytes.Contains(b, s) {
				hits = append(hits, path)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return hits
}

// waitFor polls check until it returns nil, failing the test after within.
func waitFor(t *testing.T, within time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func restore(t *testing.T, from, dataDir string, key []byte, ledgers ...string) *Restored {
	t.Helper()
	res, err := Restore(context.Background(), RestoreOptions{From: from, DataDir: dataDir, MasterKey: key, Ledgers: ledgers, RaftAddr: "127.0.0.1:1", Logger: quiet})
	if err != nil {
		t.Fatalf("Restore(%s) = %v", from, err)
	}
	return res
}

func mustCreate(t *testing.T, n *node, key []byte, dir string, now time.Time) *Manifest {
	t.Helper()
	m, err := Create(context.Background(), Source{DB: n.db, Machine: n.m, MasterKey: key, NodeID: n.id}, dir, now, nil)
	if err != nil {
		t.Fatalf("Create(%s) = %v", dir, err)
	}
	return m
}
