// Package replica runs a node's replicas of the shards: one hashicorp/raft
// group per shard, all in the node's one sealed Pebble (cluster/raftstore)
// and all over its one raft listener (cluster/raftmux), and the loop that
// moves each shard's voters toward the placement the gossip member list
// gives. The state machine is handed in (Config.FSM), so this package
// knows nothing of actors and actors/shard can import it.
//
// # Placement
//
// A shard's desired voters are the Config.Replicas members with the
// highest rendezvous score for it (placement.go): every node computes the
// same answer from the same member list, and a node joining or leaving
// moves only the replicas it gains or loses. Placement counts the live
// members that are not draining, plus members gone for less than
// Timing.DeadTimeout: a node that restarts, or flickers in gossip, keeps
// its place and nothing moves.
//
// # The reconcile loop
//
// Every node runs it (every Timing.ReconcileInterval, at once after
// SetMembers, and after each change it made) for the shards it leads, the
// only ones whose configuration it can change. Per shard it makes one
// change at a time, the first that applies (plan.go has the rules and
// their reasons):
//
//  1. re-add a server whose node now listens at another address;
//  2. add a desired live node missing from the configuration, as a
//     non-voter: it gets the log without counting for the quorum;
//  3. promote a desired non-voter once it has answered every heartbeat
//     for Timing.CatchUpGrace (raft does not expose a follower's match
//     index, so this stands in for "caught up");
//  4. remove a non-voter no longer desired;
//  5. remove a voter dead for DeadTimeout, or a voter no longer desired
//     once every live desired node votes; never below min(Replicas, live
//     nodes) voters, and never leaving the live voters short of a quorum;
//  6. if this node itself is no longer desired, hand leadership to a
//     healthy desired voter (it never removes itself while leading; the
//     new leader removes it).
//
// Then a node leading more than an even share plus one hands one shard's
// leadership to a desired voter that leads fewer, one transfer in flight
// at a time. Leader counts are as this node sees them, a lower bound.
//
// Before the first SetMembers the loop changes nothing: an empty list
// would make every other voter look dead.
//
// # Proposals and NotLeaderError
//
// Propose works only on the shard's leader. Elsewhere it returns a
// *NotLeaderError, and the command was not appended: the caller sends it
// to the node named by LeaderID (mapping the raft id to that node's
// address from gossip). LeaderID is empty during an election or a
// transfer (wait a few tens of milliseconds and ask again), and always on
// a node that holds no replica of the shard, which happens as soon as
// there are more nodes than Replicas: such a node never hears from the
// shard's leader, so the caller forwards to a node of Placement(shard),
// which does (and answers with the leader if it is not the leader). An error
// wrapping ErrUnknownOutcome means the entry may still commit: retry only
// commands the state machine recognises as repeats.
//
// # Lifetimes and shutdown order
//
// Start opens every group; Bootstrap, on the first node of a new cluster
// only, makes it the sole voter of every shard without state. Close stops
// the loop and shuts every group down (each closes its transport and so
// its raftmux layer); close the Mux after it, then the store. Drain before
// Close hands leadership and replicas over without an election, provided
// the other nodes see this node as draining (Member.Draining in their
// SetMembers).
//
// # Concurrency
//
// All methods of Groups are safe for concurrent use. Every goroutine it
// starts (the reconcile loop, the heartbeat observer, one leadership
// watcher per shard, one waiter per membership change and per proposal
// with a context) ends by Close. Config.OnLeadership is called from the
// per-shard watchers; a group's reconcile state (group.term, group.since)
// belongs to the reconcile goroutine alone. Locks: members.mu and
// group.mu are leaves, never held while calling raft or each other.
package replica
