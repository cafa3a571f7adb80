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
	for i := range runs {
		done := make(chan struct{})
		w.Schedule(func() { close(done) })
		<-done
		// Wait until the worker is back, waiting for the next mailbox.
		for deadline := time.Now().Add(10 * time.Second); w.waiting.Load() != 1; {
			if time.Now().After(deadline) {
				t.Fatalf("run %d: %d workers waiting, want 1", i, w.waiting.Load())
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	if n := w.started.Load(); n != 1 {
		t.Fatalf("%d runs one after another started %d workers, want 1", runs, n)
	}
}

func TestWorkersEndWhenIdle(t *testing.T) {
	w := newWorkers(300)
	done := make(chan struct{})
	w.Schedule(func() { close(done) })
	<-done
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(workerIdle + 10*time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s within %v", what, workerIdle+10*time.Second)
			}
		}
	}
	waitFor("waiting worker", func() bool { return w.waiting.Load() == 1 })
	waitFor("end of the idle worker", func() bool { return w.waiting.Load() == 0 })
}
