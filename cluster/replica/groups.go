package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// ErrClosed is returned by the methods of a closed Groups.
var ErrClosed = errors.New("replica: closed")

// Groups is a node's raft groups, one per shard, and the loop that moves
// their replicas toward the placement the member list gives.
type Groups struct {
	cfg    Config
	logger *slog.Logger
	self   Member
	groups []*group // by shard
	byRaft map[*raft.Raft]*group
	mem    *members

	kickCh    chan struct{} // wakes the reconcile loop; buffered 1
	balancing atomic.Bool   // a balancing transfer is in flight
	obsCh     chan raft.Observation
	stop      chan struct{} // closed by Close
	closed    atomic.Bool
	once      sync.Once

	// removed: shards whose leader removed this node without this node
	// hearing of it, by this node's configuration index then.
	removedMu sync.Mutex
	removed   map[uint16]uint64

	// wg counts every goroutine Groups starts; goMu orders its Adds before
	// Close's Wait.
	wg   sync.WaitGroup
	goMu sync.Mutex
}

// Start starts one raft group per shard on cfg.DB and cfg.Mux, and the
// reconcile loop. Groups with state resume it (a restart); groups without
// wait as followers until a leader adds this node, or Bootstrap. Start
// refuses a store last started with another shard count or node id. It
// does not wait for leaders: see WaitLeaders.
func Start(ctx context.Context, cfg Config) (*Groups, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := checkIdentity(ctx, cfg.DB, cfg.NodeID, cfg.Shards); err != nil {
		return nil, err
	}
	self := Member{ID: cfg.NodeID, RaftAddr: cfg.Mux.Addr().String()}
	g := &Groups{
		cfg:    cfg,
		logger: cfg.Logger,
		self:   self,
		byRaft: make(map[*raft.Raft]*group, cfg.Shards),
		mem:    newMembers(self),
		kickCh: make(chan struct{}, 1),
		// Failed heartbeats come in bursts from every shard at once when a
		// node dies; a dropped one is repeated at the next heartbeat.
		obsCh: make(chan raft.Observation, 1024),
		stop:  make(chan struct{}),
	}
	observer := raft.NewObserver(g.obsCh, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.FailedHeartbeatObservation)
		return ok
	})
	for shard := range cfg.Shards {
		grp, err := openGroup(cfg, uint16(shard), cfg.Logger.With("shard", shard))
		if err != nil {
			g.shutdown()
			return nil, err
		}
		grp.raft.RegisterObserver(observer)
		g.groups = append(g.groups, grp)
		g.byRaft[grp.raft] = grp
	}
	g.goFunc(g.reconcileLoop)
	g.goFunc(g.observeLoop)
	if cfg.OnLeadership != nil {
		for _, grp := range g.groups {
			g.goFunc(func() { grp.watchLeadership(g.stop, cfg.OnLeadership) })
		}
	}
	return g, nil
}

// goFunc runs f on a goroutine that Close waits for; false, without
// running f, once Close has begun.
func (g *Groups) goFunc(f func()) bool {
	g.goMu.Lock()
	defer g.goMu.Unlock()
	if g.closed.Load() {
		return false
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		f()
	}()
	return true
}

// Bootstrap makes this node the first of a new cluster: every shard with
// no raft state yet gets a configuration of this node alone, as voter.
// Shards with state (a restart, or a node already added by a leader) are
// left alone, so calling it on every start of the first node is safe. Never
// call it on a node meant to join an existing cluster before it was added:
// it would start a second, diverging history of each shard.
func (g *Groups) Bootstrap() error {
	if g.closed.Load() {
		return ErrClosed
	}
	conf := raft.Configuration{Servers: []raft.Server{{
		Suffrage: raft.Voter,
		ID:       raft.ServerID(g.self.ID),
		Address:  raft.ServerAddress(g.self.RaftAddr),
	}}}
	for _, grp := range g.groups {
		has, err := raft.HasExistingState(grp.store, grp.store, grp.snaps)
		if err != nil {
			return fmt.Errorf("replica: shard %d: read raft state: %w", grp.shard, err)
		}
		if has {
			continue
		}
		if err := grp.raft.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return fmt.Errorf("replica: shard %d: bootstrap: %w", grp.shard, err)
		}
	}
	return nil
}

// SetMembers tells the groups the nodes gossip sees live now, this node
// included or not (it always counts itself live). The leaders on this node
// move their shards' voters toward the placement of this list; before the
// first call they change nothing. It does not block.
func (g *Groups) SetMembers(live []Member) {
	g.mem.set(live, time.Now())
	g.kick()
}

// kick wakes the reconcile loop without waiting for it.
func (g *Groups) kick() {
	select {
	case g.kickCh <- struct{}{}:
	default:
	}
}

// observeLoop records failed heartbeats per shard and peer: the reconcile
// loop promotes and hands leadership only to peers that answer.
func (g *Groups) observeLoop() {
	for {
		select {
		case o := <-g.obsCh:
			hb, ok := o.Data.(raft.FailedHeartbeatObservation)
			if grp := g.byRaft[o.Raft]; ok && grp != nil {
				grp.heartbeatFailed(hb.PeerID, time.Now())
			}
		case <-g.stop:
			return
		}
	}
}

// group returns shard's group.
func (g *Groups) group(shard uint16) (*group, error) {
	if int(shard) >= len(g.groups) {
		return nil, fmt.Errorf("replica: shard %d out of range (%d shards)", shard, len(g.groups))
	}
	return g.groups[shard], nil
}

// Close shuts every group down and stops the reconcile loop; the shards
// this node led elect new leaders elsewhere after their election timeout
// (Drain first to hand them over at once). Close the Mux after it. Safe to
// call more than once.
func (g *Groups) Close() error {
	g.once.Do(func() {
		g.goMu.Lock()
		g.closed.Store(true)
		g.goMu.Unlock()
		close(g.stop)
		g.shutdown()
		g.wg.Wait()
	})
	return nil
}

// shutdown shuts down every started group in parallel: each waits for its
// own goroutines, and 64 of them one after the other add up.
func (g *Groups) shutdown() {
	var wg sync.WaitGroup
	for _, grp := range g.groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = grp.raft.Shutdown().Error() // always nil; it closes the transport and so the shard's layer
		}()
	}
	wg.Wait()
}
