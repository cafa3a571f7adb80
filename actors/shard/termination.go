package shard

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
	"google.golang.org/protobuf/proto"
)

// Account termination. An owner's termination sets delete_after on the
// tenant record; until then the tenant is in its grace period (the API
// keeps everyone but owners out and the widget quiet), and at that time
// retention erases the tenant: it releases the global index entries that
// would outlive it (its agents' emails, its widget key) and shreds the
// tenant key, which wraps every key of its people and months.

func (s *state) setTermination(ctx context.Context, ch *change, c *actorspb.SetTermination) (*actorspb.Result, error) {
	tenant, err := idFrom(c.TenantId, "tenant_id")
	if err != nil {
		return nil, err
	}
	if c.DeleteAfterUnixMs < 0 || c.DeleteAfterUnixMs > 0 && (c.UnixMs <= 0 || c.DeleteAfterUnixMs <= c.UnixMs) {
		return nil, fmt.Errorf("%w: a termination needs its time and a later delete_after", ErrInvalid)
	}
	key := tenantKey(s.db, tenant)
	var rec actorspb.TenantRecord
	if found, err := s.exists(ctx, key, &rec); err != nil {
		return nil, err
	} else if !found {
		return nil, ErrNotFound
	}
	switch {
	case c.DeleteAfterUnixMs > 0 && rec.DeleteAfterUnixMs > 0:
		return &actorspb.Result{}, nil // terminating already: the first delete_after stands
	case c.DeleteAfterUnixMs == 0 && rec.DeleteAfterUnixMs == 0:
		return &actorspb.Result{}, nil // nothing to cancel
	case c.DeleteAfterUnixMs > 0:
		rec.TerminatedUnixMs, rec.DeleteAfterUnixMs, rec.TerminatedBy = c.UnixMs, c.DeleteAfterUnixMs, c.AgentId
	default:
		rec.TerminatedUnixMs, rec.DeleteAfterUnixMs, rec.TerminatedBy = 0, 0, nil
	}
	if err := ch.staged.Put(ctx, key, storage.TenantKey(tenant), &rec); err != nil {
		return nil, err
	}
	s.stage(ch, key, &rec)
	return &actorspb.Result{Created: true}, nil
}

func (s *state) releaseIndex(ctx context.Context, ch *change, r *actorspb.ReleaseIndex) (*actorspb.Result, error) {
	key, _, err := indexKey(ctx, s.db, r.GetName())
	if err != nil {
		return nil, err
	}
	var have actorspb.IndexRecord
	switch found, err := s.exists(ctx, key, &have); {
	case err != nil:
		return nil, err
	case !found || !proto.Equal(&have, r.GetRecord()):
		return &actorspb.Result{}, nil // gone already, or someone else's now
	}
	if err := ch.staged.Delete(key); err != nil {
		return nil, err
	}
	s.stage(ch, key, nil)
	return &actorspb.Result{Created: true}, nil
}

// Terminate starts tenant's termination, asked by agent at now: the tenant
// is erased at deleteAfter. It answers the tenant's record after, whose
// delete_after is the first one asked for when it was terminating already.
func (m *Machine) Terminate(ctx context.Context, tenant, agent storage.ID, now, deleteAfter time.Time) (*actorspb.TenantRecord, error) {
	if _, err := m.Apply(ctx, &actorspb.Command{Op: &actorspb.Command_SetTermination{SetTermination: &actorspb.SetTermination{
		TenantId: tenant[:], DeleteAfterUnixMs: deleteAfter.UnixMilli(), UnixMs: now.UnixMilli(), AgentId: agent[:],
	}}}); err != nil {
		return nil, err
	}
	return m.Tenant(ctx, tenant)
}

// CancelTermination ends tenant's grace period: nothing will be erased.
func (m *Machine) CancelTermination(ctx context.Context, tenant storage.ID) error {
	_, err := m.Apply(ctx, &actorspb.Command{Op: &actorspb.Command_SetTermination{SetTermination: &actorspb.SetTermination{TenantId: tenant[:]}}})
	return err
}

// ReleaseIndex deletes the entry of name if it still holds rec.
func (m *Machine) ReleaseIndex(ctx context.Context, name *actorspb.IndexName, rec *actorspb.IndexRecord) error {
	_, err := m.Apply(ctx, &actorspb.Command{Op: &actorspb.Command_ReleaseIndex{ReleaseIndex: &actorspb.ReleaseIndex{Name: name, Record: rec}}})
	return err
}

// PurgeAnalytics deletes tenant's analytics events of month in shard.
func (m *Machine) PurgeAnalytics(ctx context.Context, shard uint16, tenant storage.ID, month uint32) error {
	route := RouteOfShard(shard, m.db.Shards())
	_, err := m.Apply(ctx, &actorspb.Command{Op: &actorspb.Command_PurgeAnalytics{PurgeAnalytics: &actorspb.PurgeAnalytics{
		Route: route[:], TenantId: tenant[:], Month: month,
	}}})
	return err
}

// ShardTenant is a tenant whose home is a shard, as Tenants lists it.
type ShardTenant struct {
	ID     storage.ID
	Record *actorspb.TenantRecord // nil when Erased
	Erased bool
}

// maxShardTenants bounds what one Tenants call returns.
const maxShardTenants = 100_000

// Tenants returns the tenants whose record lives in shard, erased ones
// included, in id order.
func (m *Machine) Tenants(ctx context.Context, shard uint16) ([]ShardTenant, error) {
	prefix := storage.TablePrefix(shard, TableTenant)
	var out []ShardTenant
	err := m.scan(ctx, prefix, storage.PrefixEnd(prefix), maxShardTenants, func(key []byte, open func(proto.Message) error) error {
		t := ShardTenant{ID: storage.BytesID(key[len(prefix):])}
		var rec actorspb.TenantRecord
		switch err := open(&rec); {
		case errors.Is(err, storage.ErrErased):
			t.Erased = true
		case err != nil:
			return fmt.Errorf("tenant %s: %w", t.ID, err)
		default:
			t.Record = &rec
		}
		out = append(out, t)
		return nil
	})
	return out, err
}
