package shard

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
	"google.golang.org/protobuf/proto"
)

// Limits on what a visitor's browser may report.
const (
	MaxURLBytes   = 2048
	MaxTitleBytes = 512
	MaxUABytes    = 512
)

func pageViewKey(db *storage.DB, visitor storage.ID, unixMs int64, n uint32) []byte {
	suffix := binary.BigEndian.AppendUint64(nil, uint64(unixMs))
	return storage.Key(shardOf(db, visitor), TablePageView, visitor[:], binary.BigEndian.AppendUint32(suffix, n))
}

// visitorOf reads a visitor of tenant as the batch sees it.
func (s *state) visitorOf(ctx context.Context, tenant, visitor storage.ID) (*actorspb.VisitorRecord, error) {
	var rec actorspb.VisitorRecord
	found, err := s.exists(ctx, visitorKey(s.db, visitor), &rec)
	switch {
	case err != nil:
		return nil, err
	case !found || string(rec.TenantId) != string(tenant[:]):
		return nil, ErrNotFound
	}
	return &rec, nil
}

func (s *state) touchVisitor(ctx context.Context, ch *change, t *actorspb.TouchVisitor) (*actorspb.Result, error) {
	tenant, err := idFrom(t.TenantId, "tenant_id")
	if err != nil {
		return nil, err
	}
	visitor, err := idFrom(t.VisitorId, "visitor_id")
	if err != nil {
		return nil, err
	}
	if len(t.GetTech().GetUserAgent()) > MaxUABytes || len(t.GetTech().GetReferrer()) > MaxURLBytes {
		return nil, fmt.Errorf("%w: technical data too long", ErrInvalid)
	}
	return s.editVisitor(ctx, ch, tenant, visitor, func(rec *actorspb.VisitorRecord) {
		rec.Tech, rec.LastSeenUnixMs = t.Tech, t.UnixMs
	})
}

// editVisitor reads a visitor of tenant as the batch sees it, applies edit
// and stages the result.
func (s *state) editVisitor(ctx context.Context, ch *change, tenant, visitor storage.ID, edit func(*actorspb.VisitorRecord)) (*actorspb.Result, error) {
	rec, err := s.visitorOf(ctx, tenant, visitor)
	if err != nil {
		return nil, err
	}
	edit(rec)
	key := visitorKey(s.db, visitor)
	if err := ch.staged.Put(ctx, key, storage.SubjectKey(tenant, visitor), rec); err != nil {
		return nil, err
	}
	s.stage(ch, key, rec)
	return &actorspb.Result{}, nil
}

func (s *state) setVisitorContact(ctx context.Context, ch *change, c *actorspb.SetVisitorContact) (*actorspb.Result, error) {
	tenant, err := idFrom(c.TenantId, "tenant_id")
	if err != nil {
		return nil, err
	}
	visitor, err := idFrom(c.VisitorId, "visitor_id")
	if err != nil {
		return nil, err
	}
	if len(c.Name) > 200 || len(c.Email) > 254 || c.Email != "" && !strings.Contains(c.Email, "@") {
		return nil, fmt.Errorf("%w: contact name at most 200 bytes, email a plain address", ErrInvalid)
	}
	return s.editVisitor(ctx, ch, tenant, visitor, func(rec *actorspb.VisitorRecord) {
		rec.ContactName, rec.ContactEmail = c.Name, c.Email
	})
}

func (s *state) addPageView(ctx context.Context, ch *change, a *actorspb.AddPageView) (*actorspb.Result, error) {
	tenant, err := idFrom(a.TenantId, "tenant_id")
	if err != nil {
		return nil, err
	}
	visitor, err := idFrom(a.VisitorId, "visitor_id")
	if err != nil {
		return nil, err
	}
	v := a.GetView()
	switch {
	case v.GetUrl() == "" || len(v.Url) > MaxURLBytes || len(v.Referrer) > MaxURLBytes:
		return nil, fmt.Errorf("%w: a page view needs a url of at most %d bytes", ErrInvalid, MaxURLBytes)
	case len(v.Title) > MaxTitleBytes:
		return nil, fmt.Errorf("%w: title over %d bytes", ErrInvalid, MaxTitleBytes)
	case v.UnixMs <= 0:
		return nil, fmt.Errorf("%w: no time", ErrInvalid)
	}
	rec, err := s.visitorOf(ctx, tenant, visitor)
	switch {
	case err != nil:
		return nil, err
	case rec.ConsentWithdrawn:
		return &actorspb.Result{}, nil // not kept, nor counted: the visitor said no
	}
	// Two views in one millisecond get distinct keys.
	var key []byte
	for n := uint32(0); ; n++ {
		key = pageViewKey(s.db, visitor, v.UnixMs, n)
		found, err := s.exists(ctx, key, nil)
		if err != nil {
			return nil, err
		}
		if !found {
			break
		}
	}
	if err := ch.staged.Put(ctx, key, storage.SubjectKey(tenant, visitor), v); err != nil {
		return nil, err
	}
	s.stage(ch, key, v)
	if err := s.addAnalyticsEvent(ctx, ch, tenant, visitor, a, rec); err != nil {
		return nil, err
	}
	return &actorspb.Result{}, nil
}

