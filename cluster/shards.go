package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
// node's store, their one listener and the machine whose state machines
// they feed. They outlive the node's membership: a node that rejoins the
// cluster under a new member id keeps them running.
type Shards struct {
	Groups  *replica.Groups
	mux     *raftmux.Mux
	machine *shard.Machine
	db      *storage.DB
	shards  int
	lookup  atomic.Pointer[leaderLookup] // the current member's
	log     *slog.Logger
	closed  sync.Once

	stopScrub chan struct{} // ends scrubLoop
	scrubbed  sync.WaitGroup
}

// membership is what a node runs over its shards while it is a member
// under one member id: the forwarder its machine proposes through, and the
// loops that follow the members and the shard leaders.
type membership struct {
	log   *ShardLog
	stop  chan struct{}
	done  chan struct{}
	loops sync.WaitGroup
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
	s := &Shards{mux: mux, machine: m, db: db, shards: db.Shards(), log: cfg.Logger, stopScrub: make(chan struct{})}
	groups, err := replica.Start(ctx, replica.Config{
		NodeID: id, DB: db, Mux: mux, Shards: db.Shards(), Replicas: cfg.Replicas,
		FSM:    func(s uint16) (raft.FSM, error) { return m.FSM(s), nil },
		Timing: cfg.Raft, Logger: cfg.Logger.With("component", "raft"),
		OnLeadership: func(shard uint16, leader bool) {
			if l := s.lookup.Load(); l != nil && !leader {
				l.leadershipLost(shard)
			}
		},
	})
	if err != nil {
		mux.Close()
		return nil, err
	}
	s.Groups = groups
	s.scrubbed.Go(func() { s.scrubLoop(db, cfg.ScrubDelay, s.stopScrub) })
	if len(cfg.Join) == 0 {
		if err := groups.Bootstrap(); err != nil {
			s.close()
			return nil, err
		}
	}
	cfg.Identity = Identity{NodeID: id, RaftAddr: mux.Addr().String(), Shards: db.Shards()}
	n, err := s.join(ctx, cfg, opts)
	if err != nil {
		s.close()
		return nil, err
	}
	return n, nil
}

// join makes the shards' node a member of the cluster under a new member
// id: a new actor system with its grains, gossip, the forwarder and the
// loops that follow members and leaders. It returns once every shard this
// node should hold has a leader.
func (s *Shards) join(ctx context.Context, cfg Config, opts []Option) (*Node, error) {
	lookup := &leaderLookup{groups: s.Groups, shards: s.shards, log: cfg.Logger}
	var started atomic.Pointer[Node] // the lookup may run before Start returns
	var shardLog atomic.Pointer[ShardLog]
	lookup.remote = func(nodeID string) string { return remoteOf(started.Load(), nodeID) }
	lookup.leader = func(shard uint16) string {
		if l := shardLog.Load(); l != nil {
			return l.leader(shard) // asks the shard's nodes when this one holds no replica
		}
		id, _ := s.Groups.Leader(shard)
		return id
	}
	s.lookup.Store(lookup)
	n, err := Start(ctx, cfg, append(opts, func(o *options) { o.lookup = lookup })...)
	if err != nil {
		return nil, err
	}
	n.opts = opts
	started.Store(n)
	for _, p := range n.Peers() {
		if p.Shards != 0 && p.Shards != s.shards {
			n.Stop(true) // graceful: leave, and stop protoactor's endpoint writers
			return nil, fmt.Errorf("cluster: this node's store has %d shards, but member %s of the cluster has %d: "+
				"the shard count is fixed when a cluster is made; start this node with an empty data dir to join it", s.shards, p.NodeID, p.Shards)
		}
	}
	log, err := NewShardLog(n, s.Groups, s.machine, s.db)
	if err != nil {
		n.Stop(false)
		return nil, err
	}
	shardLog.Store(log)
	s.machine.SetLog(log)
	ms := &membership{log: log, stop: make(chan struct{}), done: make(chan struct{})}
	n.shards, n.member = s, ms
	go ms.followMembers(n)
	ms.loops.Go(func() { ms.followLeaders(n) })
	ms.loops.Go(func() { ms.exchangeLedgers(n, s.db, cfg.LedgerSync) })
	if err := s.Groups.WaitLeaders(ctx); err != nil {
		n.leave(false)
		return nil, fmt.Errorf("cluster: waiting for every shard to have a leader: %w", err)
	}
	return n, nil
}

