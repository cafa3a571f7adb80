package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
	pacluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/extensions"
	"github.com/asynkron/protoactor-go/remote"
)

// Node is this process's member of the cluster: an actor system, its
// remote, the protoactor cluster and our gossip provider.
type Node struct {
	System  *actor.ActorSystem
	Cluster *pacluster.Cluster

	p        *provider
	opts     []Option    // as started: Rejoin starts the new member alike
	shards   *Shards     // nil for a node started without shards
	member   *membership // with shards: what runs over them under this member id
	rejoined atomic.Bool // its shards went to the node Rejoin returned
	stopOnce sync.Once
}

// Shards are the node's shard replicas (nil when started by Start alone).
func (n *Node) Shards() *Shards { return n.shards }

// Option adds to a node what is not configuration: its grain kinds and the
// extensions its grains find on the actor system.
type Option func(*options)

type options struct {
	kinds      []*pacluster.Kind
	extensions []extensions.Extension
	lookup     pacluster.IdentityLookup // nil: protoactor's disthash
}

// WithKinds registers grain kinds on the node.
func WithKinds(kinds ...*pacluster.Kind) Option {
	return func(o *options) { o.kinds = append(o.kinds, kinds...) }
}

// WithExtensions registers extensions on the node's actor system before any
// grain starts. Grains find their node's dependencies this way: generated
// grain factories are package globals, shared by every node of a process,
// so they cannot capture per-node values.
func WithExtensions(ext ...extensions.Extension) Option {
	return func(o *options) { o.extensions = append(o.extensions, ext...) }
}

// Start forms or joins the cluster and returns once this node is a member
// (its seeds answered, when it has any).
func Start(ctx context.Context, cfg Config, opts ...Option) (*Node, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	host, port, err := splitHostPort(cfg.RemoteAddr)
	if err != nil {
		return nil, err
	}
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(s *actor.ActorSystem) *slog.Logger {
		// protoactor logs routine INFO lines by the hundred; keep its
		// warnings and errors only.
		return slog.New(minLevel{cfg.Logger.Handler(), slog.LevelWarn}).With("component", "actors")
	}))
	for _, ext := range o.extensions {
		system.Extensions.Register(ext)
	}
	p := newProvider(cfg)
	lookup := o.lookup
	if lookup == nil {
		lookup = disthash.New()
	}
	cc := pacluster.Configure(cfg.Name, p, lookup, remote.Configure(host, port),
		pacluster.WithKinds(o.kinds...), pacluster.WithRequestTimeout(cfg.RequestTimeout))
	n := &Node{System: system, Cluster: pacluster.New(system, cc), p: p}
	if err := startMember(n.Cluster); err != nil {
		n.Stop(false)
		return nil, err
	}
	// Wait for the first topology too: protoactor's disthash lookup reads
	// its member ring without a lock, so grain calls must not start while
	// that ring is first written (seen by the race detector). Later changes
	// of membership still race inside protoactor until step 3 replaces
	// disthash with our own lookup.
	for _, ready := range []chan struct{}{p.joined, p.published} {
		select {
		case <-ready:
		case <-ctx.Done():
			n.Stop(false)
			return nil, fmt.Errorf("cluster: join %v: %w", cfg.Join, ctx.Err())
		}
	}
	return n, nil
}

// startMember turns protoactor's panics on start-up failures into errors.
func startMember(c *pacluster.Cluster) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cluster: start member: %v", r)
		}
	}()
	c.StartMember() // includes a hard-coded 1 s sleep (PITFALLS.md)
	return nil
}

// GossipAddr is the address other nodes join this one at.
func (n *Node) GossipAddr() string { return n.p.gossipAddr() }

// Members is the number of members this node sees, itself included. (It
// is what the provider last published: protoactor's own MemberList.Length
// reads without its lock.)
func (n *Node) Members() int { return int(n.p.members.Load()) }

// Peers is the live members as gossip last saw them, this node included.
func (n *Node) Peers() []Peer {
	n.p.mu.Lock()
	defer n.p.mu.Unlock()
	return append([]Peer(nil), n.p.mu.peers...)
}

// PeersChanged receives after the peer list changed (coalesced: one value
// may stand for several changes); read Peers then.
func (n *Node) PeersChanged() <-chan struct{} { return n.p.peersChanged }

// Stop leaves the cluster and stops the node's shard replicas. Graceful
// tells the other members first and stops this node's grains (their
// Terminate runs; protoactor waits about 2 s); otherwise the node just
// goes, as a crash would look to the others. Stop is safe to call twice;
// after Rejoin it does nothing (the replicas are the new node's).
func (n *Node) Stop(graceful bool) {
	n.leave(graceful)
	if n.shards != nil && !n.rejoined.Load() {
		n.shards.close()
	}
}

// leave ends this node's membership under its member id: the loops over
// its shards, its grains, protoactor and gossip. The shard replicas keep
// running. It is safe to call twice.
func (n *Node) leave(graceful bool) {
	n.stopOnce.Do(func() {
		if n.member != nil {
			n.member.close()
		}
		// protoactor's Shutdown(false) never stops the provider, so stop it
		// here in both cases; the second call does nothing.
		n.Cluster.Shutdown(graceful)
		if err := n.p.Shutdown(graceful); err != nil {
			n.p.log.Warn("leaving the cluster", "err", err)
		}
	})
}

// minLevel drops records below a level, whatever the wrapped handler's.
type minLevel struct {
	slog.Handler
	level slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.level && m.Handler.Enabled(ctx, l)
}

func (m minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{m.Handler.WithAttrs(a), m.level}
}

func (m minLevel) WithGroup(g string) slog.Handler { return minLevel{m.Handler.WithGroup(g), m.level} }

// PeerAddrs are the actor remote addresses of the live members.
func (n *Node) PeerAddrs() []string {
	peers := n.Peers()
	out := make([]string, len(peers))
	for i, p := range peers {
		out[i] = p.RemoteAddr
	}
	return out
}

// NodeRef refers to a node that is not started yet: dependencies built
// before the node (the grains' Deps) call it, and it answers as the node
// once Set.
type NodeRef struct{ p atomic.Pointer[Node] }

// Set makes r refer to n.
func (r *NodeRef) Set(n *Node) { r.p.Store(n) }

// PeerAddrs is n.PeerAddrs, or nil before Set.
func (r *NodeRef) PeerAddrs() []string {
	if n := r.p.Load(); n != nil {
		return n.PeerAddrs()
	}
	return nil
}
