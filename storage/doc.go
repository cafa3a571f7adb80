// Package storage holds ChatPacket's state on disk: a Pebble store in which
// every value is sealed under a key that belongs to one tenant, one person
// or one month, so that erasing is destroying a key (crypto-shredding).
//
// The parts, one file each:
//
//   - keyspace.go: how Pebble keys are built (shard | table | random ids);
//     no personal data is ever in a key.
//   - envelope.go: the sealed value format (AES-256-GCM, bound to its key).
//   - keys.go, keyring.go: the key hierarchy (master → tenant → subject and
//     month keys), lazy creation, use counting and rotation, the key cache.
//   - masterkey.go: where the master key comes from and the KEYCHECK file
//     that refuses a wrong one before anything is written.
//   - db.go: the store: sealed Put, Get, Scan and Batch, Shred and the shred
//     ledger, checkpoints.
//   - index.go: blind indexes (HMAC) for lookups by personal values.
//
// Durability and throughput. Every commit is synced before it returns.
// Pebble's commit pipeline lets concurrent synced commits share one fsync,
// so the write path is "many goroutines, each committing its own batch": a
// caller that needs throughput writes from many goroutines (one per grain,
// in the server) or batches its records, and never holds a lock across a
// commit. bench/ measures both against plain Pebble.
//
// Concurrency: a DB and its methods are safe for concurrent use; a Batch is
// not. Close waits for calls in flight and later calls get ErrClosed.
package storage
