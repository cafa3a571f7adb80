package raftstore

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/storage"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"go.uber.org/goleak"
)

// listFSM is a tiny state machine: the data of every command, in order.
// Its snapshot is each command length-prefixed. Command i must be the i-th
// applied; a command already applied is ignored, because the test proposes
// again what a lost leadership may or may not have committed.
type listFSM struct {
	mu       sync.Mutex
	entries  [][]byte
	restores int
	err      error // a command applied out of order
}

func (f *listFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n int
	if _, err := fmt.Sscanf(string(l.Data), "command %d", &n); err != nil {
		f.err = fmt.Errorf("log %d holds %.20q…: %v", l.Index, l.Data, err)
		return nil
	}
	switch {
	case n == len(f.entries):
		f.entries = append(f.entries, slices.Clone(l.Data))
	case n > len(f.entries):
		f.err = fmt.Errorf("command %d applied after only %d", n, len(f.entries))
	}
	return nil
}

func (f *listFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return listSnapshot(slices.Clone(f.entries)), nil
}

func (f *listFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var entries [][]byte
	r := bufio.NewReader(rc)
	for {
		n, err := binary.ReadUvarint(r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		e := make([]byte, n)
		if _, err := io.ReadFull(r, e); err != nil {
			return err
		}
		entries = append(entries, e)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries = entries
	f.restores++
	return nil
}

func (f *listFSM) state() ([][]byte, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.entries), f.restores, f.err
}

type listSnapshot [][]byte

func (s listSnapshot) Persist(sink raft.SnapshotSink) error {
	w := bufio.NewWriter(sink)
	for _, e := range s {
		w.Write(binary.AppendUvarint(nil, uint64(len(e))))
		w.Write(e)
	}
	if err := w.Flush(); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (listSnapshot) Release() {}

// member is one raft member: its own Pebble, our stores on it, a TCP
// transport on loopback.
type member struct {
	id    raft.ServerID
	addr  raft.ServerAddress
	dir   string
	key   []byte
	db    *storage.DB
	store *Store
	snaps *Snapshots
	trans *raft.NetworkTransport
	raft  *raft.Raft
	fsm   *listFSM
}

const testShard = 7

// command is the data of the i-th command. It is padded to 1 KiB so that
// the snapshots of 250 commands span several chunks.
func command(i int) []byte {
	return fmt.Appendf(nil, "command %03d %s", i, bytes.Repeat([]byte{'.'}, 1000))
}

// start opens m's store and starts raft on it, listening on bind.
func (m *member) start(t *testing.T, bind string) {
	t.Helper()
	m.db = openDB(t, m.dir, m.key)
	m.store = New(m.db, testShard)
	var err error
	if m.snaps, err = NewSnapshots(m.db, testShard, 2); err != nil {
		t.Fatal(err)
	}
	if m.trans, err = raft.NewTCPTransportWithLogger(bind, nil, 3, time.Second, hclog.NewNullLogger()); err != nil {
		t.Fatalf("NewTCPTransport(%s) = %v", bind, err)
	}
	m.addr = m.trans.LocalAddr()
	conf := raft.DefaultConfig()
	conf.LocalID = m.id
	conf.HeartbeatTimeout = 300 * time.Millisecond
	conf.ElectionTimeout = 300 * time.Millisecond
	conf.LeaderLeaseTimeout = 300 * time.Millisecond
	conf.CommitTimeout = 10 * time.Millisecond
	conf.SnapshotInterval = time.Hour // only the test takes snapshots
	conf.SnapshotThreshold = 1 << 30
	conf.TrailingLogs = 20
	conf.Logger = hclog.NewNullLogger()
	m.fsm = &listFSM{}
	if m.raft, err = raft.NewRaft(conf, m.fsm, m.store, m.store, m.snaps, m.trans); err != nil {
		t.Fatalf("NewRaft(%s) = %v", m.id, err)
	}
}

// stop shuts raft down and closes the transport and the store.
func (m *member) stop(t *testing.T) {
	t.Helper()
	if m.raft == nil {
		return
	}
	if err := m.raft.Shutdown().Error(); err != nil {
		t.Errorf("Shutdown(%s) = %v", m.id, err)
	}
	m.raft = nil
	// Close drops only the listener: the pooled outbound connections, and
	// with them the peers' goroutines that serve them, end here.
	m.trans.CloseStreams()
	if err := m.trans.Close(); err != nil {
		t.Errorf("close transport of %s: %v", m.id, err)
	}
	if err := m.db.Close(); err != nil {
		t.Errorf("close store of %s: %v", m.id, err)
	}
}

func newMember(t *testing.T, id string) *member {
	return &member{id: raft.ServerID(id), dir: t.TempDir(), key: newMasterKey(t)}
}

func waitLeader(t *testing.T, members []*member) *member {
	t.Helper()
	var leader *member
	waitFor(t, 10*time.Second, func() error {
		for _, m := range members {
			if m.raft != nil && m.raft.State() == raft.Leader {
				leader = m
				return nil
			}
		}
		return errors.New("no leader")
	})
	return leader
}

// apply proposes commands from..to-1 and waits until they are committed.
// When leadership moves meanwhile it proposes the uncommitted rest again
// through the new leader (the FSM ignores what was committed twice).
func apply(t *testing.T, members []*member, from, to int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for from < to {
		leader := waitLeader(t, members)
		var futures []raft.ApplyFuture
		for i := from; i < to; i++ {
			futures = append(futures, leader.raft.Apply(command(i), 5*time.Second))
		}
		for _, f := range futures {
			err := f.Error()
			if err == nil {
				from++
				continue
			}
			if !retryable(err) || time.Now().After(deadline) {
				t.Fatalf("Apply(command %03d) = %v", from, err)
			}
			break
		}
		for _, f := range futures {
			f.Error() // let the rest fail before proposing them again
		}
	}
}

// retryable reports the errors of a leadership change.
func retryable(err error) bool {
	return errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrNotLeader) ||
		errors.Is(err, raft.ErrEnqueueTimeout)
}

// onLeader runs fn on the leader until it succeeds or fails with other
// than a leadership change.
func onLeader(t *testing.T, members []*member, what string, fn func(*raft.Raft) error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := fn(waitLeader(t, members).raft)
		if err == nil {
			return
		}
		if !retryable(err) || time.Now().After(deadline) {
			t.Fatalf("%s = %v", what, err)
		}
	}
}

