package replica

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestSingleNode bootstraps one node, proposes on every shard, restarts it
// from its dir (state kept, leadership back, indexes continue), and checks
// that a store is refused to another shard count or node id.
func TestSingleNode(t *testing.T) {
	n := newNode(t, "solo")
	n.lead = make(chan leadership, 4*testShards)
	n.start(t)
	start := time.Now()
	if err := n.groups.Bootstrap(); err != nil {
		t.Fatalf("Bootstrap() = %v", err)
	}
	n.groups.SetMembers([]Member{n.member()})
	waitLeaders(t, n)
	t.Logf("one node, %d shards: every shard led %v after Bootstrap", testShards, time.Since(start).Round(time.Millisecond))

	got := make(map[uint16]bool)
	for range testShards {
		select {
		case l := <-n.lead:
			if !l.isLeader {
				t.Fatalf("OnLeadership(%d, false) before any leadership was lost", l.shard)
			}
			got[l.shard] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("OnLeadership: %d of %d shards reported", len(got), testShards)
		}
	}

	last := make([]uint64, testShards)
	for s := range uint16(testShards) {
		data := fmt.Sprintf("first %d", s)
		out, err := n.groups.Propose(context.Background(), s, []byte(data))
		if err != nil {
			t.Fatalf("Propose(%d) = %v", s, err)
		}
		r, ok := out.(response)
		if !ok || r.Shard != s || r.Data != data {
			t.Fatalf("Propose(%d, %q) = %#v; want the FSM's response for it", s, data, out)
		}
		last[s] = r.Index
	}
	if st := n.groups.Status(); st[3].State != "Leader" || st[3].LeaderID != "solo" || !slices.Equal(st[3].Voters, []string{"solo"}) || st[3].AppliedIndex < last[3] {
		t.Errorf("Status()[3] = %+v; want solo leading, sole voter, applied >= %d", st[3], last[3])
	}

	// Bootstrap again is a no-op on shards with state.
	if err := n.groups.Bootstrap(); err != nil {
		t.Fatalf("second Bootstrap() = %v", err)
	}

	// Restart: Close reports every leadership lost.
	n.stop()
	lost := 0
	for len(n.lead) > 0 {
		if l := <-n.lead; !l.isLeader {
			lost++
		}
	}
	if lost != testShards {
		t.Errorf("after Close: %d shards reported lost; want %d", lost, testShards)
	}
	start = time.Now()
	n.start(t)
	if err := n.groups.Bootstrap(); err != nil {
		t.Fatalf("Bootstrap() after restart = %v", err)
	}
	waitLeaders(t, n)
	t.Logf("restart: every shard led again %v after Start", time.Since(start).Round(time.Millisecond))
	for s := range uint16(testShards) {
		entries, err := n.fsms[s].entries()
		if err != nil || !slices.Equal(entries, []string{fmt.Sprintf("first %d", s)}) {
			t.Fatalf("shard %d after restart: entries %q, %v; want the one before it, applied once", s, entries, err)
		}
		out, err := n.groups.Propose(context.Background(), s, []byte("second"))
		if err != nil {
			t.Fatalf("Propose(%d) after restart = %v", s, err)
		}
		if r := out.(response); r.Index <= last[s] {
			t.Errorf("shard %d: index %d after restart; want above %d", s, r.Index, last[s])
		}
	}
	n.stop()

	// The store's raft state is for 8 shards and node "solo".
	other := *n
	other.shards = 16
	if err := other.tryStart(t); err == nil || !strings.Contains(err.Error(), "16") {
		t.Errorf("Start with 16 shards on an 8-shard store = %v; want a refusal naming the counts", err)
	}
	other = *n
	other.id = "impostor"
	if err := other.tryStart(t); err == nil || !strings.Contains(err.Error(), `"solo"`) {
		t.Errorf("Start as another node id = %v; want a refusal naming the store's node", err)
	}
}

func waitLeaders(t testing.TB, n *node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.groups.WaitLeaders(ctx); err != nil {
		t.Fatalf("%s: WaitLeaders() = %v", n.id, err)
	}
}

// TestProposeWithoutLeadership: a node with no state leads nothing and
// says so; a closed one says it is closed.
func TestProposeWithoutLeadership(t *testing.T) {
	n := newNode(t, "lonely")
	n.start(t)
	_, err := n.groups.Propose(context.Background(), 0, []byte("x"))
	if nl, ok := notLeader(err); !ok || nl.Shard != 0 || nl.LeaderID != "" {
		t.Errorf("Propose on a node without state = %v; want NotLeaderError with no leader", err)
	}
	if _, err := n.groups.Propose(context.Background(), testShards, []byte("x")); err == nil {
		t.Errorf("Propose(shard %d) of %d shards = nil error", testShards, testShards)
	}
	// It holds no replica yet, so it waits for no leader; once placement
	// gives it every shard (it is the only member), it waits for them all.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := n.groups.WaitLeaders(ctx); err != nil {
		t.Errorf("WaitLeaders on a node without state or members = %v; want nil", err)
	}
	n.groups.SetMembers([]Member{n.member()})
	if err := n.groups.WaitLeaders(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitLeaders on a node placed on every shard, without state = %v; want the context's error", err)
	}
	g := n.groups
	n.stop()
	if _, err := g.Propose(context.Background(), 0, []byte("x")); err != ErrClosed {
		t.Errorf("Propose after Close = %v; want ErrClosed", err)
	}
}

// TestStartFailureLeavesNothing: a shard whose FSM cannot be made fails
// Start, and the groups already started are shut down: their layers are
// freed (a second Start on the same Mux works) and their goroutines gone.
func TestStartFailureLeavesNothing(t *testing.T) {
	n := newNode(t, "fails")
	n.start(t)
	db, mux := n.db, n.mux
	n.groups.Close()
	cfg := Config{
		NodeID: n.id, DB: db, Mux: mux, Timing: LocalTiming(), Logger: testLogger(),
		FSM: func(shard uint16) (raft.FSM, error) {
			if shard == 3 {
				return nil, errors.New("no state machine for you")
			}
			return &logFSM{db: db, shard: shard}, nil
		},
	}
	if _, err := Start(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "shard 3") {
		t.Fatalf("Start with a failing FSM = %v; want an error naming shard 3", err)
	}
	cfg.FSM = func(shard uint16) (raft.FSM, error) { return &logFSM{db: db, shard: shard}, nil }
	g, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Start after a failed Start on the same Mux = %v", err)
	}
	n.groups = g
	if err := g.Bootstrap(); err != nil {
		t.Fatal(err)
	}
	waitLeaders(t, n)
}
