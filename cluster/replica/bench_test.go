package replica

import (
	"bytes"
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkPropose commits 200-byte proposals through the shard leaders
// from 16 goroutines spread over 8 shards: on one node each batch costs a
// synced Pebble commit for the log and one for the FSM; on three, a round
// trip to a follower over the Mux as well.
func BenchmarkPropose(b *testing.B) {
	for _, nodes := range []int{1, 3} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			c := form(b, nodes, nil)
			c.waitBalanced(b, testShards)
			data := bytes.Repeat([]byte{'x'}, 200)
			var next, retries atomic.Int64
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					s := uint16(next.Add(1) % testShards)
					for {
						l, err := c.leader(s)
						if err == nil {
							if _, err = l.groups.Propose(context.Background(), s, data); err == nil {
								break
							}
						}
						retries.Add(1)
						time.Sleep(5 * time.Millisecond)
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "proposals/s")
			b.ReportMetric(float64(retries.Load()), "retries")
		})
	}
}

// BenchmarkIdle64Shards measures what 64 idle shards on 3 nodes cost in
// CPU (heartbeats: each leader sends one per follower every tenth of the
// heartbeat timeout), with LocalTiming and LANTiming. One iteration is one
// second.
func BenchmarkIdle64Shards(b *testing.B) {
	for _, timing := range []struct {
		name string
		t    Timing
	}{{"local", LocalTiming()}, {"lan", LANTiming()}} {
		b.Run(timing.name, func(b *testing.B) {
			start := time.Now()
			c := form(b, 3, func(n *node) {
				n.store = 64
				n.tune = func(c *Config) { c.Timing = timing.t; c.Timing.CatchUpGrace = time.Second }
			})
			c.waitBalanced(b, 64)
			b.Logf("3 nodes x 64 shards formed and balanced in %v", time.Since(start).Round(time.Millisecond))
			var before, after syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &before)
			b.ResetTimer()
			t0 := time.Now()
			for range b.N {
				time.Sleep(time.Second)
			}
			wall := time.Since(t0)
			b.StopTimer()
			syscall.Getrusage(syscall.RUSAGE_SELF, &after)
			cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
			b.ReportMetric(100*cpu.Seconds()/wall.Seconds()/3, "cpu%/node")
		})
	}
}

// BenchmarkFailover64Shards kills the node leading the most of 64 shards on
// 3 nodes and measures until every shard has a leader again and has
// committed a proposal.
func BenchmarkFailover64Shards(b *testing.B) {
	for range b.N {
		b.StopTimer()
		c := form(b, 3, func(n *node) { n.store = 64 })
		var victim *node
		most := -1
		for _, n := range c {
			led := 0
			for s := range uint16(64) {
				if n.groups.IsLeader(s) {
					led++
				}
			}
			if led > most {
				victim, most = n, led
			}
		}
		b.StartTimer()
		start := time.Now()
		victim.stop()
		for s := range uint16(64) {
			c.propose(b, s, "after")
		}
		b.StopTimer()
		b.Logf("killed %s leading %d of 64 shards: all 64 led and committing again %v later", victim.id, most, time.Since(start).Round(time.Millisecond))
		for _, n := range c {
			n.stop()
		}
	}
}

// waitBalanced waits until no node leads more than its share plus one of
// shards: the reconcile loops' transfers would pause proposals.
func (c cluster) waitBalanced(tb testing.TB, shards int) {
	tb.Helper()
	checkFor(tb, 30*time.Second, func() error {
		for _, n := range c {
			led := 0
			for s := range uint16(shards) {
				if n.groups.IsLeader(s) {
					led++
				}
			}
			if limit := balanceLimit(shards, len(c)); led > limit {
				return fmt.Errorf("%s leads %d of %d shards; balance allows %d", n.id, led, shards, limit)
			}
		}
		return nil
	})
}
