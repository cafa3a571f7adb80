package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/cluster/raftmux"
	"github.com/chatpacket/chatpacket/cluster/replica"
	"github.com/chatpacket/chatpacket/storage"
	"github.com/hashicorp/raft"
)

// BenchmarkPost measures message posts through the shard state machine on
// one node: each post is appended to its shard's raft log (synced), then
// applied (sealed, indexed by its client_id), and acknowledged only after
// that, from 64 concurrent writers spread over 64 conversations. Raft
// appends everything proposed during its previous append at once; compare
// with SyncedWrite/store=sealed, where each record is its own commit.
func BenchmarkPost(b *testing.B) {
	ctx := context.Background()
	key := make([]byte, storage.MasterKeyLen)
	rand.Read(key)
	db, err := storage.Open(ctx, storage.Options{Dir: b.TempDir(), MasterKey: key, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	m, err := shard.New(db)
	if err != nil {
		b.Fatal(err)
	}
	mux, err := raftmux.Listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer mux.Close()
	groups, err := replica.Start(ctx, replica.Config{
		NodeID: "bench", DB: db, Mux: mux, Timing: replica.LocalTiming(), Logger: quiet,
		FSM: func(s uint16) (raft.FSM, error) { return m.FSM(s), nil },
	})
	if err != nil {
		b.Fatal(err)
	}
	defer groups.Close()
	if err := groups.Bootstrap(); err != nil {
		b.Fatal(err)
	}
	if err := groups.WaitLeaders(ctx); err != nil {
		b.Fatal(err)
	}
	m.SetLog(soleReplica{groups})
	defer m.Close()

	const conversations = 64
	tenant := storage.NewID()
	type conv struct{ id, visitor storage.ID }
	convs := make([]conv, conversations)
	body := string(make([]byte, recordBytes))
	for i := range convs {
		convs[i] = conv{storage.NewID(), storage.NewID()}
	}
	post := func(i int, clientID string) *actorspb.Command {
		c := convs[i%conversations]
		return &actorspb.Command{Op: &actorspb.Command_Post{Post: &actorspb.PostMessage{
			TenantId: tenant[:], ConversationId: c.id[:], VisitorId: c.visitor[:],
			Author:   &actorspb.Author{Kind: actorspb.AuthorKind_AUTHOR_KIND_VISITOR, Id: c.visitor[:]},
			ClientId: clientID, Body: body, UnixMs: time.Now().UnixMilli(),
		}}}
	}
	for i := range conversations { // create the conversations and their keys first
		if _, err := m.Apply(ctx, post(i, "warm")); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("writers=64", func(b *testing.B) {
		runWriters(b, 64, func(_ []byte, i int) error {
			_, err := m.Apply(ctx, post(i, fmt.Sprint(i)))
			return err
		})
	})
}

// soleReplica is the log of a node that is every shard's only replica: it
// leads them all, so its reads never wait for another node.
type soleReplica struct{ *replica.Groups }

func (soleReplica) ReadIndex(context.Context, uint16) (uint64, error) { return 0, nil }

func (soleReplica) Read(context.Context, uint16, []byte) ([]byte, error) {
	return nil, errors.New("the sole replica of every shard never reads through another node")
}
