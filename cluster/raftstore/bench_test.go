package raftstore

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// BenchmarkStoreLogs appends batches of 200-byte entries, as raft does when
// it hands a leader's or follower's pending appends to the store: one op is
// one StoreLogs call, one synced commit.
func BenchmarkStoreLogs(b *testing.B) {
	for _, n := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			s := New(openDB(b, b.TempDir(), newMasterKey(b)), 1)
			data := make([]byte, 200)
			batch := make([]*raft.Log, n)
			for i := range batch {
				batch[i] = &raft.Log{Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: time.Now()}
			}
			next := uint64(1)
			b.SetBytes(int64(n * len(data)))
			b.ResetTimer()
			for b.Loop() {
				for _, l := range batch {
					l.Index = next
					next++
				}
				if err := s.StoreLogs(batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(next-1), "ns/entry")
		})
	}
}
