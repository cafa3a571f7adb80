package shard

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
	"google.golang.org/protobuf/proto"
)

// Data-subject rights: the restriction flag of a visitor, and each tenant's
// ledger of privacy requests. The ledger lives on the tenant's shard under
// the tenant key, keyed by request id (closing a request finds it by id);
// a tenant has few requests, so a listing reads them all and sorts them.

// Privacy request kinds.
const (
	PrivacyExport      = "export"
	PrivacyCorrection  = "correction"
	PrivacyRestriction = "restriction"
	PrivacyDeletion    = "deletion"
	PrivacyConsent     = "consent_withdrawal"
)

// Limits of the ledger.
const (
	MaxPrivacyNoteBytes = 1000
	maxPrivacyRequests  = maxCollect
)

func validPrivacyKind(kind string) bool {
	switch kind {
	case PrivacyExport, PrivacyCorrection, PrivacyRestriction, PrivacyDeletion, PrivacyConsent:
		return true
	}
	return false
}

func privacyRequestKey(db *storage.DB, tenant, id storage.ID) []byte {
	return storage.Key(shardOf(db, tenant), TablePrivacyRequest, tenant[:], id[:])
}

func (s *state) setVisitorRestricted(ctx context.Context, ch *change, c *actorspb.SetVisitorRestricted) (*actorspb.Result, error) {
	tenant, err := idFrom(c.TenantId, "tenant_id")
	if err != nil {
		return nil, err
	}
	visitor, err := idFrom(c.VisitorId, "visitor_id")
	if err != nil {
		return nil, err
	}
	return s.editVisitor(ctx, ch, tenant, visitor, func(rec *actorspb.VisitorRecord) {
		rec.Restricted = c.Restricted
	})
}

func (s *state) putPrivacyRequest(ctx context.Context, ch *change, p *actorspb.PutPrivacyRequest) (*actorspb.Result, error) {
	tenant, err := idFrom(p.TenantId, "tenant_id")
	if err != nil {
		return nil, err
	}
	req := p.GetRequest()
	id, err := idFrom(req.GetId(), "request.id")
	if err != nil {
		return nil, err
	}
	if _, err := idFrom(req.GetRequestedBy(), "request.requested_by"); err != nil {
		return nil, err
	}
	switch {
	case !validPrivacyKind(req.Kind):
		return nil, fmt.Errorf("%w: kind %q", ErrInvalid, req.Kind)
	case len(req.VisitorId) != 0 && len(req.VisitorId) != len(storage.ID{}):
		return nil, fmt.Errorf("%w: visitor_id has %d bytes; want 16", ErrInvalid, len(req.VisitorId))
	case req.RequestedUnixMs <= 0 || req.DueUnixMs < req.RequestedUnixMs:
		return nil, fmt.Errorf("%w: a request needs its time and a due time after it", ErrInvalid)
	case req.DoneUnixMs != 0 && req.DoneUnixMs < req.RequestedUnixMs:
		return nil, fmt.Errorf("%w: done before requested", ErrInvalid)
	case len(req.Note) > MaxPrivacyNoteBytes || !utf8.ValidString(req.Note):
		return nil, fmt.Errorf("%w: note of at most %d bytes of UTF-8", ErrInvalid, MaxPrivacyNoteBytes)
	}
	key := privacyRequestKey(s.db, tenant, id)
	if found, err := s.exists(ctx, key, nil); err != nil || found {
		return &actorspb.Result{}, err // found: a retry
	}
	if err := ch.staged.Put(ctx, key, storage.TenantKey(tenant), req); err != nil {
		return nil, err
	}
	s.stage(ch, key, req)
	return &actorspb.Result{Created: true}, nil
}

