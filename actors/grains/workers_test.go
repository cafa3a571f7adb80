package grains

import (
	"testing"
	"time"
)

func TestWorkersNeverWaitForABlockedMailbox(t *testing.T) {
	w := newWorkers(300)
	release, ran := make(chan struct{}), make(chan struct{})
	w.Schedule(func() { <-release }) // a grain waiting for its commit
	w.Schedule(func() { close(ran) })
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("a mailbox waited for another that blocks")
	}
	close(release)
}

func TestWorkersReuseAWaitingWorker(t *testing.T) {
	w := newWorkers(300)
	const runs = 100
	for range runs {
		done := make(chan struct{})
		w.Schedule(func() { close(done) })
		<-done
		time.Sleep(time.Millisecond) // the worker goes back to waiting
	}
	// One worker serves them all, unless the machine was too slow for the
	// worker to be back within a millisecond now and then.
	if n := w.started.Load(); n > runs/4 {
		t.Fatalf("%d runs one after another started %d workers", runs, n)
	}
}
