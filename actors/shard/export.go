package shard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
	"google.golang.org/protobuf/proto"
)

// What a tenant's export reads beyond the per-record reads: every visitor
// of the tenant and its pending invitations, page by page, so that an
// export never holds a whole tenant.
//
// Visitors are found through the tenant's visitor index, written with each
// visitor on the visitor's own shard (an index on the tenant's shard would
// need a second command, and could miss a visitor when one of the two
// failed). Listing a tenant's visitors therefore reads that prefix on every
// shard: once per export, which is rare.

func tenantVisitorKey(db *storage.DB, tenant, visitor storage.ID) []byte {
	return storage.Key(shardOf(db, visitor), TableTenantVisitor, tenant[:], visitor[:])
}

func invitationKey(db *storage.DB, tenant storage.ID, hash []byte) []byte {
	return storage.Key(shardOf(db, tenant), TableInvitation, tenant[:], hash)
}

func (s *state) putInvitation(ctx context.Context, ch *change, p *actorspb.PutInvitation) (*actorspb.Result, error) {
	tenant, err := idFrom(p.TenantId, "tenant_id")
	if err != nil {
		return nil, err
	}
	inv := p.GetInvitation()
	if _, err := keyFrom(inv.GetTokenHash(), "invitation.token_hash"); err != nil {
		return nil, err
	}
	if _, err := idFrom(inv.GetInvitedBy(), "invitation.invited_by"); err != nil {
		return nil, err
	}
	switch {
	case !strings.Contains(inv.Email, "@") || len(inv.Email) > 254:
		return nil, fmt.Errorf("%w: invitation email", ErrInvalid)
	case inv.Role == actorspb.Role_ROLE_UNSPECIFIED:
		return nil, fmt.Errorf("%w: invitation role", ErrInvalid)
	case inv.CreatedUnixMs <= 0 || inv.ExpiresUnixMs < inv.CreatedUnixMs:
		return nil, fmt.Errorf("%w: an invitation needs its time and an expiry after it", ErrInvalid)
	}
	key := invitationKey(s.db, tenant, inv.TokenHash)
	if found, err := s.exists(ctx, key, nil); err != nil || found {
		return &actorspb.Result{}, err // found: a retry
	}
	if err := ch.staged.Put(ctx, key, storage.TenantKey(tenant), inv); err != nil {
		return nil, err
	}
	s.stage(ch, key, inv)
	return &actorspb.Result{Created: true}, nil
}

// eachPage calls fn with every record under prefix, in key order, reading
// page records at a time: fn runs between reads, never inside one, so it
// may write to a slow client or read other records. A record whose key was
// shredded comes with a nil record and storage.ErrErased.
func eachPage[T any, P interface {
	*T
	proto.Message
}](ctx context.Context, m *Machine, prefix []byte, page int, fn func(key []byte, rec P, err error) error) error {
	if page <= 0 {
		return fmt.Errorf("%w: page of %d", ErrInvalid, page)
	}
	type item struct {
		key []byte
		rec P
		err error
	}
	lower, upper := prefix, storage.PrefixEnd(prefix)
	for {
		var items []item
		err := m.scan(ctx, lower, upper, page, func(key []byte, open func(proto.Message) error) error {
			it := item{key: bytes.Clone(key), rec: P(new(T))}
			switch err := open(it.rec); {
			case errors.Is(err, storage.ErrErased):
				it.rec, it.err = nil, storage.ErrErased
			case err != nil:
				return err
			}
			items = append(items, it)
			return nil
		})
		if err != nil {
			return err
		}
		for _, it := range items {
			if err := fn(it.key, it.rec, it.err); err != nil {
				return err
			}
		}
		if len(items) < page {
			return nil
		}
		lower = append(items[len(items)-1].key, 0) // the next key after the last one read
	}
}

// count returns how many records are under prefix, reading none of them
// open when they are local.
func (m *Machine) count(ctx context.Context, prefix []byte) (int, error) {
	n := 0
	err := m.scan(ctx, prefix, storage.PrefixEnd(prefix), int(^uint(0)>>1), func([]byte, func(proto.Message) error) error {
		n++
		return nil
	})
	return n, err
}

// EachTenantVisitor calls fn with the id of every visitor of tenant, a
// shard after another, reading page entries at a time. A visitor whose
// key was shredded is listed too: the caller's read of it answers
// storage.ErrErased.
func (m *Machine) EachTenantVisitor(ctx context.Context, tenant storage.ID, page int, fn func(visitor storage.ID) error) error {
	for s := range m.db.Shards() {
		prefix := storage.Key(uint16(s), TableTenantVisitor, tenant[:])
		err := eachPage(ctx, m, prefix, page, func(key []byte, _ *actorspb.TenantVisitor, _ error) error {
			return fn(storage.BytesID(key[len(prefix):]))
		})
		if err != nil {
			return fmt.Errorf("visitors of shard %d: %w", s, err)
		}
	}
	return nil
}

// TenantCounts is how many records of each kind a tenant holds, for an
// export's progress: a count taken before the export, which writes may
// change while it runs.
type TenantCounts struct {
	Conversations int
	Visitors      int
}

// CountTenant counts tenant's conversations (its inbox) and visitors.
func (m *Machine) CountTenant(ctx context.Context, tenant storage.ID) (TenantCounts, error) {
	var c TenantCounts
	var err error
	if c.Conversations, err = m.count(ctx, storage.Key(shardOf(m.db, tenant), TableInbox, tenant[:])); err != nil {
		return c, fmt.Errorf("count conversations: %w", err)
	}
	for s := range m.db.Shards() {
		n, err := m.count(ctx, storage.Key(uint16(s), TableTenantVisitor, tenant[:]))
		if err != nil {
			return c, fmt.Errorf("count visitors of shard %d: %w", s, err)
		}
		c.Visitors += n
	}
	return c, nil
}

// maxInvitations bounds what Invitations reads: a tenant invites its team,
// a few dozen people.
const maxInvitations = maxCollect

// Invitations returns the invitations of tenant, live or not (the caller
// checks each token), in token-hash order.
func (m *Machine) Invitations(ctx context.Context, tenant storage.ID) ([]*actorspb.InvitationRecord, error) {
	return collect[actorspb.InvitationRecord](ctx, m, storage.Key(shardOf(m.db, tenant), TableInvitation, tenant[:]), maxInvitations, true)
}

// EachAudit calls fn with every event of tenant's audit log, newest first,
// reading page events at a time (Audit answers at most 1000).
func (m *Machine) EachAudit(ctx context.Context, tenant storage.ID, page int, fn func(*actorspb.AuditEvent) error) error {
	return eachPage(ctx, m, storage.Key(shardOf(m.db, tenant), TableAudit, tenant[:]), page, func(_ []byte, e *actorspb.AuditEvent, err error) error {
		if err != nil {
			return nil // sealed under a key since shredded: not the tenant's to export
		}
		return fn(e)
	})
}

// TenantVisitorListed reports whether visitor has its entry in tenant's
// visitor index: visitors created before the index existed have none.
func (m *Machine) TenantVisitorListed(ctx context.Context, tenant, visitor storage.ID) (bool, error) {
	switch err := m.get(ctx, tenantVisitorKey(m.db, tenant, visitor), &actorspb.TenantVisitor{}); {
	case err == nil, errors.Is(err, storage.ErrErased):
		return true, nil
	case errors.Is(err, ErrNotFound):
		return false, nil
	default:
		return false, err
	}
}
