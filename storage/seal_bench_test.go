package storage

import (
	"context"
	"testing"
)

// BenchmarkSeal measures the CPU cost of sealing 200 bytes under cached
// keys, without I/O: the part of a write that sealing adds.
func BenchmarkSeal(b *testing.B) {
	ctx := context.Background()
	db := openDB(b, b.TempDir(), newMasterKey(b))
	tenant := NewID()
	refs := make([]KeyRef, 1024)
	for i := range refs {
		refs[i] = SubjectKey(tenant, NewID())
		if _, err := db.keys.seal(ctx, refs[i], []byte("warm"), nil); err != nil {
			b.Fatal(err)
		}
	}
	pkey := userKey(0, NewID())
	plaintext := make([]byte, 200)
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if _, err := db.keys.seal(ctx, refs[i%len(refs)], pkey, plaintext); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
