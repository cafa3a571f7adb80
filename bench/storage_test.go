package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/storage"
	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The storage benchmarks compare the sealed store with plain Pebble on the
// same machine in the same run: same record (a 200-byte protobuf), same
// synced commits, same key layout. The plain side is the baseline the
// sealing overhead is measured against.

const (
	recordBytes = 200
	subjects    = 1024 // distinct subject keys the sealed writers rotate through
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func record() proto.Message {
	body := make([]byte, recordBytes-3) // 3 bytes of protobuf framing
	rand.Read(body)
	return wrapperspb.Bytes(body)
}

type target struct {
	name string
	open func(b *testing.B) (put func(key []byte, i int) error, get func(key []byte) error, close func())
}

// plainTarget writes the records with Pebble alone: the baseline.
func plainTarget() target { return plain("plain", 0) }

// paddedTarget writes plain records made as long as sealed ones (the
// envelope adds storage.EnvelopeOverhead bytes): the gap between it and
// sealed is the CPU cost of sealing, the gap between plain and it the cost
// of the bigger records.
func paddedTarget() target { return plain("plain-padded", storage.EnvelopeOverhead) }

func plain(name string, pad int) target {
	return target{name: name, open: func(b *testing.B) (func([]byte, int) error, func([]byte) error, func()) {
		db, err := pebble.Open(b.TempDir(), &pebble.Options{Logger: discardPebble{}, FormatMajorVersion: pebble.FormatNewest})
		if err != nil {
			b.Fatal(err)
		}
		msg := record()
		padding := make([]byte, pad)
		rand.Read(padding)
		put := func(key []byte, _ int) error {
			// Marshal per record, as the sealed side does: the comparison is
			// of sealing, not of protobuf.
			val, err := proto.Marshal(msg)
			if err != nil {
				return err
			}
			return db.Set(key, append(val, padding...), pebble.Sync)
		}
		get := func(key []byte) error {
			v, closer, err := db.Get(key)
			if err != nil {
				return err
			}
			var m wrapperspb.BytesValue
			err = proto.Unmarshal(v[:len(v)-pad], &m)
			closer.Close()
			return err
		}
		return put, get, func() { db.Close() }
	}}
}

func sealedTarget() target {
	return target{name: "sealed", open: func(b *testing.B) (func([]byte, int) error, func([]byte) error, func()) {
		ctx := context.Background()
		key := make([]byte, storage.MasterKeyLen)
		rand.Read(key)
		db, err := storage.Open(ctx, storage.Options{Dir: b.TempDir(), MasterKey: key, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		tenant := storage.NewID()
		refs := make([]storage.KeyRef, subjects)
		msg := record()
		for i := range refs {
			// Create the keys outside the timed part: the benchmark measures
			// steady-state sealing, not key creation.
			refs[i] = storage.SubjectKey(tenant, storage.NewID())
			if err := db.Put(ctx, storage.Key(0, storage.TableFirstUser, []byte("warm"), fmt.Append(nil, i)), refs[i], msg); err != nil {
				b.Fatal(err)
			}
		}
		put := func(k []byte, i int) error { return db.Put(ctx, k, refs[i%subjects], msg) }
		get := func(k []byte) error {
			var m wrapperspb.BytesValue
			return db.Get(ctx, k, &m)
		}
		return put, get, func() { db.Close() }
	}}
}

func benchKey(i int) []byte {
	id := storage.NewID()
	return storage.Key(uint16(i%storage.DefaultShards), storage.TableFirstUser, id[:])
}

// runWriters performs b.N puts from exactly writers goroutines and reports
// records per second.
func runWriters(b *testing.B, writers int, put func([]byte, int) error) {
	keys := make([][]byte, b.N)
	for i := range keys {
		keys[i] = benchKey(i)
	}
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range writers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				if err := put(keys[i], i); err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rec/s")
}

// BenchmarkSyncedWrite: every record its own synced commit, from 1 and from
// 64 concurrent writers (Pebble's commit pipeline groups the latter's fsyncs).
func BenchmarkSyncedWrite(b *testing.B) {
	for _, writers := range []int{1, 64} {
		for _, t := range []target{plainTarget(), paddedTarget(), sealedTarget()} {
			// One store per case, opened outside b.Run: the framework calls
			// the function several times while it sizes b.N.
			put, _, closeDB := t.open(b)
			b.Run(fmt.Sprintf("store=%s/writers=%d", t.name, writers), func(b *testing.B) {
				runWriters(b, writers, put)
			})
			closeDB()
		}
	}
}

// BenchmarkRead: point reads of existing records, 1 and 64 readers. The
// sealed side opens the envelope and unmarshals, with its keys cached.
func BenchmarkRead(b *testing.B) {
	const stored = 20000
	for _, t := range []target{plainTarget(), sealedTarget()} {
		put, get, closeDB := t.open(b)
		keys := make([][]byte, stored)
		var wg sync.WaitGroup
		for w := range 64 { // fill concurrently: synced writes share fsyncs
			wg.Go(func() {
				for i := w; i < stored; i += 64 {
					keys[i] = benchKey(i)
					if err := put(keys[i], i); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		for _, readers := range []int{1, 64} {
			b.Run(fmt.Sprintf("store=%s/readers=%d", t.name, readers), func(b *testing.B) {
				runWriters(b, readers, func(_ []byte, i int) error { return get(keys[i%stored]) })
			})
		}
		closeDB()
	}
}

type discardPebble struct{}

func (discardPebble) Infof(string, ...any)  {}
func (discardPebble) Errorf(string, ...any) {}
func (discardPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

// BenchmarkOfferedLoad writes at a fixed rate, each record from its own
// goroutine, as a server's independent requests arrive, and reports the
// commit latency each record saw (median and 99th percentile). Unlike the
// closed loop of BenchmarkSyncedWrite, where all writers wake from one
// fsync at once and race to the next, arrivals here are spread in time.
func BenchmarkOfferedLoad(b *testing.B) {
	for _, rate := range []int{5000, 20000} {
		for _, t := range []target{plainTarget(), sealedTarget()} {
			put, _, closeDB := t.open(b)
			b.Run(fmt.Sprintf("store=%s/rate=%d", t.name, rate), func(b *testing.B) {
				keys := make([][]byte, b.N)
				for i := range keys {
					keys[i] = benchKey(i)
				}
				lat := make([]time.Duration, b.N)
				var failed atomic.Value
				var wg sync.WaitGroup
				interval := time.Second / time.Duration(rate)
				b.ResetTimer()
				start := time.Now()
				for i := range b.N {
					if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
						time.Sleep(d)
					}
					wg.Go(func() {
						t0 := time.Now()
						if err := put(keys[i], i); err != nil {
							failed.Store(err)
						}
						lat[i] = time.Since(t0)
					})
				}
				wg.Wait()
				b.StopTimer()
				if err := failed.Load(); err != nil {
					b.Fatal(err)
				}
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			})
			closeDB()
		}
	}
}
