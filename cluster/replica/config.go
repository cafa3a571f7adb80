package replica

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/chatpacket/chatpacket/cluster/raftmux"
	"github.com/chatpacket/chatpacket/storage"
	"github.com/hashicorp/raft"
)

// Config configures a node's raft groups. NodeID, DB, Mux and FSM are
// required; a zero value of any other field means its default.
type Config struct {
	// NodeID names this node in every shard's raft configuration. It must
	// be the same on every start from the same data dir (keep it in the
	// store): raft's log and votes belong to it. Start refuses an id other
	// than the one the store was first started with.
	NodeID string

	// DB is the node's one sealed store: every group's log, stable values
	// and snapshots live in it under their shard's prefix (raftstore).
	DB *storage.DB

	// Mux is the node's one raft listener; each shard gets its own
	// transport on it. Close the Mux after Groups.Close, not before (see
	// the raftmux package comment).
	Mux *raftmux.Mux

	// Shards is the number of shards, hence of raft groups, 0 to
	// Shards-1. It must equal DB.Shards(), the count the store's keyspace
	// was made with; 0 means that. It is fixed for the life of the cluster.
	Shards int

	// Replicas is how many voters each shard should have, when that many
	// nodes are live: 3 survives one node lost, 5 two, at the cost of a
	// copy of the shard's data and its write traffic on each. Default 3.
	Replicas int

	// FSM returns the state machine of shard, called once per shard by
	// Start. A raft.BatchingFSM gets its entries in batches. The FSM keeps
	// its state in the store and must skip entries it already applied:
	// raft replays the entries after the last snapshot on every start
	// (NoSnapshotRestoreOnStart), and never restores the snapshot itself
	// at start. Its Snapshot and Restore are still needed: a follower that
	// fell behind the log's truncation is sent a snapshot.
	FSM func(shard uint16) (raft.FSM, error)

	// OnLeadership, if set, is told when this node gains (true) or loses
	// (false) the leadership of a shard; Close reports false for every
	// shard it led. A leadership lost and regained before the callback ran
	// is reported as false, then true: state cached under the old term may
	// be stale. Calls for one shard come in order from one goroutine, calls
	// for different shards may run concurrently. It must not block for
	// long (it delays that shard's next notification) and must not call
	// Close.
	OnLeadership func(shard uint16, isLeader bool)

	// Timing is raft's timeouts and the reconcile loop's pace; start from
	// LocalTiming or LANTiming. The zero value means LANTiming.
	Timing Timing

	// SnapshotThreshold and SnapshotInterval: raft checks every interval
	// whether at least threshold entries were applied since the last
	// snapshot, and takes one if so. A snapshot lets raft truncate the
	// log; its cost is the FSM's Snapshot. Defaults 8192 and 2 min.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration

	// TrailingLogs is how many entries stay in the log behind a snapshot,
	// so that a follower a little behind catches up from the log instead of
	// a snapshot. Together with SnapshotRetain it bounds how long a
	// command (and an erased person's message in it) survives in raft
	// state (see storage.RaftLogKey). Default 10240.
	TrailingLogs uint64

	// SnapshotRetain is how many snapshots each shard keeps. Default 2.
	SnapshotRetain int

	// MaxPool is the idle connections each shard's transport keeps per
	// peer; every unit costs Shards sockets per peer at each end (see the
	// raftmux package comment). Default 2.
	MaxPool int

	// Logger receives this package's events and raft's, with raft's Info
	// lowered to Debug and its per-RPC failure noise to Debug too (the
	// reconcile loop reports what matters once). Default slog.Default().
	Logger *slog.Logger
}

// Timing is how fast failures are detected and placement converges. Raft
// requires LeaderLeaseTimeout <= HeartbeatTimeout <= ElectionTimeout.
type Timing struct {
	// HeartbeatTimeout is how long a follower waits without hearing from
	// its leader before it starts an election; the leader heartbeats every
	// tenth of it. Shorter fails over faster, but a loaded machine (GC,
	// fsync stalls, -race on 2 cores) misses heartbeats and holds needless
	// elections.
	HeartbeatTimeout time.Duration
	// ElectionTimeout is how long a candidate waits for votes.
	ElectionTimeout time.Duration
	// LeaderLeaseTimeout is how long a leader stays leader without hearing
	// from a quorum. It bounds how long a partitioned leader keeps taking
	// proposals (none of which commit).
	LeaderLeaseTimeout time.Duration
	// CommitTimeout is how long a leader with nothing new to send waits
	// before it sends followers an empty AppendEntries with the commit
	// index, so it bounds how far a follower's FSM lags. It does not delay
	// commits on the leader. Every shard's leader sends one per follower
	// each CommitTimeout, heartbeats aside: with 64 idle shards on 3 nodes,
	// 10 ms cost 19% of a core per node, 50 ms 15%.
	CommitTimeout time.Duration
	// RPCTimeout bounds each raft RPC's I/O and dial on the transport.
	RPCTimeout time.Duration

	// ReconcileInterval is the pace of the reconcile loop (membership of
	// the shards this node leads, leadership balance). It also runs at once
	// after SetMembers and after each change it made.
	ReconcileInterval time.Duration
	// CatchUpGrace is how long a new replica stays a non-voter, answering
	// every heartbeat, before it is promoted to voter; and so how long a
	// new placement takes to settle. Raft does not expose a follower's
	// progress, so this stands in for "caught up": long enough to stream
	// the log tail of a shard on this network.
	CatchUpGrace time.Duration
	// DeadTimeout is how long a voter's node may be missing from the member
	// list before the leader replaces it. Until then it keeps its place,
	// so a node that restarts or flaps in gossip does not move data.
	DeadTimeout time.Duration
}

