package shard

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
	"google.golang.org/protobuf/proto"
)

// Reads see what this node's replica has applied, after catching up with
// its shard's leader (caughtUp): every write acknowledged before the read
// began is in them. Pebble's reads are consistent snapshots of applied
// batches.

// Conversation returns a conversation of tenant. Another tenant's
// conversation is ErrNotFound, like a missing one.
func (m *Machine) Conversation(ctx context.Context, tenant, id storage.ID) (*actorspb.ConversationRecord, error) {
	var rec actorspb.ConversationRecord
	if err := m.get(ctx, conversationKey(m.db, id), &rec); err != nil {
		return nil, err
	}
	if string(rec.TenantId) != string(tenant[:]) {
		return nil, ErrNotFound
	}
	return &rec, nil
}

// Message is a stored message, or the place of one whose visitor was erased.
type Message struct {
	Seq    uint64
	Record *actorspb.MessageRecord // nil when Erased
	Erased bool
}

// Messages returns up to limit messages of a conversation of tenant with
// seq > after, in seq order.
func (m *Machine) Messages(ctx context.Context, tenant, conv storage.ID, after uint64, limit int) ([]Message, error) {
	if _, err := m.Conversation(ctx, tenant, conv); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	if after == ^uint64(0) {
		return nil, nil
	}
	lower := messageKey(m.db, conv, after+1)
	upper := storage.PrefixEnd(storage.Key(shardOf(m.db, conv), TableMessage, conv[:]))
	var out []Message
	err := m.scan(ctx, lower, upper, limit, func(key []byte, open func(proto.Message) error) error {
		seq := binary.BigEndian.Uint64(key[len(key)-8:])
		rec := &actorspb.MessageRecord{}
		switch err := open(rec); {
		case errors.Is(err, storage.ErrErased):
			out = append(out, Message{Seq: seq, Erased: true})
		case err != nil:
			return fmt.Errorf("message %d: %w", seq, err)
		default:
			out = append(out, Message{Seq: seq, Record: rec})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// errStop ends a scan that has what it needs.
var errStop = errors.New("shard: scan stopped")
