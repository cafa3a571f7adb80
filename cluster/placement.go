package cluster

import (
	"log/slog"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pacluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/chatpacket/chatpacket/cluster/replica"
	"github.com/chatpacket/chatpacket/storage"
)

// Grains live on their shard's leader. leaderLookup is protoactor's
// IdentityLookup for that: a grain's identity is the id of what it owns (a
// conversation, a tenant, a visitor), whose shard is the one its commands
// go to; the lookup asks that shard's leader's placement actor for the
// activation. So a grain's commands are proposed where they are appended,
// with no forwarding hop, and its reads are local to the leader.
//
// When this node loses a shard's leadership, its placement actor stops the
// shard's activations; callers holding their PIDs get dead letters, drop
// them from protoactor's cache and look up again, finding the new leader.
// Raft makes this safe even when two activations briefly coexist (a
// deposed leader that has not heard yet): only one leader's proposals
// commit, and every seq is assigned by the shard's state machine, not by
// the grain.

// activationTimeout bounds one activation request: the placement actor
// answers at once, so a silent one belongs to a node that died (and the
// shard's leader is about to change).
const activationTimeout = 500 * time.Millisecond

// placementName names each node's placement actor.
const placementName = "chatpacket-placement"

// lookupWait bounds how long Get waits for a shard to have a leader (an
// election after a node died takes about a second with the local timing).
// protoactor's own retries are three, without pause, so the wait is here.
const lookupWait = 5 * time.Second

type leaderLookup struct {
	groups *replica.Groups
	shards int
	remote func(nodeID string) string // a node's actor remote address
	leader func(shard uint16) string  // the shard's leader's node id, "" if none is known
	log    *slog.Logger

	cluster   *pacluster.Cluster
	placement *actor.PID
	stopping  chan struct{} // closed by Shutdown: lookups give up
	stopOnce  sync.Once     // protoactor may call Shutdown more than once
}

var _ pacluster.IdentityLookup = (*leaderLookup)(nil)

// shardOf is the shard of a grain identity: the text form of a
// storage.ID. Any other identity is placed by its bytes (no grain of ours
// has one; it would work, on some shard).
func shardOf(identity string, shards int) uint16 {
	if id, err := storage.ParseID(identity); err == nil {
		return storage.ShardOf(id[:], shards)
	}
	return storage.ShardOf([]byte(identity), shards)
}

func (l *leaderLookup) Setup(c *pacluster.Cluster, _ []string, _ bool) {
	l.cluster = c
	l.stopping = make(chan struct{})
	l.placement, _ = c.ActorSystem.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor {
		return &placementActor{lookup: l, byShard: map[uint16]map[string]activation{}}
	}), placementName)
}

func (l *leaderLookup) Shutdown() {
	l.stopOnce.Do(func() {
		close(l.stopping)
		if err := l.cluster.ActorSystem.Root.PoisonFuture(l.placement).Wait(); err != nil {
			l.log.Warn("stopping the placement actor", "err", err)
		}
	})
}

// Get returns the activation of identity on its shard's leader, activating
// it there if needed; nil when no leader answers within lookupWait (the
// caller's request then fails and can be retried).
func (l *leaderLookup) Get(ci *pacluster.ClusterIdentity) *actor.PID {
	shard := shardOf(ci.Identity, l.shards)
	// Never past the grain call's own timeout: protoactor checks it only
	// between lookups.
	deadline := time.Now().Add(min(lookupWait, l.cluster.Config.RequestTimeoutTime))
	for attempt := 1; ; attempt++ {
		if leader := l.leader(shard); leader != "" {
			if addr := l.remote(leader); addr != "" {
				res, err := l.cluster.ActorSystem.Root.RequestFuture(actor.NewPID(addr, placementName),
					&pacluster.ActivationRequest{ClusterIdentity: ci}, activationTimeout).Result()
				if r, ok := res.(*pacluster.ActivationResponse); err == nil && ok && r.Pid != nil {
					return r.Pid
				}
			}
		}
		if time.Now().After(deadline) {
			return nil
		}
		select {
		case <-time.After(min(time.Duration(attempt)*20*time.Millisecond, 200*time.Millisecond)):
		case <-l.stopping:
			return nil
		}
	}
}

// RemovePid forgets a PID protoactor found dead.
func (l *leaderLookup) RemovePid(ci *pacluster.ClusterIdentity, pid *actor.PID) {
	l.cluster.PidCache.RemoveByValue(ci.Identity, ci.Kind, pid)
}

// leadershipLost stops this node's activations of shard's grains.
func (l *leaderLookup) leadershipLost(shard uint16) {
	if l.placement != nil {
		l.cluster.ActorSystem.Root.Send(l.placement, &shardLost{shard: shard})
	}
}

type shardLost struct{ shard uint16 }

// placementActor activates grains on this node for the shards it leads.
type placementActor struct {
	lookup  *leaderLookup
	byShard map[uint16]map[string]activation // shard → identity key → activation
}

type activation struct {
	pid  *actor.PID
	kind *pacluster.ActivatedKind
}

func (p *placementActor) Receive(c actor.Context) {
	switch msg := c.Message().(type) {
	case *pacluster.ActivationRequest:
		p.activate(c, msg)
	case *shardLost:
		// Stopped, not forgotten yet: Terminated forgets each.
		for _, a := range p.byShard[msg.shard] {
			c.Poison(a.pid)
		}
	case *actor.Terminated:
		for _, grains := range p.byShard {
			for key, a := range grains {
				if a.pid.Equal(msg.Who) {
					a.kind.Dec()
					delete(grains, key)
				}
			}
		}
	case *actor.Stopping:
		for _, grains := range p.byShard {
			for _, a := range grains {
				c.Poison(a.pid)
			}
		}
	}
}

// activate answers an activation request: the existing activation, a new
// one when this node leads the identity's shard, or nothing (the caller
// looks up again) when it does not.
func (p *placementActor) activate(c actor.Context, req *pacluster.ActivationRequest) {
	ci := req.ClusterIdentity
	shard := shardOf(ci.Identity, p.lookup.shards)
	key := ci.AsKey()
	if a, ok := p.byShard[shard][key]; ok {
		c.Respond(&pacluster.ActivationResponse{Pid: a.pid})
		return
	}
	kind := p.lookup.cluster.GetClusterKind(ci.Kind)
	if kind == nil || !p.lookup.groups.IsLeader(shard) {
		c.Respond(&pacluster.ActivationResponse{Failed: true})
		return
	}
	pid := c.SpawnPrefix(pacluster.WithClusterIdentity(kind.Props, ci), ci.Identity)
	kind.Inc()
	if p.byShard[shard] == nil {
		p.byShard[shard] = map[string]activation{}
	}
	p.byShard[shard][key] = activation{pid: pid, kind: kind}
	c.Respond(&pacluster.ActivationResponse{Pid: pid})
}
