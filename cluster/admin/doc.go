// Package admin is a node's operator endpoint and its client: HTTP over a
// Unix socket in the node's data dir (admin.sock, mode 0600), so that only
// the user the node runs as, on the node's own machine, can reach it. There
// is no token to leak and no port to firewall: file permissions are the
// access control.
//
//   - GET /cluster answers a Status: this node's id, the members gossip
//     shows, and every shard's raft group as this node sees it.
//   - POST /drain?node=ID&timeout=D drains this node (cluster.Node.Drain)
//     and streams its Progress as newline-delimited JSON, one line a second,
//     until it is drained, the timeout ends, or the client goes away.
//   - POST /backup?dir=ABS writes a backup of every shard (cluster/backup)
//     and streams its progress as newline-delimited JSON, one line a
//     shard, then a last line with the manifest.
//   - GET /ledger answers the node's shred ledger (backup.WriteLedger's
//     format), for restoring an older backup.
//
// Client is the other end, used by `chatpacket admin cluster status`,
// `chatpacket admin node drain`, `chatpacket admin backup` and
// `chatpacket admin ledger export`.
//
// Concurrency: a Server's methods are safe for concurrent use. Start starts
// the HTTP server on its own goroutine; Close stops it, waits for every
// handler (a drain's handler ends with its request), and removes the
// socket. Close it before stopping the node.
package admin
