package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	pacluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/cluster/raftmux"
	"github.com/chatpacket/chatpacket/cluster/replica"
	"github.com/chatpacket/chatpacket/storage"
	"github.com/hashicorp/raft"
)

// Shards are a node's replicas of the shards: the raft groups over the
// node's store, their one listener, and the log the node's Machine
// proposes through.
type Shards struct {
	Groups *replica.Groups
	Log    *ShardLog
	mux    *raftmux.Mux
	stop   chan struct{}
	done   chan struct{}
	loops  sync.WaitGroup
}

// StartShards starts the node with its shard replicas: the raft listener,
// one raft group per shard over db feeding m's state machines, the node
// (gossip and grains, announcing the node's identity), and the forwarder.
// A node without seeds to join bootstraps every shard it has no state for
// with itself as the only voter: it is the first node of a new cluster.
// It returns once every shard this node should hold has a leader (a
// joining node waits for the leaders that add it).
func StartShards(ctx context.Context, cfg Config, db *storage.DB, m *shard.Machine, opts ...Option) (*Node, error) {
	id, err := replica.NodeID(ctx, db)
	if err != nil {
		return nil, err
	}
	mux, err := raftmux.Listen(cfg.RaftAddr)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft listener on %s: %w", cfg.RaftAddr, err)
	}
	lookup := &leaderLookup{shards: db.Shards(), log: cfg.Logger}
	groups, err := replica.Start(ctx, replica.Config{
		NodeID: id, DB: db, Mux: mux, Shards: db.Shards(), Replicas: cfg.Replicas,
		FSM:    func(s uint16) (raft.FSM, error) { return m.FSM(s), nil },
		Timing: cfg.Raft, Logger: cfg.Logger.With("component", "raft"),
		OnLeadership: func(s uint16, leader bool) {
			if !leader {
				lookup.leadershipLost(s)
			}
		},
	})
	if err != nil {
		mux.Close()
		return nil, err
	}
	if len(cfg.Join) == 0 {
		if err := groups.Bootstrap(); err != nil {
			groups.Close()
			mux.Close()
			return nil, err
		}
	}
	cfg.Identity = Identity{NodeID: id, RaftAddr: mux.Addr().String(), Shards: db.Shards()}
	lookup.groups = groups
	var started atomic.Pointer[Node] // the lookup may run before Start returns
	var shardLog atomic.Pointer[ShardLog]
	lookup.remote = func(nodeID string) string { return remoteOf(started.Load(), nodeID) }
	lookup.leader = func(s uint16) string {
		if l := shardLog.Load(); l != nil {
			return l.leader(s) // asks the shard's nodes when this one holds no replica
		}
		id, _ := groups.Leader(s)
		return id
	}
	n, err := Start(ctx, cfg, append(opts, func(o *options) { o.lookup = lookup })...)
	if err != nil {
		groups.Close()
		mux.Close()
		return nil, err
	}
	started.Store(n)
	for _, p := range n.Peers() {
		if p.Shards != 0 && p.Shards != db.Shards() {
			n.Stop(true) // graceful: leave, and stop protoactor's endpoint writers
			groups.Close()
			mux.Close()
			return nil, fmt.Errorf("cluster: this node's store has %d shards, but member %s of the cluster has %d: "+
				"the shard count is fixed when a cluster is made; start this node with an empty data dir to join it", db.Shards(), p.NodeID, p.Shards)
		}
	}
	log, err := NewShardLog(n, groups, m)
	if err != nil {
		n.Stop(false)
		groups.Close()
		mux.Close()
		return nil, err
	}
	shardLog.Store(log)
	m.SetLog(log)
	s := &Shards{Groups: groups, Log: log, mux: mux, stop: make(chan struct{}), done: make(chan struct{})}
	n.shards = s
	go s.followMembers(n)
	s.loops.Go(func() { s.followLeaders(n) })
	if err := groups.WaitLeaders(ctx); err != nil {
		n.Stop(false)
		return nil, fmt.Errorf("cluster: waiting for every shard to have a leader: %w", err)
	}
	return n, nil
}

// Drain moves every replica and leadership of this node's shards to other
// nodes: it tells the cluster by gossip that this node is leaving (so the
// other nodes' shard leaders remove its replicas), then hands over the
// shards it leads, and returns once it leads none and is a voter of none,
// or ctx ends. The node can then stop with nothing lost.
func (n *Node) Drain(ctx context.Context) error {
	if n.shards == nil {
		return errors.New("cluster: this node holds no shards")
	}
	if err := n.p.setDraining(true); err != nil {
		return fmt.Errorf("cluster: announce the drain: %w", err)
	}
	self := n.p.cfg.Identity.NodeID
	return n.shards.Groups.DrainConfirmed(ctx, func(s uint16) bool { return n.shards.Log.removed(s, self) })
}

// leaderPoll is how often a node looks for leaderships that moved.
const leaderPoll = 100 * time.Millisecond

// followLeaders drops protoactor's cached grain PIDs on a node whose shard
// leadership moved away: its activations of that shard are stopped, and a
// call to a PID on a node that died would wait out its whole timeout
// before protoactor looked the grain up again. Dropping every PID of that
// node is coarse (its other shards' grains are looked up again too) but
// costs one lookup each.
func (s *Shards) followLeaders(n *Node) {
	t := time.NewTicker(leaderPoll)
	defer t.Stop()
	leaders := make([]string, s.Groups.Shards())
	remotes := map[string]string{} // node id → remote address, kept after a node leaves
	for {
		select {
		case <-t.C:
		case <-s.stop:
			return
		}
		for _, p := range n.Peers() {
			if p.NodeID != "" {
				remotes[p.NodeID] = p.RemoteAddr
			}
		}
		stale := map[string]bool{}
		for i := range leaders {
			id, _ := s.Groups.Leader(uint16(i))
			if old := leaders[i]; old != "" && old != id {
				stale[remotes[old]] = true
			}
			leaders[i] = id
		}
		for addr := range stale {
			if host, port, err := splitHostPort(addr); err == nil {
				n.Cluster.PidCache.RemoveByMember(&pacluster.Member{Host: host, Port: int32(port)})
			}
		}
	}
}

// followMembers hands the raft groups every change of the live members:
// the shard leaders move voters toward the placement the members give.
func (s *Shards) followMembers(n *Node) {
	defer close(s.done)
	for {
		var live []replica.Member
		for _, p := range n.Peers() {
			if p.Shards != 0 && p.Shards != s.Groups.Shards() {
				n.p.log.Error("ignoring a member with another shard count", "member", p.NodeID, "shards", p.Shards)
				continue
			}
			if p.NodeID != "" {
				live = append(live, replica.Member{ID: p.NodeID, RaftAddr: p.RaftAddr, Draining: p.Draining})
			}
		}
		s.Groups.SetMembers(live)
		select {
		case <-n.PeersChanged():
		case <-s.stop:
			return
		}
	}
}

// close stops the replicas after the node's grains: first the forwarder
// and the membership loop, then every raft group, then their listener.
func (s *Shards) close() {
	close(s.stop)
	<-s.done
	s.loops.Wait()
	s.Log.Close()
	s.Groups.Close()
	s.mux.Close()
}
