// Package raftmux lets every raft group on a node share one TCP listener.
//
// A node hosts up to 64 hashicorp/raft groups, one per shard. Giving each
// its own port would mean 64 ports to open, advertise and firewall per node,
// so a [Mux] owns the node's single listener and hands each shard a [Layer],
// a raft.StreamLayer whose Accept returns only that shard's connections.
//
// # Wire format
//
// A connection opened by [Layer.Dial] starts with a 4-byte header
// (magic 0xC4, version 1, shard as big-endian uint16); after it the bytes
// are raft's own NetworkTransport protocol, untouched. The header is read
// once per connection, so a multiplexed RPC costs no more than a plain one
// once raft has pooled the connection. There is no reply to the header: a
// connection for a shard that is not registered is closed, and the dialing
// raft sees EOF on its first RPC and retries with its usual back-off.
//
// # Concurrency
//
// All methods of [Mux] and [Layer] are safe for concurrent use. Each
// incoming connection's header is read in its own goroutine under a
// deadline (Config.HandshakeTimeout), so a silent or garbage peer delays
// nobody else. The number of connections in handshake at once is capped
// (Config.MaxHandshakes); beyond it new connections are closed at once.
//
// Lock order: Mux.mu and Layer.mu are never held together, and neither is
// held while closing a socket, waiting on a channel or calling raft. Should
// that ever be needed, take Mux.mu before Layer.mu. The partition set's
// mutex is a leaf: only Partition and Heal take it, to replace the set.
//
// # Lifetimes
//
// Closing a Layer unregisters its shard and closes every connection it
// accepted or dialed, queued ones included. Raft's NetworkTransport.Close
// (called by raft.Shutdown().Error()) closes its stream layer, so shutting a
// group down frees its shard. Closing the Mux closes the listener, every
// handshake in progress and every layer, then waits for its goroutines.
//
// Shut down in this order: raft.Shutdown().Error() for each group (which
// closes its transport and so its layer), then Mux.Close. Closing the Mux
// first is safe but leaves each raft transport's accept loop retrying,
// and logging at Error, until its own Close.
//
// # Partitions, for tests and fault drills
//
// [Mux.Partition] cuts this node off from chosen peers without touching
// the network: it closes the connections its layers dialed to them and
// refuses new dials until [Mux.Heal]. Raft replies on the connection the
// request came on, so partitioning both ends' dials (a.Partition(b) and
// b.Partition(a)) cuts the pair completely, which is what raft's own
// testing.go does with its in-memory transports. The normal dial path pays
// one atomic load for it.
//
// # Traps found in hashicorp/raft and in others' multiplexers
//
//   - NetworkTransport pools connections keyed by ServerAddress alone and
//     has one consumer channel. All groups on a node share that address, so
//     ONE NetworkTransport shared by several groups would mix their RPCs on
//     the same pooled connections. Each shard therefore gets its own
//     NetworkTransport over its own Layer ([Mux.Transport]), and a connection
//     is bound to its shard by the header for its whole life.
//   - The pools multiply: each transport keeps up to maxPool idle connections
//     per peer, plus one per pipeline and one for heartbeats. With 64 shards
//     and 2 peers that is 64*2*(maxPool+2) outgoing sockets per node and as
//     many incoming: about 1,000 file descriptors with maxPool 2. Keep maxPool
//     small and the descriptor limit high. (A proposed weaviate change,
//     weaviate/weaviate#10468, put yamux sessions under the layers to avoid
//     this; we keep plain TCP connections so raft's pooling and pipelining
//     work unchanged and one shard's snapshot transfer shares no TCP stream,
//     and so no head-of-line blocking, with another shard's heartbeats.)
//   - NetworkTransport's accept loop never stops on an Accept error: it backs
//     off from 5 ms to 1 s (hashicorp/raft#301) and logs at Error unless its
//     own shutdown channel is closed. Accept on a closed Layer returns an
//     error wrapping net.ErrClosed; only the transport's Close ends the loop.
//   - NetworkTransport.Close neither closes its pooled connections nor the
//     inbound ones its handlers block on (only CloseStreams does): with plain
//     TCPStreamLayer those goroutines outlive raft. Layer.Close closes them,
//     and a connection closed that way reads as io.EOF, which raft's handler
//     treats as a normal end instead of logging "failed to decode".
//   - Consul and Nomad share their RPC port with raft the same way: a type
//     byte, then a RaftLayer whose Accept reads from a channel fed by a
//     Handoff call; InfluxDB's old tcp.Mux routed raft by a first byte too.
//     Ours follows them, with a shard number in the header and a bounded
//     handoff so a shard whose raft is not accepting cannot pile up
//     connections.
//   - The address raft advertises to its peers is Layer.Addr, which is the
//     Mux's address: listening on 0.0.0.0 or [::] needs Config.Advertise,
//     as raft's own TCP transport refuses an unspecified address.
package raftmux
