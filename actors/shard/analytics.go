package shard

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
	"google.golang.org/protobuf/proto"
)

// Visitor analytics: every page view a visitor's widget reports is also
// kept, stripped of anything personal, as an AnalyticsEvent sealed under
// the tenant's key of the event's month. The event is written by the page
// view's own command, so it lives in the visitor's shard (a command writes
// only its own shard), and a tenant's analytics are spread over every
// shard:
//
//	shard | TableAnalytics | tenant | month (yyyymm, uint32) | unix ms (uint64) | event id
//
// Retention (actors/retention) runs on each shard's leader: it shreds a
// month's key through that shard's log 12 months later and then deletes
// the month's range there (PurgeAnalytics), so the events are unreadable
// on every replica and in every backup, and the space comes back. The key holds no personal data: ids are random, times are
// the events'. The event itself holds no visitor id, so analytics survive
// a visitor's erasure without pointing back to them; a restricted visitor
// (restriction of processing) is left out of analytics altogether.

// Limits of analytics events.
const (
	maxAnalyticsPath = 512
	analyticsIDBytes = 8
)

// Device classes of analytics events.
const (
	DeviceDesktop = "desktop"
	DeviceMobile  = "mobile"
	DeviceTablet  = "tablet"
	DeviceUnknown = "unknown"
)

// Month is a calendar month in UTC as analytics keys hold it: yyyymm.
func Month(t time.Time) uint32 {
	t = t.UTC()
	return uint32(t.Year()*100 + int(t.Month()))
}

// MonthStart is the first instant of month m (yyyymm), UTC.
func MonthStart(m uint32) time.Time {
	return time.Date(int(m/100), time.Month(m%100), 1, 0, 0, 0, 0, time.UTC)
}

func analyticsPrefix(shard uint16, tenant storage.ID) []byte {
	return storage.Key(shard, TableAnalytics, tenant[:])
}

func analyticsMonthPrefix(shard uint16, tenant storage.ID, month uint32) []byte {
	return binary.BigEndian.AppendUint32(analyticsPrefix(shard, tenant), month)
}

func analyticsKey(shard uint16, tenant storage.ID, unixMs int64, id []byte) []byte {
	k := analyticsMonthPrefix(shard, tenant, Month(time.UnixMilli(unixMs)))
	return append(binary.BigEndian.AppendUint64(k, uint64(unixMs)), id...)
}

// analyticsEventOf strips a page view down to what analytics keep: the
// URL's path (no query or fragment, no host: the site is the tenant's),
// the referrer's host, the device class.
func analyticsEventOf(v *actorspb.PageViewRecord, tech *actorspb.VisitorTech) *actorspb.AnalyticsEvent {
	e := &actorspb.AnalyticsEvent{UnixMs: v.UnixMs, Path: "/", Device: deviceOf(tech)}
	if u, err := url.Parse(v.Url); err == nil && u.Path != "" {
		e.Path = u.Path
	}
	if len(e.Path) > maxAnalyticsPath {
		e.Path = e.Path[:maxAnalyticsPath]
	}
	if u, err := url.Parse(v.Referrer); err == nil {
		e.ReferrerHost = strings.ToLower(u.Hostname())
	}
	return e
}

// deviceOf classes a visitor's device by its user agent: tablets first
// (an iPad or an Android without "Mobile"), then phones.
func deviceOf(t *actorspb.VisitorTech) string {
	ua := t.GetUserAgent()
	switch {
	case ua == "":
		return DeviceUnknown
	case strings.Contains(ua, "iPad") || strings.Contains(ua, "Tablet") || strings.Contains(ua, "Android") && !strings.Contains(ua, "Mobile"):
		return DeviceTablet
	case strings.Contains(ua, "Mobi") || strings.Contains(ua, "iPhone"):
		return DeviceMobile
	}
	return DeviceDesktop
}

// addAnalyticsEvent stages the analytics event of a page view, in the
// page view's command. Nothing is recorded for a restricted visitor, or
// when the proposer chose no event id.
func (s *state) addAnalyticsEvent(ctx context.Context, ch *change, tenant, visitor storage.ID, a *actorspb.AddPageView, rec *actorspb.VisitorRecord) error {
	if rec.Restricted || len(a.EventId) == 0 {
		return nil
	}
	if len(a.EventId) != analyticsIDBytes {
		return fmt.Errorf("%w: event_id has %d bytes; want %d", ErrInvalid, len(a.EventId), analyticsIDBytes)
	}
	v := a.GetView()
	e := analyticsEventOf(v, rec.Tech)
	key := analyticsKey(shardOf(s.db, visitor), tenant, v.UnixMs, a.EventId)
	if err := ch.staged.Put(ctx, key, storage.MonthKey(tenant, time.UnixMilli(v.UnixMs)), e); err != nil {
		return err
	}
	s.stage(ch, key, e)
	return nil
}

