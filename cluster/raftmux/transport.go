package raftmux

import (
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Transport registers shard and returns a raft NetworkTransport over its
// layer, which is what each shard's raft.NewRaft needs. Closing the
// transport (raft.Shutdown().Error() does) closes the layer and frees the
// shard.
//
// maxPool is the idle connections kept per peer; with 64 shards per node
// each unit of it can cost 64 more sockets per peer at each end, so keep it
// at 2 or 3. timeout bounds each RPC's I/O and the dial. A nil logger
// means the Mux's logger named "raft-net".
//
// Pipelining is off (MaxRPCsInFlight 1). With raft v1.8.0's default of 2
// the pipeline's channels are unbuffered, and when its decoder returns (a
// stale term: a leader deposed while it was paused) the send loop parks for
// good: a node hung on SIGTERM for 22 minutes after a SIGSTOP test, its
// goroutines in netPipeline.AppendEntries and decodeResponses (the same
// deadlock as grafana/pyroscope#5518). raft's own notes (hashicorp/raft#541)
// find pipelining of little benefit next to batching.
func (m *Mux) Transport(shard uint16, maxPool int, timeout time.Duration, logger hclog.Logger) (*raft.NetworkTransport, error) {
	l, err := m.Layer(shard)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = m.logger.Named("raft-net")
	}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:          l,
		MaxPool:         maxPool,
		MaxRPCsInFlight: 1,
		Timeout:         timeout,
		Logger:          logger,
	}), nil
}
