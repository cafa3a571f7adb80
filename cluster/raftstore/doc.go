// Package raftstore keeps hashicorp/raft's state on the node's sealed Pebble
// store (storage.DB): the log and stable store of a raft group (Store) and
// its snapshots (Snapshots). Each shard is its own raft group, and all the
// groups of a node share the node's one Pebble, so every record lives under
// its shard's prefix, in tables of its own:
//
//	shard | TableRaftLog          | index (uint64, big endian)        → LogEntry
//	shard | TableRaftStable       | raft's key name                   → StableValue
//	shard | TableRaftSnapshot     | snapshot id (24) | chunk (uint32) → SnapshotChunk
//	shard | TableRaftSnapshotMeta | snapshot id (24)                  → SnapshotMeta
//
// Big-endian numbers make key order the order raft cares about: log index,
// then chunk number; a snapshot id is term, index and creation time, so
// snapshots sort as raft's FileSnapshotStore sorts them.
//
// Sealing. Every value is sealed under storage.RaftLogKey, like every other
// value of the store: log entries and snapshots carry commands whole,
// message bodies included, and no message body may appear in clear in any
// file of the data dir. That key belongs to the node and erasing a person
// does not destroy it; see its comment for what bounds how long an erased
// person's data stays in raft state.
//
// Durability. Every write is a synced commit: StoreLogs writes all its
// entries in one batch (one fsync per call, which is what raft's batching of
// appends expects), and a snapshot is listed only once its last chunks and
// its metadata are durable in one batch.
//
// Node-local state. These tables are this node's view of each group, not
// replicated data: the FSM's snapshot and restore of a shard must cover its
// replicated tables (storage.TableFirstUser and up) and leave these alone.
// So must it leave alone the key record of storage.RaftLogKey, which the
// keyring keeps, like every key record, in the storage.TableKey range of
// whichever shard storage.ShardOf gives its id: that record, too, is this
// node's own, and without it the node's raft state cannot be opened.
//
// Concurrency: Store and Snapshots are safe for concurrent use, as raft
// requires (it reads the log from its replication goroutines while the main
// loop appends and the snapshot goroutine truncates). A snapshot sink and a
// snapshot reader are each used by one goroutine at a time.
package raftstore
