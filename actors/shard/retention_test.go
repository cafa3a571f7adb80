package shard

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
)

func pageView(tenant, visitor storage.ID, at time.Time, url, referrer string, event []byte) *actorspb.Command {
	return &actorspb.Command{Op: &actorspb.Command_AddPageView{AddPageView: &actorspb.AddPageView{
		TenantId: tenant[:], VisitorId: visitor[:], EventId: event,
		View: &actorspb.PageViewRecord{Url: url, Referrer: referrer, Title: "t", UnixMs: at.UnixMilli()},
	}}}
}

func newVisitor(tenant, visitor storage.ID, ua string) *actorspb.Command {
	return &actorspb.Command{Op: &actorspb.Command_CreateVisitor{CreateVisitor: &actorspb.CreateVisitor{Visitor: &actorspb.VisitorRecord{
		Id: visitor[:], TenantId: tenant[:], CreatedUnixMs: 1, Tech: &actorspb.VisitorTech{UserAgent: ua, Ip: "192.0.2.1"},
	}}}}
}

func events(t *testing.T, m *Machine, tenant storage.ID, from, to time.Time) []*actorspb.AnalyticsEvent {
	t.Helper()
	var out []*actorspb.AnalyticsEvent
	if err := m.AnalyticsEvents(context.Background(), tenant, from, to, func(e *actorspb.AnalyticsEvent) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatalf("AnalyticsEvents = %v", err)
	}
	return out
}

// TestAnalyticsEvents: a page view also records an analytics event with
// nothing personal in it (path without query, referrer host, device
// class); a restricted visitor records none; a month shredded and purged
// reads as nothing and leaves no keys, the next month stays.
func TestAnalyticsEvents(t *testing.T) {
	ctx := context.Background()
	_, m := open(t, t.TempDir(), newKey())
	tenant, visitor, restricted := storage.NewID(), storage.NewID(), storage.NewID()
	iphone := "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 Safari/604.1"
	for _, cmd := range []*actorspb.Command{createTenant(tenant), newVisitor(tenant, visitor, iphone), newVisitor(tenant, restricted, "")} {
		if _, err := m.Apply(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Apply(ctx, &actorspb.Command{Op: &actorspb.Command_SetVisitorRestricted{SetVisitorRestricted: &actorspb.SetVisitorRestricted{
		TenantId: tenant[:], VisitorId: restricted[:], Restricted: true}}}); err != nil {
		t.Fatal(err)
	}
	jan := time.Date(2025, 1, 31, 23, 59, 0, 0, time.UTC)
	feb := time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)
	views := []*actorspb.Command{
		pageView(tenant, visitor, jan, "https://shop.example/cart?email=ann@example.com#pay", "https://Search.Example/q?ann", []byte("aaaaaaaa")),
		pageView(tenant, visitor, feb, "https://shop.example", "", []byte("bbbbbbbb")),
		pageView(tenant, restricted, feb, "https://shop.example/secret", "", []byte("cccccccc")),
		pageView(tenant, visitor, feb.Add(time.Minute), "https://shop.example/none", "", nil), // no event id: no event
	}
	for _, cmd := range views {
		if _, err := m.Apply(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Apply(ctx, pageView(tenant, visitor, feb, "https://shop.example/x", "", []byte("short"))); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a page view with a 5-byte event id = %v; want ErrInvalid", err)
	}
	all := events(t, m, tenant, jan.Add(-time.Hour), feb.Add(time.Hour))
	if len(all) != 2 {
		t.Fatalf("events = %v; want 2 (none of the restricted visitor, none without an id)", all)
	}
	if e := all[0]; e.Path != "/cart" || e.ReferrerHost != "search.example" || e.Device != DeviceMobile || e.UnixMs != jan.UnixMilli() {
		t.Fatalf("january event = %v; want /cart from search.example on mobile", e)
	}
	if e := all[1]; e.Path != "/" || e.ReferrerHost != "" {
		t.Fatalf("february event = %v; want / with no referrer", e)
	}
	if got := events(t, m, storage.NewID(), jan.Add(-time.Hour), feb.Add(time.Hour)); len(got) != 0 {
		t.Fatalf("another tenant's events = %v; want none", got)
	}

	visitorShard := shardOf(m.db, visitor)
	months, err := m.AnalyticsMonthsBefore(ctx, visitorShard, Month(feb))
	if err != nil || len(months) != 1 || months[0] != (AnalyticsMonth{Tenant: tenant, Month: 202501}) {
		t.Fatalf("months before 202502 = %v, %v; want january of the tenant", months, err)
	}
	if err := m.Shred(ctx, RouteOfShard(visitorShard, m.Shards()), time.Now(), storage.MonthKey(tenant, jan).ID); err != nil {
		t.Fatal(err)
	}
	if got := events(t, m, tenant, jan.Add(-time.Hour), feb.Add(time.Hour)); len(got) != 1 || got[0].UnixMs != feb.UnixMilli() {
		t.Fatalf("events after january's shred = %v; want february's alone", got)
	}
	if err := m.PurgeAnalytics(ctx, visitorShard, tenant, 202501); err != nil {
		t.Fatal(err)
	}
	if months, err := m.AnalyticsMonthsBefore(ctx, visitorShard, Month(feb)+1); err != nil || len(months) != 1 || months[0].Month != 202502 {
		t.Fatalf("months after the purge = %v, %v; want february alone", months, err)
	}
	if err := m.PurgeAnalytics(ctx, visitorShard, tenant, 202513); !errors.Is(err, ErrInvalid) {
		t.Fatalf("purge of month 202513 = %v; want ErrInvalid", err)
	}
}

// TestTermination: terminating keeps the first delete_after, cancelling
// clears it, a bad one changes nothing.
func TestTermination(t *testing.T) {
	ctx := context.Background()
	_, m := open(t, t.TempDir(), newKey())
	tenant, owner := storage.NewID(), storage.NewID()
	if _, err := m.Apply(ctx, createTenant(tenant)); err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(time.Now().UnixMilli())
	first := now.Add(30 * 24 * time.Hour)
	rec, err := m.Terminate(ctx, tenant, owner, now, first)
	if err != nil || rec.DeleteAfterUnixMs != first.UnixMilli() || rec.TerminatedUnixMs != now.UnixMilli() || string(rec.TerminatedBy) != string(owner[:]) {
		t.Fatalf("Terminate = %v, %v; want delete_after %v", rec, err, first)
	}
	rec, err = m.Terminate(ctx, tenant, owner, now.Add(time.Hour), first.Add(time.Hour))
	if err != nil || rec.DeleteAfterUnixMs != first.UnixMilli() {
		t.Fatalf("Terminate again = %v, %v; want the first delete_after", rec, err)
	}
	if _, err := m.Terminate(ctx, tenant, owner, now, now); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Terminate with delete_after = now: %v; want ErrInvalid", err)
	}
	if _, err := m.Terminate(ctx, storage.NewID(), owner, now, first); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Terminate of no tenant = %v; want ErrNotFound", err)
	}
	if err := m.CancelTermination(ctx, tenant); err != nil {
		t.Fatal(err)
	}
	if rec, err := m.Tenant(ctx, tenant); err != nil || rec.DeleteAfterUnixMs != 0 || rec.TerminatedBy != nil {
		t.Fatalf("tenant after cancel = %v, %v; want no termination", rec, err)
	}
	if err := m.CancelTermination(ctx, tenant); err != nil {
		t.Fatalf("cancel again = %v; want nothing to do", err)
	}
	tenants, err := m.Tenants(ctx, storage.ShardOf(tenant[:], m.Shards()))
	if err != nil || len(tenants) != 1 || tenants[0].ID != tenant || tenants[0].Erased {
		t.Fatalf("Tenants = %v, %v; want the tenant", tenants, err)
	}
	if err := m.Shred(ctx, tenant, time.Now(), storage.TenantKey(tenant).ID); err != nil {
		t.Fatal(err)
	}
	if tenants, err := m.Tenants(ctx, storage.ShardOf(tenant[:], m.Shards())); err != nil || len(tenants) != 1 || !tenants[0].Erased {
		t.Fatalf("Tenants after the shred = %v, %v; want it erased", tenants, err)
	}
}

