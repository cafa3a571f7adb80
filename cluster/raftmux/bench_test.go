package raftmux

import (
	"encoding/binary"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// BenchmarkApply commits commands on a 3-member group whose transports run
// over a Mux, and over raft's own TCP transport for comparison. "serial"
// waits for each commit before the next (latency); "parallel" keeps
// GOMAXPROCS*8 applies in flight (throughput, with raft's batching).
func BenchmarkApply(b *testing.B) {
	for _, kind := range []struct {
		name string
		new  func(b *testing.B) []raft.Transport
	}{
		{"mux", muxTransports},
		{"tcp", tcpTransports},
	} {
		b.Run("transport="+kind.name, func(b *testing.B) {
			b.Run("mode=serial", func(b *testing.B) {
				lead := benchLeader(b, kind.new(b))
				var cmd [8]byte
				for i := uint64(0); b.Loop(); i++ {
					binary.BigEndian.PutUint64(cmd[:], i)
					if err := lead.raft.Apply(cmd[:], 5*time.Second).Error(); err != nil {
						b.Fatalf("Apply = %v", err)
					}
				}
			})
			b.Run("mode=parallel", func(b *testing.B) {
				lead := benchLeader(b, kind.new(b))
				var next atomic.Uint64
				b.SetParallelism(8)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						cmd := binary.BigEndian.AppendUint64(nil, next.Add(1))
						if err := lead.raft.Apply(cmd, 5*time.Second).Error(); err != nil {
							b.Errorf("Apply = %v", err)
							return
						}
					}
				})
			})
		})
	}
}

func benchLeader(b *testing.B, transports []raft.Transport) *member {
	b.Helper()
	g := startGroup(b, transports)
	return g.leader(b, g.members, 10*time.Second)
}

// muxTransports gives each of 3 nodes its own Mux, and shard 1 a transport
// on each.
func muxTransports(b *testing.B) []raft.Transport {
	b.Helper()
	var out []raft.Transport
	for range 3 {
		m, err := ListenConfig("127.0.0.1:0", Config{})
		if err != nil {
			b.Fatalf("ListenConfig = %v", err)
		}
		b.Cleanup(func() { _ = m.Close() })
		tr, err := m.Transport(1, 2, 2*time.Second, quiet)
		if err != nil {
			b.Fatalf("Transport = %v", err)
		}
		out = append(out, tr)
	}
	return out
}

// tcpTransports gives each of 3 nodes raft's plain TCP transport.
func tcpTransports(b *testing.B) []raft.Transport {
	b.Helper()
	var out []raft.Transport
	for range 3 {
		tr, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", nil, 2, 2*time.Second, quiet)
		if err != nil {
			b.Fatalf("NewTCPTransport = %v", err)
		}
		out = append(out, tr)
	}
	return out
}