// Blocked is closed once this node learns that the cluster will not take
// its member id back: it was declared dead (paused, cut off) and came
// back, and protoactor blocks a departed member for ever. Its gRPC
// connections that survived keep working, new ones are refused: call
// Rejoin.
func (n *Node) Blocked() <-chan struct{} { return n.p.blocked }

// Rejoin leaves the cluster under this node's member id and joins it again
// under a new one, through the live members it knows, keeping its shard
// replicas running: raft never stopped replicating them, so no data moves.
// The node's grains stop and start again on the new actor system; n is
// stopped and the returned node replaces it (its System and Cluster are
// new: rebuild what holds them). When it fails (ctx ended before the
// cluster took it back) the replicas are stopped too, as by Stop.
func (n *Node) Rejoin(ctx context.Context) (*Node, error) {
	if n.shards == nil {
		return nil, errors.New("cluster: only a node with shards can rejoin")
	}
	cfg := n.p.cfg
	self := n.System.ID
	// Every member gossip knows, blocked ones too (this node may block
	// some itself), then its seeds.
	cfg.Join = append(n.p.gossipMembers(), n.p.cfg.Join...)
	slices.Sort(cfg.Join)
	cfg.Join = slices.DeleteFunc(slices.Compact(cfg.Join), func(a string) bool { return a == n.GossipAddr() })
	// The same addresses, even when port 0 picked them: the other nodes'
	// --join and the operator's notes name them.
	cfg.GossipAddr, cfg.RemoteAddr = n.GossipAddr(), n.System.Address()
	draining := n.p.isDraining()
	n.rejoined.Store(true)
	n.leave(true)
	n.p.log.Info("rejoining the cluster under a new member id", "old_member", self, "seeds", cfg.Join)
	n2, err := n.shards.join(ctx, cfg, n.opts)
	if err != nil {
		n.shards.close() // nothing can use them any more: stop as Stop would
		return nil, fmt.Errorf("cluster: rejoin: %w", err)
	}
	if draining {
		if err := n2.p.setDraining(true); err != nil {
			n2.p.log.Warn("announcing the drain again after rejoining", "err", err)
		}
	}
	n2.p.log.Info("rejoined the cluster", "old_member", self, "member", n2.System.ID, "members", n2.Members())
	return n2, nil
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
	return n.shards.Groups.DrainConfirmed(ctx, func(s uint16) bool { return n.member.log.removed(s, self) })
}

// leaderPoll is how often a node looks for leaderships that moved.
const leaderPoll = 100 * time.Millisecond

// followLeaders drops protoactor's cached grain PIDs on a node whose shard
// leadership moved away: its activations of that shard are stopped, and a
// call to a PID on a node that died would wait out its whole timeout
// before protoactor looked the grain up again. Dropping every PID of that
// node is coarse (its other shards' grains are looked up again too) but
// costs one lookup each.
func (s *membership) followLeaders(n *Node) {
	t := time.NewTicker(leaderPoll)
	defer t.Stop()
	groups := n.shards.Groups
	leaders := make([]string, groups.Shards())
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
			id, _ := groups.Leader(uint16(i))
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
func (s *membership) followMembers(n *Node) {
	defer close(s.done)
	groups := n.shards.Groups
	for {
		var live []replica.Member
		for _, p := range n.Peers() {
			if p.Shards != 0 && p.Shards != groups.Shards() {
				n.p.log.Error("ignoring a member with another shard count", "member", p.NodeID, "shards", p.Shards)
				continue
			}
			if p.NodeID != "" {
				live = append(live, replica.Member{ID: p.NodeID, RaftAddr: p.RaftAddr, Draining: p.Draining})
			}
		}
		groups.SetMembers(live)
		select {
		case <-n.PeersChanged():
		case <-s.stop:
			return
		}
	}
}

// close stops the loops and the forwarder of one membership.
func (s *membership) close() {
	close(s.stop)
	<-s.done
	s.loops.Wait()
	s.log.Close()
}

// close stops every raft group, then their listener: after the node's
// grains and membership.
func (s *Shards) close() {
	s.closed.Do(func() {
		close(s.stopScrub)
		s.scrubbed.Wait()
		s.Groups.Close()
		s.mux.Close()
	})
}