// TestJobRunsAndIndexRelease: a job's recorded period only goes forward;
// an index entry is released only while it holds the given record.
func TestJobRunsAndIndexRelease(t *testing.T) {
	ctx := context.Background()
	_, m := open(t, t.TempDir(), newKey())
	for sh := range uint16(m.Shards()) {
		if got := storage.ShardOf(func() []byte { id := RouteOfShard(sh, m.Shards()); return id[:] }(), m.Shards()); got != sh {
			t.Fatalf("RouteOfShard(%d) is of shard %d", sh, got)
		}
	}
	if run, err := m.JobRun(ctx, 3, "j"); err != nil || run.Period != 0 {
		t.Fatalf("JobRun before any = %v, %v; want period 0", run, err)
	}
	for _, p := range []int64{5, 4, 5} {
		if err := m.RecordJobRun(ctx, 3, "j", p, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if run, err := m.JobRun(ctx, 3, "j"); err != nil || run.Period != 5 {
		t.Fatalf("JobRun = %v, %v; want period 5", run, err)
	}
	if run, err := m.JobRun(ctx, 4, "j"); err != nil || run.Period != 0 {
		t.Fatalf("JobRun of another shard = %v, %v; want period 0", run, err)
	}
	if err := m.RecordJobRun(ctx, 3, "", 6, time.Now()); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a run without a job = %v; want ErrInvalid", err)
	}

	tenant, agent, other := storage.NewID(), storage.NewID(), storage.NewID()
	name := &actorspb.IndexName{Scope: actorspb.IndexScope_INDEX_SCOPE_GLOBAL, Purpose: "email", Value: []byte("ann@example.com")}
	if _, err := m.Apply(ctx, claim(name, tenant, agent)); err != nil {
		t.Fatal(err)
	}
	if err := m.ReleaseIndex(ctx, name, &actorspb.IndexRecord{TenantId: tenant[:], TargetId: other[:]}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Index(ctx, name); err != nil {
		t.Fatalf("index after releasing another record = %v; want it kept", err)
	}
	for range 2 {
		if err := m.ReleaseIndex(ctx, name, &actorspb.IndexRecord{TenantId: tenant[:], TargetId: agent[:]}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Index(ctx, name); !errors.Is(err, ErrNotFound) {
		t.Fatalf("index after release = %v; want ErrNotFound", err)
	}
	if _, err := m.Apply(ctx, claim(name, other, other)); err != nil {
		t.Fatalf("claim of the released email = %v", err)
	}
}
