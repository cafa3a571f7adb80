package replica

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatpacket/chatpacket/cluster/raftstore"
	"github.com/hashicorp/raft"
)

// group is one shard's raft group on this node.
type group struct {
	shard uint16
	raft  *raft.Raft
	store *raftstore.Store
	snaps *raftstore.Snapshots

	// busy is set while a membership change or leadership transfer this
	// node started is in flight: one at a time per shard.
	busy atomic.Bool

	// Owned by the reconcile goroutine: what this node learnt as leader in
	// its current term, forgotten when the term changes.
	term  uint64
	since map[raft.ServerID]seen

	mu struct {
		sync.Mutex
		// failed is each peer's last failed heartbeat, from the observer.
		failed map[raft.ServerID]time.Time
	}
}

// seen is when the leader first saw a server with its present suffrage.
type seen struct {
	suffrage raft.ServerSuffrage
	at       time.Time
}

// openGroup starts shard's raft on the node's store and listener. On error
// nothing of it is left running.
func openGroup(cfg Config, shard uint16, logger *slog.Logger) (*group, error) {
	store := raftstore.New(cfg.DB, shard)
	snaps, err := raftstore.NewSnapshots(cfg.DB, shard, cfg.SnapshotRetain)
	if err != nil {
		return nil, fmt.Errorf("replica: shard %d: snapshots: %w", shard, err)
	}
	fsm, err := cfg.FSM(shard)
	if err != nil {
		return nil, fmt.Errorf("replica: shard %d: state machine: %w", shard, err)
	}
	trans, err := cfg.Mux.Transport(shard, cfg.MaxPool, cfg.Timing.RPCTimeout, newHCLogger(logger.With("logger", "raft-net")))
	if err != nil {
		return nil, fmt.Errorf("replica: shard %d: transport: %w", shard, err)
	}
	r, err := raft.NewRaft(cfg.raftConfig(logger), fsm, store, store, snaps, trans)
	if err != nil {
		_ = trans.Close()
		return nil, fmt.Errorf("replica: shard %d: start raft: %w", shard, err)
	}
	g := &group{shard: shard, raft: r, store: store, snaps: snaps, since: make(map[raft.ServerID]seen)}
	g.mu.failed = make(map[raft.ServerID]time.Time)
	return g, nil
}

// track updates since for the configuration servers seen at now, in term.
func (g *group) track(term uint64, servers []raft.Server, now time.Time) map[raft.ServerID]time.Time {
	if term != g.term {
		g.term = term
		clear(g.since)
	}
	out := make(map[raft.ServerID]time.Time, len(servers))
	for _, s := range servers {
		e, ok := g.since[s.ID]
		if !ok || e.suffrage != s.Suffrage {
			e = seen{s.Suffrage, now}
			g.since[s.ID] = e
		}
		out[s.ID] = e.at
	}
	for id := range g.since {
		if _, ok := out[id]; !ok {
			delete(g.since, id)
		}
	}
	return out
}

func (g *group) heartbeatFailed(id raft.ServerID, at time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.mu.failed[id] = at
}

func (g *group) failures() map[raft.ServerID]time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[raft.ServerID]time.Time, len(g.mu.failed))
	for id, at := range g.mu.failed {
		out[id] = at
	}
	return out
}

// watchLeadership reports this node's leadership of the shard to notify
// until stop, then reports its loss if it was leading. raft's LeaderCh
// keeps only the latest value, so two changes may read as one: the term
// tells a lost-and-regained leadership from a kept one.
func (g *group) watchLeadership(stop <-chan struct{}, notify func(uint16, bool)) {
	var leading bool
	var term uint64
	check := func() {
		isLeader, t := g.raft.State() == raft.Leader, g.raft.CurrentTerm()
		if leading && (!isLeader || t != term) {
			leading = false
			notify(g.shard, false)
		}
		if isLeader && !leading {
			leading, term = true, t
			notify(g.shard, true)
		}
	}
	check()
	for {
		select {
		case <-g.raft.LeaderCh():
			check()
		case <-stop:
			if leading {
				notify(g.shard, false)
			}
			return
		}
	}
}