// PageViews returns a visitor's latest page views, newest first, at most
// limit.
func (m *Machine) PageViews(ctx context.Context, tenant, visitor storage.ID, limit int) ([]*actorspb.PageViewRecord, error) {
	if _, err := m.Visitor(ctx, tenant, visitor); err != nil {
		return nil, err
	}
	all, err := collect[actorspb.PageViewRecord](ctx, m, storage.Key(shardOf(m.db, visitor), TablePageView, visitor[:]), maxCollect, false)
	if err != nil && !errors.Is(err, storage.ErrErased) {
		return nil, err
	}
	// Keys sort oldest first; answer the newest.
	out := make([]*actorspb.PageViewRecord, 0, min(limit, len(all)))
	for i := len(all) - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, all[i])
	}
	return out, nil
}

func visitorConversationKey(db *storage.DB, visitor, conv storage.ID) []byte {
	return storage.Key(shardOf(db, visitor), TableVisitorConversation, visitor[:], conv[:])
}

// addVisitorConversation lists a conversation under its visitor; listing it
// again changes nothing.
func (s *state) addVisitorConversation(ctx context.Context, ch *change, a *actorspb.AddVisitorConversation) (*actorspb.Result, error) {
	tenant, err := idFrom(a.TenantId, "tenant_id")
	if err != nil {
		return nil, err
	}
	visitor, err := idFrom(a.VisitorId, "visitor_id")
	if err != nil {
		return nil, err
	}
	conv, err := idFrom(a.GetEntry().GetConversationId(), "entry.conversation_id")
	if err != nil {
		return nil, err
	}
	if _, err := s.visitorOf(ctx, tenant, visitor); err != nil {
		return nil, err
	}
	key := visitorConversationKey(s.db, visitor, conv)
	if found, err := s.exists(ctx, key, nil); err != nil || found {
		return &actorspb.Result{}, err
	}
	if err := ch.staged.Put(ctx, key, storage.SubjectKey(tenant, visitor), a.Entry); err != nil {
		return nil, err
	}
	s.stage(ch, key, a.Entry)
	return &actorspb.Result{Created: true}, nil
}

// VisitorConversations returns the conversations of a visitor, newest
// first, at most limit.
func (m *Machine) VisitorConversations(ctx context.Context, tenant, visitor storage.ID, limit int) ([]*actorspb.VisitorConversation, error) {
	if _, err := m.Visitor(ctx, tenant, visitor); err != nil {
		return nil, err
	}
	all, err := collect[actorspb.VisitorConversation](ctx, m, storage.Key(shardOf(m.db, visitor), TableVisitorConversation, visitor[:]), maxCollect, false)
	if err != nil {
		return nil, err
	}
	// Keys sort by conversation id, which is random: order by time here.
	slices.SortFunc(all, func(a, b *actorspb.VisitorConversation) int {
		return cmp.Compare(b.CreatedUnixMs, a.CreatedUnixMs)
	})
	return all[:min(limit, len(all))], nil
}

// maxCollect bounds how many records collect reads.
const maxCollect = 10_000

// collect opens the records under prefix, in key order, at most limit;
// skipErased passes over records whose key was shredded, where a list
// outlives some of its entries (teams, audit events).
func collect[T any, P interface {
	*T
	proto.Message
}](ctx context.Context, m *Machine, prefix []byte, limit int, skipErased bool) ([]P, error) {
	var all []P
	err := m.scan(ctx, prefix, storage.PrefixEnd(prefix), limit, func(_ []byte, open func(proto.Message) error) error {
		rec := P(new(T))
		switch err := open(rec); {
		case err == nil:
			all = append(all, rec)
		case !skipErased || !errors.Is(err, storage.ErrErased):
			return err
		}
		return nil
	})
	return all, err
}