func (s *state) closePrivacyRequest(ctx context.Context, ch *change, c *actorspb.ClosePrivacyRequest) (*actorspb.Result, error) {
	tenant, err := idFrom(c.TenantId, "tenant_id")
	if err != nil {
		return nil, err
	}
	id, err := idFrom(c.RequestId, "request_id")
	if err != nil {
		return nil, err
	}
	if c.DoneUnixMs <= 0 {
		return nil, fmt.Errorf("%w: no time", ErrInvalid)
	}
	key := privacyRequestKey(s.db, tenant, id)
	var req actorspb.PrivacyRequest
	switch found, err := s.exists(ctx, key, &req); {
	case err != nil:
		return nil, err
	case !found:
		return nil, ErrNotFound
	}
	if req.DoneUnixMs != 0 {
		return &actorspb.Result{}, nil // done already: the first time stands
	}
	req.DoneUnixMs = max(c.DoneUnixMs, req.RequestedUnixMs)
	if err := ch.staged.Put(ctx, key, storage.TenantKey(tenant), &req); err != nil {
		return nil, err
	}
	s.stage(ch, key, &req)
	return &actorspb.Result{}, nil
}

// PrivacyRequest returns a request of tenant's ledger.
func (m *Machine) PrivacyRequest(ctx context.Context, tenant, id storage.ID) (*actorspb.PrivacyRequest, error) {
	var req actorspb.PrivacyRequest
	if err := m.get(ctx, privacyRequestKey(m.db, tenant, id), &req); err != nil {
		return nil, err
	}
	return &req, nil
}

// PrivacyRequests returns tenant's ledger, newest first; only the open
// requests when open.
func (m *Machine) PrivacyRequests(ctx context.Context, tenant storage.ID, open bool) ([]*actorspb.PrivacyRequest, error) {
	prefix := storage.Key(shardOf(m.db, tenant), TablePrivacyRequest, tenant[:])
	var out []*actorspb.PrivacyRequest
	err := m.scan(ctx, prefix, storage.PrefixEnd(prefix), maxPrivacyRequests, func(_ []byte, unseal func(proto.Message) error) error {
		var req actorspb.PrivacyRequest
		switch err := unseal(&req); {
		case errors.Is(err, storage.ErrErased):
			return nil
		case err != nil:
			return err
		}
		if !open || req.DoneUnixMs == 0 {
			out = append(out, &req)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b *actorspb.PrivacyRequest) int {
		if c := cmp.Compare(b.RequestedUnixMs, a.RequestedUnixMs); c != 0 {
			return c
		}
		return slices.Compare(b.Id, a.Id)
	})
	return out, nil
}

// EachPageView calls fn with every page view of a visitor of tenant,
// oldest first, reading them page records at a time so that a long
// history is never held whole.
func (m *Machine) EachPageView(ctx context.Context, tenant, visitor storage.ID, page int, fn func(*actorspb.PageViewRecord) error) error {
	if page <= 0 {
		return fmt.Errorf("%w: page of %d", ErrInvalid, page)
	}
	if _, err := m.Visitor(ctx, tenant, visitor); err != nil {
		return err
	}
	prefix := storage.Key(shardOf(m.db, visitor), TablePageView, visitor[:])
	return eachPage(ctx, m, prefix, page, func(_ []byte, v *actorspb.PageViewRecord, err error) error {
		if err != nil {
			return nil // erased: nothing to show
		}
		return fn(v)
	})
}

func (s *state) withdrawConsent(ctx context.Context, ch *change, c *actorspb.WithdrawConsent) (*actorspb.Result, error) {
	tenant, err := idFrom(c.TenantId, "tenant_id")
	if err != nil {
		return nil, err
	}
	visitor, err := idFrom(c.VisitorId, "visitor_id")
	if err != nil {
		return nil, err
	}
	res, err := s.editVisitor(ctx, ch, tenant, visitor, func(rec *actorspb.VisitorRecord) {
		rec.ConsentWithdrawn, rec.Restricted = true, true
	})
	if err != nil {
		return nil, err
	}
	views := storage.Key(shardOf(s.db, visitor), TablePageView, visitor[:])
	if err := ch.staged.DeleteRange(views, storage.PrefixEnd(views)); err != nil {
		return nil, err
	}
	return res, nil
}
