package grains_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/grainpb"
	"github.com/chatpacket/chatpacket/actors/grains"
	"github.com/chatpacket/chatpacket/actors/nodetest"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/cluster"
	"github.com/chatpacket/chatpacket/cluster/replica"
	"github.com/chatpacket/chatpacket/storage"
)

// TestNodeWithoutAReplicaServesTheShard: with four nodes and three
// replicas per shard, a node serves writes and reads of a shard it holds no
// replica of, through the shard's leader.
func TestNodeWithoutAReplicaServesTheShard(t *testing.T) {
	if testing.Short() {
		t.Skip("four nodes")
	}
	a := nodetest.Start(t)
	nodes := []*nodetest.Node{a, nodetest.Start(t, a.GossipAddr()), nodetest.Start(t, a.GossipAddr()), nodetest.Start(t, a.GossipAddr())}
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		id, err := replica.NodeID(t.Context(), n.DB)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	shards := a.DB.Shards()
	// Each shard leaves one of the four nodes out; which ones depends on
	// the random node ids. d is a node left out of some shard, once
	// placement has settled and it holds no replica of that shard.
	var d *nodetest.Node
	var shard uint16
	deadline := time.Now().Add(30 * time.Second)
	for d == nil {
		for i, n := range nodes {
			for s := range uint16(shards) {
				placed := n.Shards().Groups.Placement(s)
				if !n.Shards().Groups.HasReplica(s) && len(placed) == 3 && !slices.Contains(placed, ids[i]) {
					d, shard = n, s
				}
			}
		}
		if d == nil && time.Now().After(deadline) {
			t.Fatal("every node holds a replica of every shard after 30 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	conv := storage.NewID()
	for storage.ShardOf(conv[:], shards) != shard {
		conv = storage.NewID()
	}
	tenant, visitor := storage.NewID(), storage.NewID()
	for i := range 3 {
		res, err := grainpb.GetConversationGrainClient(d.Cluster, conv.String()).Post(&grainpb.PostRequest{
			TenantId: tenant[:], VisitorId: visitor[:], Author: visitorAuthor(visitor), ClientId: fmt.Sprint(i), Body: fmt.Sprint("body ", i)})
		if err != nil || res.Seq != uint64(i+1) {
			t.Fatalf("Post %d through d = %v, %v", i, res, err)
		}
	}
	rec, err := d.Machine.Conversation(t.Context(), tenant, conv)
	if err != nil || rec.LastSeq != 3 {
		t.Fatalf("d reads the conversation = %v, %v; want last seq 3", rec, err)
	}
	msgs, err := d.Machine.Messages(t.Context(), tenant, conv, 1, 10)
	if err != nil || len(msgs) != 2 || msgs[0].Record.GetBody() != "body 1" || msgs[1].Seq != 3 {
		t.Fatalf("d reads messages after 1 = %v, %v", msgs, err)
	}
	if d.Shards().Groups.HasReplica(shard) {
		t.Fatal("d became a replica of the shard meanwhile; the test proved nothing")
	}
}

// TestJoinWithAnotherShardCountIsRefused: a node whose store was made with
// another shard count cannot join.
func TestJoinWithAnotherShardCountIsRefused(t *testing.T) {
	a := nodetest.Start(t) // 8 shards
	key := make([]byte, storage.MasterKeyLen)
	db, err := storage.Open(t.Context(), storage.Options{Dir: t.TempDir(), MasterKey: key, Shards: 16, Logger: nodetest.Quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	m, err := shard.New(db)
	if err != nil {
		t.Fatal(err)
	}
	cfg := cluster.LocalConfig()
	cfg.Logger, cfg.Join = nodetest.Quiet, []string{a.GossipAddr()}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	n, err := cluster.StartShards(ctx, cfg, db, m, cluster.WithKinds(grains.Kinds()...),
		cluster.WithExtensions(&grains.Deps{Machine: m, Now: time.Now, Log: nodetest.Quiet, CallTimeout: time.Second}))
	if err == nil {
		n.Stop(false)
		t.Fatal("a node with 16 shards joined a cluster of 8")
	}
	if !strings.Contains(err.Error(), "16 shards") || !strings.Contains(err.Error(), "has 8") {
		t.Fatalf("error = %v; want it to name both shard counts", err)
	}
}
