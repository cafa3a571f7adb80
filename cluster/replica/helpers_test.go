package replica

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/cluster/raftmux"
	"github.com/chatpacket/chatpacket/storage"
	"github.com/hashicorp/raft"
	"go.uber.org/goleak"
)

// TestMain fails the package if a goroutine outlives the tests: raft's,
// the transports', the Mux's, Pebble's and ours must all stop on Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testShards = 8

// testLogger discards, unless REPLICA_LOG is set to a level (debug, info,
// warn) to see the lines an operator would while debugging a test.
func testLogger() *slog.Logger {
	if lvl := os.Getenv("REPLICA_LOG"); lvl != "" {
		var l slog.Level
		if err := l.UnmarshalText([]byte(lvl)); err != nil {
			l = slog.LevelDebug
		}
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// checkFor polls f every 20 ms until it returns nil, and fails the test
// with f's last error after timeout.
func checkFor(tb testing.TB, timeout time.Duration, f func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// node is one cluster node of a test: its data dir, store, listener and
// groups. Stopping it and starting it again from the same dir is a restart.
type node struct {
	id     string
	dir    string
	key    []byte
	shards int           // the count Start is given; 0 means the store's
	store  int           // the store's shard count; 0 means testShards
	tune   func(*Config) // changes to the test configuration, if any

	db     *storage.DB
	mux    *raftmux.Mux
	groups *Groups
	fsms   []*logFSM
	lead   chan leadership // OnLeadership calls, when the test wants them
}

type leadership struct {
	shard    uint16
	isLeader bool
}

func newNode(t testing.TB, id string) *node {
	t.Helper()
	key := make([]byte, storage.MasterKeyLen)
	rand.Read(key)
	return &node{id: id, dir: t.TempDir(), key: key}
}

// start opens the node's store and listener and starts its groups; its
// cleanup stops them.
func (n *node) start(t testing.TB) {
	t.Helper()
	if err := n.tryStart(t); err != nil {
		t.Fatalf("%s: %v", n.id, err)
	}
}

func (n *node) tryStart(t testing.TB) error {
	t.Helper()
	store := cmp.Or(n.store, testShards)
	db, err := storage.Open(context.Background(), storage.Options{
		Dir: n.dir, MasterKey: n.key, Shards: store, Logger: testLogger(),
	})
	if err != nil {
		return fmt.Errorf("storage.Open: %w", err)
	}
	mux, err := raftmux.Listen("127.0.0.1:0")
	if err != nil {
		db.Close()
		return fmt.Errorf("raftmux.Listen: %w", err)
	}
	fsms := make([]*logFSM, store)
	cfg := Config{
		NodeID: n.id, DB: db, Mux: mux, Shards: n.shards,
		FSM: func(shard uint16) (raft.FSM, error) {
			fsms[shard] = &logFSM{db: db, shard: shard}
			return fsms[shard], nil
		},
		Timing: LocalTiming(),
		Logger: testLogger().With("node", n.id),
	}
	if n.tune != nil {
		n.tune(&cfg)
	}
	if n.lead != nil {
		ch := n.lead
		cfg.OnLeadership = func(shard uint16, isLeader bool) { ch <- leadership{shard, isLeader} }
	}
	g, err := Start(context.Background(), cfg)
	if err != nil {
		mux.Close()
		db.Close()
		return err
	}
	n.db, n.mux, n.groups, n.fsms = db, mux, g, fsms
	t.Cleanup(n.stop)
	return nil
}

// stop kills the node: its groups stop without handing anything over.
func (n *node) stop() {
	if n.groups == nil {
		return
	}
	n.groups.Close()
	n.mux.Close()
	n.db.Close()
	n.groups = nil
}

func (n *node) member() Member { return Member{ID: n.id, RaftAddr: n.mux.Addr().String()} }

// cluster is the nodes of one test.
type cluster []*node

func (c cluster) running() cluster {
	return slices.DeleteFunc(slices.Clone(c), func(n *node) bool { return n.groups == nil })
}

// setMembers gives every running node the running nodes as the live list,
// as gossip would; draining names nodes gossip shows as draining.
func (c cluster) setMembers(draining ...string) {
	var live []Member
	for _, n := range c.running() {
		m := n.member()
		m.Draining = slices.Contains(draining, n.id)
		live = append(live, m)
	}
	for _, n := range c.running() {
		n.groups.SetMembers(live)
	}
}

func (c cluster) byID(id string) *node {
	for _, n := range c {
		if n.id == id {
			return n
		}
	}
	return nil
}

// leader returns the running node that leads shard, per its own raft.
func (c cluster) leader(shard uint16) (*node, error) {
	for _, n := range c.running() {
		if n.groups.IsLeader(shard) {
			return n, nil
		}
	}
	return nil, fmt.Errorf("shard %d: no leader among %d running nodes", shard, len(c.running()))
}

// waitVoters waits until every shard's leader has exactly want(shard) as
// voters and no non-voter.
func (c cluster) waitVoters(t testing.TB, timeout time.Duration, want func(shard uint16) []string) {
	t.Helper()
	checkFor(t, timeout, func() error {
		for s := range uint16(len(c[0].fsms)) {
			l, err := c.leader(s)
			if err != nil {
				return err
			}
			st := l.groups.Status()[s]
			w := slices.Sorted(slices.Values(want(s)))
			if got := slices.Sorted(slices.Values(st.Voters)); !slices.Equal(got, w) || len(st.NonVoters) > 0 {
				return fmt.Errorf("shard %d: voters %v, non-voters %v; want voters %v", s, got, st.NonVoters, w)
			}
		}
		return nil
	})
}

// propose commits data on shard through its leader, following the leader
// when it moves, and returns the FSM's response.
func (c cluster) propose(t testing.TB, shard uint16, data string) response {
	t.Helper()
	var resp response
	checkFor(t, 10*time.Second, func() error {
		l, err := c.leader(shard)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		out, err := l.groups.Propose(ctx, shard, []byte(data))
		if err != nil {
			return err
		}
		r, ok := out.(response)
		if !ok {
			return fmt.Errorf("Propose(%d, %q) answered %T %v", shard, data, out, out)
		}
		resp = r
		return nil
	})
	return resp
}

// waitApplied waits until every running node's FSM of shard holds data.
func (c cluster) waitApplied(t testing.TB, shard uint16, data string) {
	t.Helper()
	checkFor(t, 10*time.Second, func() error {
		for _, n := range c.running() {
			got, err := n.fsms[shard].entries()
			if err != nil {
				return err
			}
			if !slices.Contains(got, data) {
				return fmt.Errorf("%s shard %d: %q not applied (%d entries)", n.id, shard, data, len(got))
			}
		}
		return nil
	})
}

// form starts n nodes, bootstraps the first and adds the others through
// SetMembers, and waits for every shard to have all of them as voters
// (n <= 3). setup, if not nil, prepares each node before it starts.
func form(t testing.TB, n int, setup func(*node)) cluster {
	t.Helper()
	var c cluster
	for i := range n {
		nd := newNode(t, fmt.Sprintf("node-%d", i+1))
		if setup != nil {
			setup(nd)
		}
		nd.start(t)
		c = append(c, nd)
	}
	if err := c[0].groups.Bootstrap(); err != nil {
		t.Fatalf("Bootstrap() = %v", err)
	}
	c.setMembers()
	ids := make([]string, n)
	for i, nd := range c {
		ids[i] = nd.id
	}
	start := time.Now()
	c.waitVoters(t, 20*time.Second, func(uint16) []string { return ids })
	t.Logf("%d nodes: every shard has %d voters %v after SetMembers", n, n, time.Since(start).Round(time.Millisecond))
	return c
}

// notLeader is errors.As for *NotLeaderError.
func notLeader(err error) (*NotLeaderError, bool) {
	var nl *NotLeaderError
	ok := errors.As(err, &nl)
	return nl, ok
}

// serverAddr is id's address in shard's latest configuration on g.
func (g *Groups) serverAddr(shard uint16, id string) string {
	f := g.groups[shard].raft.GetConfiguration()
	if f.Error() != nil {
		return ""
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id {
			return string(s.Address)
		}
	}
	return ""
}
