package grains

import (
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// workers is the protoactor Dispatcher of the grains: it runs mailboxes
// on goroutines that, when a run ends, wait a while for the next mailbox
// instead of ending.
//
// Why. protoactor's default dispatcher starts a goroutine for every run of
// a mailbox (each burst of messages), and a grain's handler is deep (the
// grain call's decoding, the shard machine, raft's proposal), so every one
// of those goroutines grew its stack from the start size by copying it:
// in a CPU profile of one node under load (fan-out at 3,000 msg/s),
// runtime.copystack under mailbox runs was 5.5 % of the node's CPU. A
// worker keeps its grown stack for the next mailbox.
//
// Workers are not a bound on concurrency: when no worker is waiting,
// Schedule starts one, so a mailbox that blocks (a grain waiting for its
// commit) never holds up another, exactly as with a goroutine per run. A
// worker that waits workerIdle without work ends, so a quiet node keeps
// none.
type workers struct {
	throughput int
	handoff    chan func()  // unbuffered: a send succeeds only to a waiting worker
	started    atomic.Int64 // workers started, ever
	waiting    atomic.Int32 // workers waiting for a mailbox now
}

// workerIdle is how long a worker waits for a mailbox before it ends.
const workerIdle = 2 * time.Second

// grainDispatcher runs every grain kind's mailboxes, on every node of the
// process: the workers are interchangeable goroutines.
var grainDispatcher actor.Dispatcher = newWorkers(300) // protoactor's default throughput

func newWorkers(throughput int) *workers {
	return &workers{throughput: throughput, handoff: make(chan func())}
}

// Throughput is how many messages a mailbox processes per run before it
// yields (protoactor's Dispatcher).
func (w *workers) Throughput() int { return w.throughput }

// Schedule runs fn on a waiting worker, or on a new one.
func (w *workers) Schedule(fn func()) {
	select {
	case w.handoff <- fn:
	default:
		w.started.Add(1)
		go w.work(fn)
	}
}

func (w *workers) work(fn func()) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		fn()
		idle.Reset(workerIdle)
		w.waiting.Add(1)
		select {
		case fn = <-w.handoff:
			w.waiting.Add(-1)
		case <-idle.C:
			w.waiting.Add(-1)
			return
		}
	}
}