// waitApplied waits until m's FSM holds commands 0..n-1 in order.
func waitApplied(t *testing.T, m *member, n int) {
	t.Helper()
	waitFor(t, 10*time.Second, func() error {
		entries, _, err := m.fsm.state()
		if err != nil {
			return fmt.Errorf("%s: %w", m.id, err)
		}
		if len(entries) != n {
			return fmt.Errorf("%s applied %d commands; want %d", m.id, len(entries), n)
		}
		for i, e := range entries {
			if want := command(i); !bytes.Equal(e, want) {
				return fmt.Errorf("%s command %d = %.20q…; want %.20q…", m.id, i, e, want)
			}
		}
		return nil
	})
}

// TestRaftCluster runs a real 3-member raft cluster on our stores: it
// replicates, a member restarted from its stores catches up, a snapshot
// truncates the log, and a fresh member is restored from the snapshot
// through our snapshot store, then restarts from its own.
func TestRaftCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a raft cluster")
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	members := []*member{newMember(t, "m0"), newMember(t, "m1"), newMember(t, "m2")}
	defer func() {
		for _, m := range members {
			m.stop(t)
		}
	}()
	var config raft.Configuration
	for _, m := range members {
		m.start(t, "127.0.0.1:0")
		config.Servers = append(config.Servers, raft.Server{Suffrage: raft.Voter, ID: m.id, Address: m.addr})
	}
	for _, m := range members {
		if err := m.raft.BootstrapCluster(config).Error(); err != nil {
			t.Fatalf("BootstrapCluster(%s) = %v", m.id, err)
		}
	}

	apply(t, members, 0, 200)
	for _, m := range members {
		waitApplied(t, m, 200)
	}

	// Restart a follower from its stores while the others go on.
	leader := waitLeader(t, members)
	f := members[0]
	if f == leader {
		f = members[1]
	}
	f.stop(t)
	apply(t, members, 200, 250)
	db := openDB(t, f.dir, f.key)
	store := New(db, testShard)
	if stored, err := store.LastIndex(); err != nil || stored < 200 {
		t.Fatalf("%s's log after restart ends at %d, %v; want at least 200", f.id, stored, err)
	}
	snaps, err := NewSnapshots(db, testShard, 2)
	if err != nil {
		t.Fatal(err)
	}
	if has, err := raft.HasExistingState(store, store, snaps); !has || err != nil {
		t.Fatalf("HasExistingState(%s) = %v, %v; want true", f.id, has, err)
	}
	db.Close()
	f.start(t, string(f.addr))
	for _, m := range members {
		waitApplied(t, m, 250)
	}

	// A snapshot truncates each member's log to TrailingLogs entries.
	// Every member takes one, so that whichever leads has no log before it.
	for _, m := range members {
		if err := m.raft.Snapshot().Error(); err != nil {
			t.Fatalf("Snapshot(%s) = %v", m.id, err)
		}
		first, _ := m.store.FirstIndex()
		last, _ := m.store.LastIndex()
		if first <= 1 || last-first+1 < 20 {
			t.Errorf("%s's log after the snapshot = [%d, %d]; want it truncated, keeping at least TrailingLogs (20)", m.id, first, last)
		}
		wantNoLog(t, m.store, 1)
		if metas, err := m.snaps.List(); err != nil || len(metas) != 1 || metas[0].Index < 250 {
			t.Fatalf("%s's snapshots = %v, %v; want one at index 250 or more", m.id, metas, err)
		}
	}

	// A fresh member can only catch up from a snapshot: no log starts at 1
	// any more.
	fresh := newMember(t, "m3")
	members = append(members, fresh)
	fresh.start(t, "127.0.0.1:0")
	onLeader(t, members, "AddVoter", func(r *raft.Raft) error {
		return r.AddVoter(fresh.id, fresh.addr, 0, 5*time.Second).Error()
	})
	waitApplied(t, fresh, 250)
	if _, restores, _ := fresh.fsm.state(); restores != 1 {
		t.Errorf("%s restored %d snapshots; want 1", fresh.id, restores)
	}
	installed, err := fresh.snaps.List()
	if err != nil || len(installed) != 1 {
		t.Fatalf("%s's snapshots = %v, %v; want the installed one", fresh.id, installed, err)
	}
	if installed[0].Size <= 3*chunkSize {
		t.Errorf("installed snapshot of %d bytes; want one of 4 chunks or more", installed[0].Size)
	}

	apply(t, members, 250, 260)
	for _, m := range members {
		waitApplied(t, m, 260)
	}
	// Its log holds only what came after the snapshot.
	if first, _ := fresh.store.FirstIndex(); first <= installed[0].Index {
		t.Errorf("%s's log starts at %d; want after the snapshot's index %d", fresh.id, first, installed[0].Index)
	}

	// Restarted, the fresh member restores from its own snapshot store
	// before it hears from anyone, then replays its log.
	fresh.stop(t)
	fresh.start(t, string(fresh.addr))
	if entries, restores, _ := fresh.fsm.state(); restores != 1 || len(entries) < 250 {
		t.Errorf("%s after restart: %d restores, %d commands; want its snapshot restored", fresh.id, restores, len(entries))
	}
	waitApplied(t, fresh, 260)
}