func (s *state) purgeAnalytics(ch *change, p *actorspb.PurgeAnalytics) (*actorspb.Result, error) {
	route, err := idFrom(p.Route, "route")
	if err != nil {
		return nil, err
	}
	tenant, err := idFrom(p.TenantId, "tenant_id")
	if err != nil {
		return nil, err
	}
	if m := p.Month; m/100 < 1970 || m%100 < 1 || m%100 > 12 {
		return nil, fmt.Errorf("%w: month %d is not yyyymm", ErrInvalid, m)
	}
	prefix := analyticsMonthPrefix(shardOf(s.db, route), tenant, p.Month)
	if err := ch.staged.DeleteRange(prefix, storage.PrefixEnd(prefix)); err != nil {
		return nil, err
	}
	return &actorspb.Result{}, nil
}

// MaxAnalyticsEvents bounds the events one analytics read counts.
const MaxAnalyticsEvents = 1_000_000

// AnalyticsEvents calls fn for tenant's analytics events with from <= time
// < to, shard by shard (in time order within each), at most
// MaxAnalyticsEvents. Events of months whose key was shredded are passed
// over: they are gone.
func (m *Machine) AnalyticsEvents(ctx context.Context, tenant storage.ID, from, to time.Time, fn func(*actorspb.AnalyticsEvent) error) error {
	if !from.Before(to) {
		return nil
	}
	left := MaxAnalyticsEvents
	for sh := range uint16(m.db.Shards()) {
		lower := binary.BigEndian.AppendUint64(analyticsMonthPrefix(sh, tenant, Month(from)), uint64(from.UnixMilli()))
		upper := binary.BigEndian.AppendUint64(analyticsMonthPrefix(sh, tenant, Month(to)), uint64(to.UnixMilli()))
		err := m.scan(ctx, lower, upper, left, func(_ []byte, open func(proto.Message) error) error {
			left--
			var e actorspb.AnalyticsEvent
			switch err := open(&e); {
			case errors.Is(err, storage.ErrErased):
				return nil
			case err != nil:
				return err
			}
			return fn(&e)
		})
		if err != nil {
			return fmt.Errorf("analytics of shard %d: %w", sh, err)
		}
		if left <= 0 {
			return nil
		}
	}
	return nil
}

// AnalyticsMonth is a tenant's month of analytics events in one shard.
type AnalyticsMonth struct {
	Tenant storage.ID
	Month  uint32
}

// maxAnalyticsMonths bounds what one AnalyticsMonthsBefore call returns;
// retention calls again for the rest once it purged these.
const maxAnalyticsMonths = 10_000

// AnalyticsMonthsBefore returns the (tenant, month) pairs of shard whose
// month is before before and that still hold events, in key order. It
// reads keys alone, seeking past each pair it finds, so it costs one seek
// per pair however many events a month holds.
func (m *Machine) AnalyticsMonthsBefore(ctx context.Context, shard uint16, before uint32) ([]AnalyticsMonth, error) {
	var out []AnalyticsMonth
	table := storage.TablePrefix(shard, TableAnalytics)
	lower, upper := table, storage.PrefixEnd(table)
	for len(out) < maxAnalyticsMonths {
		var key []byte
		err := m.scan(ctx, lower, upper, 1, func(k []byte, _ func(proto.Message) error) error {
			key = bytes.Clone(k) // the iterator's buffer is reused
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(key) < len(table)+16+4 {
			return out, nil
		}
		tenant := storage.BytesID(key[len(table) : len(table)+16])
		month := binary.BigEndian.Uint32(key[len(table)+16:])
		if month >= before {
			// Nothing more of this tenant is old enough: on to the next.
			lower = storage.PrefixEnd(analyticsPrefix(shard, tenant))
			continue
		}
		out = append(out, AnalyticsMonth{Tenant: tenant, Month: month})
		lower = storage.PrefixEnd(analyticsMonthPrefix(shard, tenant, month))
	}
	return out, nil
}