// LocalTiming is for nodes on one machine (tests, development): failover
// in about a second, placement that settles in a few seconds. 500 ms rather
// than raft's usual minimum because a 2-core machine running the race
// detector was seen to miss 300 ms heartbeats.
func LocalTiming() Timing {
	return Timing{
		HeartbeatTimeout:   500 * time.Millisecond,
		ElectionTimeout:    500 * time.Millisecond,
		LeaderLeaseTimeout: 250 * time.Millisecond,
		CommitTimeout:      50 * time.Millisecond,
		RPCTimeout:         2 * time.Second,
		ReconcileInterval:  250 * time.Millisecond,
		CatchUpGrace:       time.Second,
		DeadTimeout:        10 * time.Second,
	}
}

// LANTiming is for nodes on one network (production): raft's own
// defaults, and a dead timeout well above gossip's failure detection
// (about 6 s) plus a process restart.
func LANTiming() Timing {
	d := raft.DefaultConfig()
	return Timing{
		HeartbeatTimeout:   d.HeartbeatTimeout,
		ElectionTimeout:    d.ElectionTimeout,
		LeaderLeaseTimeout: d.LeaderLeaseTimeout,
		CommitTimeout:      d.CommitTimeout,
		RPCTimeout:         10 * time.Second,
		ReconcileInterval:  time.Second,
		CatchUpGrace:       10 * time.Second,
		DeadTimeout:        60 * time.Second,
	}
}

// Defaults.
const (
	DefaultReplicas          = 3
	DefaultSnapshotThreshold = 8192
	DefaultSnapshotInterval  = 2 * time.Minute
	DefaultTrailingLogs      = 10240
	DefaultSnapshotRetain    = 2
	DefaultMaxPool           = 2
)

// withDefaults fills the zero fields.
func (c Config) withDefaults() Config {
	if c.Shards == 0 && c.DB != nil {
		c.Shards = c.DB.Shards()
	}
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	if c.Timing == (Timing{}) {
		c.Timing = LANTiming()
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = DefaultSnapshotInterval
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = DefaultTrailingLogs
	}
	if c.SnapshotRetain == 0 {
		c.SnapshotRetain = DefaultSnapshotRetain
	}
	if c.MaxPool == 0 {
		c.MaxPool = DefaultMaxPool
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// validate reports the first setting that cannot work; c has its defaults.
func (c Config) validate() error {
	t := c.Timing
	switch {
	case c.NodeID == "":
		return errors.New("replica: Config.NodeID is empty")
	case c.DB == nil:
		return errors.New("replica: Config.DB is nil")
	case c.Mux == nil:
		return errors.New("replica: Config.Mux is nil")
	case c.FSM == nil:
		return errors.New("replica: Config.FSM is nil")
	case c.Shards < 1 || c.Shards > storage.MaxShards:
		return fmt.Errorf("replica: Config.Shards = %d; want 1..%d", c.Shards, storage.MaxShards)
	case c.Shards != c.DB.Shards():
		return fmt.Errorf("replica: Config.Shards = %d, but the store's keyspace has %d shards", c.Shards, c.DB.Shards())
	case c.Replicas < 1:
		return fmt.Errorf("replica: Config.Replicas = %d; want at least 1", c.Replicas)
	case c.SnapshotRetain < 1 || c.MaxPool < 1:
		return errors.New("replica: Config.SnapshotRetain and Config.MaxPool must be positive")
	case t.HeartbeatTimeout <= 0 || t.ElectionTimeout <= 0 || t.LeaderLeaseTimeout <= 0 || t.CommitTimeout <= 0 || t.RPCTimeout <= 0:
		return errors.New("replica: Config.Timing: raft timeouts must be positive; start from LocalTiming or LANTiming")
	case t.LeaderLeaseTimeout > t.HeartbeatTimeout || t.HeartbeatTimeout > t.ElectionTimeout:
		return fmt.Errorf("replica: Config.Timing: want LeaderLeaseTimeout (%v) <= HeartbeatTimeout (%v) <= ElectionTimeout (%v)",
			t.LeaderLeaseTimeout, t.HeartbeatTimeout, t.ElectionTimeout)
	case t.ReconcileInterval <= 0 || t.CatchUpGrace <= 0 || t.DeadTimeout <= 0:
		return errors.New("replica: Config.Timing: ReconcileInterval, CatchUpGrace and DeadTimeout must be positive")
	}
	return nil
}

// raftConfig is shard's raft configuration.
func (c Config) raftConfig(logger *slog.Logger) *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.NodeID)
	rc.HeartbeatTimeout = c.Timing.HeartbeatTimeout
	rc.ElectionTimeout = c.Timing.ElectionTimeout
	rc.LeaderLeaseTimeout = c.Timing.LeaderLeaseTimeout
	rc.CommitTimeout = c.Timing.CommitTimeout
	rc.SnapshotThreshold = c.SnapshotThreshold
	rc.SnapshotInterval = c.SnapshotInterval
	rc.TrailingLogs = c.TrailingLogs
	// Many small proposals per shard: bigger batches per AppendEntries and
	// a buffered apply channel let concurrent proposals share one fsync.
	rc.MaxAppendEntries = 256
	rc.BatchApplyCh = true
	// The FSM's state is in the store already; restoring the snapshot at
	// start would rewrite it all for nothing.
	rc.NoSnapshotRestoreOnStart = true
	// Placement may add this node back after removing it: its raft must
	// keep running as a follower, not shut down for good.
	rc.ShutdownOnRemove = false
	rc.NoLegacyTelemetry = true
	rc.Logger = newHCLogger(logger)
	return rc
}
