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
//
// Client is the other end, used by `chatpacket admin cluster status` and
// `chatpacket admin node drain`.
//
// Concurrency: a Server's methods are safe for concurrent use. Start starts
// the HTTP server on its own goroutine; Close stops it, waits for every
// handler (a drain's handler ends with its request), and removes the
// socket. Close it before stopping the node.
package admin
