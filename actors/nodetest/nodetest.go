// Package nodetest starts whole ChatPacket nodes inside a test: a real
// Pebble store in a temp dir, the shard state machine, and a cluster node
// with the grains, on loopback. Everything stops when the test ends.
package nodetest

import (
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/grains"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/cluster"
	"github.com/chatpacket/chatpacket/storage"
	"go.uber.org/goleak"
)

// Quiet is a logger that drops everything.
var Quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// LeakIgnores are the goroutines goleak must let pass in packages that run
// protoactor: its log throttles end by themselves within a minute, and the
// grains' idle workers within seconds.
var LeakIgnores = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/chatpacket/chatpacket/actors/grains.(*workers).work"),
	goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/cluster.(*Gossiper).StartGossiping.NewThrottle.func3.1"),
	goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
	goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/cluster.NewGossipActor.NewThrottleWithLogger.func2.1"),
}

// Node is a running node and its parts.
type Node struct {
	*cluster.Node
	DB      *storage.DB
	Machine *shard.Machine
}

// Start starts a node that joins the given gossip addresses (none: a new
// cluster). It stops gracefully when the test ends.
func Start(t testing.TB, join ...string) *Node {
	t.Helper()
	key := make([]byte, storage.MasterKeyLen)
	rand.Read(key)
	db, err := storage.Open(context.Background(), storage.Options{Dir: t.TempDir(), MasterKey: key, Shards: 8, Logger: Quiet})
	if err != nil {
		t.Fatal(err)
	}
	m, err := shard.New(db)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	cfg := cluster.LocalConfig()
	cfg.Logger = Quiet
	cfg.Join = join
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ref cluster.NodeRef
	n, err := cluster.StartShards(ctx, cfg, db, m, cluster.WithKinds(grains.Kinds()...),
		cluster.WithExtensions(&grains.Deps{Machine: m, Now: time.Now, Log: Quiet, CallTimeout: 5 * time.Second, Peers: ref.PeerAddrs}))
	if err != nil {
		m.Close()
		db.Close()
		t.Fatal(err)
	}
	ref.Set(n)
	t.Cleanup(func() {
		// Graceful: protoactor's remote then stops its endpoint writers,
		// which otherwise go on redialling a stopped peer for 10 s.
		n.Stop(true)
		m.Close()
		db.Close()
	})
	return &Node{Node: n, DB: db, Machine: m}
}
