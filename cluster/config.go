// Package cluster holds a node's membership in a ChatPacket cluster: gossip
// by hashicorp/memberlist behind a protoactor ClusterProvider of our own,
// and the protoactor cluster (actor system, remote, grain kinds) that runs
// on it. One node forms a cluster of one; more nodes find each other with
// Config.Join.
//
// Placement of grains is protoactor's disthash for now (rendezvous hashing
// over members); step 3 of the roadmap replaces it with placement on shard
// leaders, and adds raft. Nothing else here assumes a single node.
//
// Concurrency: a Node's methods are safe for concurrent use. memberlist
// calls our delegates while holding its own locks, so they only signal a
// channel; the member list is read from our own goroutine (see
// ../shared/PITFALLS.md).
package cluster

import (
	"errors"
	"fmt"
	"github.com/chatpacket/chatpacket/cluster/replica"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/memberlist"
)

// Config configures a node's membership. Start from LocalConfig or
// LANConfig and set the addresses.
type Config struct {
	// Name is the cluster's name; nodes of different names do not talk.
	Name string

	// GossipAddr is the host:port memberlist listens on, TCP and UDP both.
	// Port 0 picks a free port (tests); Node.GossipAddr tells which.
	GossipAddr string

	// RemoteAddr is the host:port of the actor remote (gRPC) that carries
	// grain calls between nodes. Port 0 picks a free port.
	RemoteAddr string

	// Join lists gossip addresses of live nodes. Empty forms a new cluster.
	// Joining is retried every JoinRetry until one answers, so nodes started
	// together find each other whatever their order.
	Join      []string
	JoinRetry time.Duration

	// RequestTimeout bounds one grain call (protoactor gives its retries no
	// more time). A call to a node that just died waits this long before it
	// fails and its caller looks the grain up again, so it bounds the
	// failover a client sees; a grain call that commits takes milliseconds.
	RequestTimeout time.Duration

	// Gossip is memberlist's configuration: probe intervals, suspicion,
	// timeouts. The presets choose it; Name, addresses, delegates and
	// logging are set by Start.
	Gossip *memberlist.Config

	// Logger receives warnings and errors of memberlist and protoactor.
	Logger *slog.Logger

	// RaftAddr is the host:port of the one listener of all the node's raft
	// groups. Port 0 picks a free port.
	RaftAddr string

	// Replicas is how many replicas each shard keeps (raft voters), when
	// that many nodes are live.
	Replicas int

	// Raft is the raft groups' timing: the presets choose it.
	Raft replica.Timing

	// LedgerSync is how often a node compares its shred ledger with every
	// peer's and pulls what it lacks (see ledger.go): it bounds how long an
	// erasure takes to reach the nodes that hold no replica of its shard.
	LedgerSync time.Duration

	// ScrubDelay is how long a node waits after its shred ledger grew
	// before it scrubs erased data out of its raft state, so that erasures
	// arriving together cost one pass (a snapshot of every shard it holds).
	ScrubDelay time.Duration

	// Identity is what this node tells the others in its gossip metadata:
	// its node id, raft address and shard count (see Peer). Empty for a
	// node that hosts no shards (tests of gossip alone).
	Identity Identity
}

// Identity is a node's lasting identity in the cluster: NodeID is kept in
// its data dir and names it in every shard's raft configuration; RaftAddr
// is the one listener of its raft groups; Shards is the shard count its
// store was made with.
type Identity struct {
	NodeID   string
	RaftAddr string
	Shards   int
}

// LocalConfig is for nodes on one machine (tests, development): fast
// failure detection (memberlist's local preset: a dead node is noticed in
// about 5 s on loopback).
func LocalConfig() Config {
	return Config{
		Name: "chatpacket", GossipAddr: "127.0.0.1:0", RemoteAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		JoinRetry: 200 * time.Millisecond, RequestTimeout: 2 * time.Second,
		Gossip: memberlist.DefaultLocalConfig(), Logger: slog.Default(),
		Replicas: 3, Raft: replica.LocalTiming(),
		LedgerSync: 500 * time.Millisecond, ScrubDelay: 500 * time.Millisecond,
	}
}

// LANConfig is for nodes on one network (production): memberlist's LAN
// preset, tolerant of a slower network, detecting a dead node in about 6 s.
func LANConfig() Config {
	c := LocalConfig()
	c.GossipAddr, c.RemoteAddr, c.RaftAddr = "0.0.0.0:7946", "0.0.0.0:8090", "0.0.0.0:8300"
	c.JoinRetry = time.Second
	c.RequestTimeout = 4 * time.Second
	c.Gossip = memberlist.DefaultLANConfig()
	c.Raft = replica.LANTiming()
	c.LedgerSync, c.ScrubDelay = 2*time.Second, 5*time.Second
	return c
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	for _, a := range []struct{ name, addr string }{{"GossipAddr", c.GossipAddr}, {"RemoteAddr", c.RemoteAddr}} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return fmt.Errorf("cluster: Config.%s %q: %w", a.name, a.addr, err)
		}
	}
	for _, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			return fmt.Errorf("cluster: Config.Join %q: %w", j, err)
		}
	}
	switch {
	case c.Name == "":
		return errors.New("cluster: Config.Name is empty")
	case c.JoinRetry <= 0:
		return errors.New("cluster: Config.JoinRetry must be positive")
	case c.LedgerSync <= 0 || c.ScrubDelay <= 0:
		return errors.New("cluster: Config.LedgerSync and Config.ScrubDelay must be positive")
	case c.RequestTimeout <= 0:
		return errors.New("cluster: Config.RequestTimeout must be positive")
	case c.Gossip == nil:
		return errors.New("cluster: Config.Gossip is nil; start from LocalConfig or LANConfig")
	case c.Logger == nil:
		return errors.New("cluster: Config.Logger is nil")
	}
	return nil
}
