// Package backup holds the backups of a node's shards and their restore:
// Create (on a running node, through its admin socket), Restore (offline,
// into a new data dir), Prune (the retention job's 90 days) and the shred
// ledger file.
//
// Why a logical export, not a Pebble checkpoint. Key material is per
// node: every node seals under keys of its own, wrapped by its master
// key, while key ids are the same everywhere. A checkpoint would carry the
// node's raft log and snapshots (which hold message bodies under the
// node's raft key, out of reach of crypto-shredding) and could be
// restored only as that same node. So a backup carries each shard's
// replicated records open, with the KeyRef that seals them, inside one
// file sealed as a whole (crypt.go), exactly as a raft snapshot carries a
// shard to another node; Restore seals them again under the new store's
// keys. Records whose key is shredded are never written to a backup, and
// Restore leaves out every record whose key (or whose key's parent) a
// ledger names, after applying the union of the ledgers to the new store:
// nothing erased after the backup comes back.
//
// Consistency. Create catches the node's replica of each shard up with the
// shard's leader, then reads every shard from one store snapshot: each
// shard as of one applied raft index, with every write acknowledged before
// Create began.
//
// Raft. A restored shard starts a new history: Restore writes the FSM's
// applied index N, a raft snapshot at index N (term 1) whose
// configuration is the new node alone, and term 1. Raft does not restore
// snapshots at start (replica.Config.FSM) but takes its last index and
// configuration from the newest one, so the node leads every shard alone
// and appends after N, and a node that joins later is sent the snapshot:
// the leader's log does not reach back before it.
//
// Files (names in manifest.go): data.cpb (sealed records), ledger.txt
// (the shred ledger, in clear: key ids and times only), manifest.json.
// Every file is 0600 in a 0700 directory, written into a temporary
// directory renamed into place, so a directory with a manifest is a whole
// backup.
//
// Concurrency: the functions are safe to call concurrently on different
// directories; Create reads a live store while it is written.
package backup
