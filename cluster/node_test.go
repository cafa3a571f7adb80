package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// protoactor's log throttles end by themselves within a minute of
		// their last use; they hold nothing.
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/cluster.(*Gossiper).StartGossiping.NewThrottle.func3.1"),
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/cluster.NewGossipActor.NewThrottleWithLogger.func2.1"),
	)
}

func testConfig(t *testing.T) Config {
	t.Helper()
	cfg := LocalConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return cfg
}

// waitFor polls check until it is nil or the deadline passes.
func waitFor(t *testing.T, within time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func members(n *Node, want int) func() error {
	return func() error {
		if got := n.Members(); got != want {
			return fmt.Errorf("node sees %d members; want %d", got, want)
		}
		return nil
	}
}

func start(t *testing.T, cfg Config) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("Start = %v", err)
	}
	t.Cleanup(func() { n.Stop(false) })
	return n
}

func TestOneNodeFormsAClusterOfOne(t *testing.T) {
	n := start(t, testConfig(t))
	waitFor(t, 5*time.Second, members(n, 1))
	n.Stop(true)
	n.Stop(true) // twice is fine
}

// TestNodesJoinWhateverTheirOrder starts a node whose seed is not up yet:
// it keeps trying, and both see two members once the seed starts. Then one
// leaves gracefully and the other sees it go.
func TestNodesJoinWhateverTheirOrder(t *testing.T) {
	seedAddr := freeAddr(t)
	joiner := testConfig(t)
	joiner.Join = []string{seedAddr}
	started := make(chan *Node, 1)
	errs := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		n, err := Start(ctx, joiner)
		if err != nil {
			errs <- err
			return
		}
		started <- n
	}()
	// Not a readiness wait: the seed is held back so that the joiner's first
	// attempts fail, which is what this test is about.
	time.Sleep(500 * time.Millisecond)
	seedCfg := testConfig(t)
	seedCfg.GossipAddr = seedAddr
	seed := start(t, seedCfg)

	var b *Node
	select {
	case b = <-started:
		t.Cleanup(func() { b.Stop(false) })
	case err := <-errs:
		t.Fatalf("joiner Start = %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the joiner did not join within 20 s")
	}
	waitFor(t, 5*time.Second, members(seed, 2))
	waitFor(t, 5*time.Second, members(b, 2))

	b.Stop(true)
	waitFor(t, 10*time.Second, members(seed, 1))
}

func TestStartRefusesBadConfig(t *testing.T) {
	cfg := testConfig(t)
	cfg.GossipAddr = "no port"
	if _, err := Start(context.Background(), cfg); err == nil {
		t.Fatal("Start with a bad gossip address succeeded")
	}
}

// freeAddr returns a loopback address with a port free for TCP and UDP.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err == nil {
			u.Close()
			return addr
		}
	}
	t.Fatal("no free port for TCP and UDP")
	return ""
}
