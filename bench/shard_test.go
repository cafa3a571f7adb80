package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/storage"
)

// BenchmarkPost measures message posts through the shard state machine:
// each post is sealed, indexed by its client_id, and acknowledged only after
// its synced commit, from 64 concurrent writers spread over 64
// conversations. The per-shard applier commits everything queued during
// its previous commit at once; compare with SyncedWrite/store=sealed, where
// each record is its own commit.
func BenchmarkPost(b *testing.B) {
	ctx := context.Background()
	key := make([]byte, storage.MasterKeyLen)
	rand.Read(key)
	db, err := storage.Open(ctx, storage.Options{Dir: b.TempDir(), MasterKey: key, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	m := shard.New(db)
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
