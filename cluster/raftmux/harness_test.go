package raftmux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.uber.org/goleak"
)

// quiet drops raft's logs: an isolated node logs an error per heartbeat.
var quiet = hclog.NewNullLogger()

// checkLeaks runs goleak after every other cleanup of t, so raft, its
// transports and the Mux must all have stopped.
func checkLeaks(t *testing.T) {
	t.Helper()
	t.Cleanup(func() { goleak.VerifyNone(t) })
}

// checkFor polls f every interval until it returns nil or timeout passes.
func checkFor(tb testing.TB, timeout, interval time.Duration, f func() error) {
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
		time.Sleep(interval)
	}
}

// setFSM records the distinct uint64 commands applied, so a command retried
// after a lost leadership is counted once.
type setFSM struct {
	mu   sync.Mutex
	seen map[uint64]struct{}
}

func newSetFSM() *setFSM { return &setFSM{seen: make(map[uint64]struct{})} }

func (f *setFSM) Apply(l *raft.Log) any {
	if len(l.Data) != 8 {
		return fmt.Errorf("command of %d bytes; want 8", len(l.Data))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen[binary.BigEndian.Uint64(l.Data)] = struct{}{}
	return nil
}

// has reports whether every command in [0, n) was applied.
func (f *setFSM) has(n uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for v := range n {
		if _, ok := f.seen[v]; !ok {
			return fmt.Errorf("command %d not applied (%d applied)", v, len(f.seen))
		}
	}
	return nil
}

func (f *setFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	vals := make([]uint64, 0, len(f.seen))
	for v := range f.seen {
		vals = append(vals, v)
	}
	return setSnapshot(vals), nil
}

func (f *setFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	seen := make(map[uint64]struct{}, len(b)/8)
	for i := 0; i+8 <= len(b); i += 8 {
		seen[binary.BigEndian.Uint64(b[i:])] = struct{}{}
	}
	f.mu.Lock()
	f.seen = seen
	f.mu.Unlock()
	return nil
}

type setSnapshot []uint64

func (s setSnapshot) Persist(sink raft.SnapshotSink) error {
	b := make([]byte, 0, 8*len(s))
	for _, v := range s {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	if _, err := sink.Write(b); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (setSnapshot) Release() {}

// member is one node's replica of a group.
type member struct {
	id   raft.ServerID
	raft *raft.Raft
	fsm  *setFSM
}

// group is one raft group, one member per transport.
type group struct {
	members []*member
}

// testRaftConfig uses short timeouts so elections take well under a second
// and a cut-off leader is replaced quickly. Benchmarks use longer ones: on
// a loaded 2-core machine a 300 ms heartbeat timeout was seen to expire
// mid-benchmark, and a new election is not what they measure.
func testRaftConfig(tb testing.TB, id raft.ServerID) *raft.Config {
	c := raft.DefaultConfig()
	c.LocalID = id
	c.HeartbeatTimeout = 300 * time.Millisecond
	c.ElectionTimeout = 300 * time.Millisecond
	c.LeaderLeaseTimeout = 150 * time.Millisecond
	if _, ok := tb.(*testing.B); ok {
		c.HeartbeatTimeout = time.Second
		c.ElectionTimeout = time.Second
		c.LeaderLeaseTimeout = 500 * time.Millisecond
	}
	c.CommitTimeout = 10 * time.Millisecond
	c.Logger = quiet
	return c
}

// startGroup starts and bootstraps one member per transport, all in memory.
// Its cleanup shuts every member down, which closes the transports.
func startGroup(tb testing.TB, transports []raft.Transport) *group {
	tb.Helper()
	var conf raft.Configuration
	for i, tr := range transports {
		conf.Servers = append(conf.Servers, raft.Server{
			ID:      raft.ServerID(fmt.Sprintf("node-%d", i)),
			Address: tr.LocalAddr(),
		})
	}
	g := &group{}
	tb.Cleanup(g.shutdown)
	for i, tr := range transports {
		id := conf.Servers[i].ID
		store := raft.NewInmemStore()
		fsm := newSetFSM()
		r, err := raft.NewRaft(testRaftConfig(tb, id), fsm, store, store, raft.NewInmemSnapshotStore(), tr)
		if err != nil {
			tb.Fatalf("NewRaft(%s) = %v", id, err)
		}
		g.members = append(g.members, &member{id: id, raft: r, fsm: fsm})
		if err := r.BootstrapCluster(conf).Error(); err != nil {
			tb.Fatalf("BootstrapCluster(%s) = %v", id, err)
		}
	}
	return g
}

func (g *group) shutdown() {
	for _, m := range g.members {
		_ = m.raft.Shutdown().Error()
	}
}

// leader waits for one of among to lead, and returns it.
func (g *group) leader(tb testing.TB, among []*member, timeout time.Duration) *member {
	tb.Helper()
	var lead *member
	checkFor(tb, timeout, 10*time.Millisecond, func() error {
		for _, m := range among {
			if m.raft.State() == raft.Leader {
				lead = m
				return nil
			}
		}
		return errors.New("no leader")
	})
	return lead
}

// apply commits commands [from, to) through a leader among the given
// members, finding a new leader if one steps down midway.
func (g *group) apply(tb testing.TB, among []*member, from, to uint64, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	next := from
	for next < to {
		if time.Now().After(deadline) {
			tb.Fatalf("apply: committed up to %d of [%d, %d) in %v", next, from, to, timeout)
		}
		lead := g.leader(tb, among, time.Until(deadline))
		futures := make([]raft.ApplyFuture, 0, to-next)
		for v := next; v < to; v++ {
			futures = append(futures, lead.raft.Apply(binary.BigEndian.AppendUint64(nil, v), time.Second))
		}
		failed := false
		for i, f := range futures {
			if err := f.Error(); err != nil {
				// Commands are idempotent in setFSM: resume at the first
				// failure, whatever became of the ones after it.
				next += uint64(i)
				failed = true
				break
			}
		}
		if !failed {
			next = to
		}
	}
}

// waitApplied waits for every member in among to have applied [0, n).
func (g *group) waitApplied(tb testing.TB, among []*member, n uint64, timeout time.Duration) {
	tb.Helper()
	checkFor(tb, timeout, 10*time.Millisecond, func() error {
		for _, m := range among {
			if err := m.fsm.has(n); err != nil {
				return fmt.Errorf("%s: %w", m.id, err)
			}
		}
		return nil
	})
}

// without returns members minus the one with id.
func without(members []*member, id raft.ServerID) []*member {
	return slices.DeleteFunc(slices.Clone(members), func(m *member) bool { return m.id == id })
}

// openConns counts the connections m's layers hold, for reporting.
func openConns(m *Mux) int {
	m.mu.Lock()
	layers := make([]*Layer, 0, len(m.mu.layers))
	for _, l := range m.mu.layers {
		layers = append(layers, l)
	}
	m.mu.Unlock()
	n := 0
	for _, l := range layers {
		l.mu.Lock()
		n += len(l.mu.conns)
		l.mu.Unlock()
	}
	return n
}
