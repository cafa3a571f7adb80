package shard

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
)

func createVisitor(tenant, visitor storage.ID) *actorspb.Command {
	return &actorspb.Command{Op: &actorspb.Command_CreateVisitor{CreateVisitor: &actorspb.CreateVisitor{Visitor: &actorspb.VisitorRecord{
		Id: visitor[:], TenantId: tenant[:], CreatedUnixMs: time.Now().UnixMilli()}}}}
}

// TestTenantVisitorIndex: every visitor of a tenant is listed, across
// shards and pages, with or without conversations; a retried creation
// lists it once; a shredded visitor is still listed; another tenant's
// visitors are not.
func TestTenantVisitorIndex(t *testing.T) {
	ctx := context.Background()
	_, m := open(t, t.TempDir(), newKey())
	tenant, other := storage.NewID(), storage.NewID()
	var want []storage.ID
	for i := range 25 {
		v := storage.NewID()
		want = append(want, v)
		if _, err := m.Apply(ctx, createVisitor(tenant, v)); err != nil {
			t.Fatal(err)
		}
		if i == 0 { // a retry
			if _, err := m.Apply(ctx, createVisitor(tenant, v)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := m.Apply(ctx, createVisitor(other, storage.NewID())); err != nil {
		t.Fatal(err)
	}
	gone := want[3]
	if err := m.Shred(ctx, gone, time.Now(), storage.SubjectKey(tenant, gone).ID); err != nil {
		t.Fatal(err)
	}
	var got []storage.ID
	if err := m.EachTenantVisitor(ctx, tenant, 2, func(v storage.ID) error { got = append(got, v); return nil }); err != nil {
		t.Fatal(err)
	}
	cmp := func(a, b storage.ID) int { return slices.Compare(a[:], b[:]) }
	slices.SortFunc(got, cmp)
	slices.SortFunc(want, cmp)
	if !slices.Equal(got, want) {
		t.Fatalf("EachTenantVisitor listed %d visitors; want the %d of the tenant", len(got), len(want))
	}
	if _, err := m.Visitor(ctx, tenant, gone); !errors.Is(err, storage.ErrErased) {
		t.Fatalf("shredded visitor read = %v; want erased", err)
	}
	c, err := m.CountTenant(ctx, tenant)
	if err != nil || c.Visitors != 25 || c.Conversations != 0 {
		t.Fatalf("CountTenant = %+v, %v; want 25 visitors, no conversations", c, err)
	}
}

func putNotice(effective, published time.Time, summary string) *actorspb.Command {
	return &actorspb.Command{Op: &actorspb.Command_PutPolicyNotice{PutPolicyNotice: &actorspb.PutPolicyNotice{Notice: &actorspb.PolicyNotice{
		EffectiveUnixMs: effective.UnixMilli(), PublishedUnixMs: published.UnixMilli(), Summary: summary}}}}
}

// TestPolicyNoticeFourteenDays: a date 13 days after the publication's date
// is refused by every replica, 14 days is stored; publishing the same date
// again replaces the summary and keeps the first publication time.
func TestPolicyNoticeFourteenDays(t *testing.T) {
	ctx := context.Background()
	_, m := open(t, t.TempDir(), newKey())
	published := time.Date(2026, 11, 28, 22, 30, 0, 0, time.UTC)
	day := func(n int) time.Time { return time.Date(2026, 11, 28+n, 0, 0, 0, 0, time.UTC) }
	for _, bad := range []*actorspb.Command{
		putNotice(day(13), published, "too soon"),
		putNotice(day(14).Add(time.Hour), published, "not a date"),
		putNotice(day(20), published, ""),
	} {
		if _, err := m.Apply(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Fatalf("put %v = %v; want ErrInvalid", bad, err)
		}
	}
	if _, err := m.Apply(ctx, putNotice(day(14), published, "first")); err != nil {
		t.Fatalf("14 days out: %v", err)
	}
	if _, err := m.Apply(ctx, putNotice(day(14), published.Add(time.Hour), "corrected")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Apply(ctx, putNotice(day(40), published, "later")); err != nil {
		t.Fatal(err)
	}
	got, err := m.PolicyNotices(ctx)
	if err != nil || len(got) != 2 || got[0].Summary != "later" || got[1].Summary != "corrected" || got[1].PublishedUnixMs != published.UnixMilli() {
		t.Fatalf("PolicyNotices = %v, %v; want later, then corrected published first", got, err)
	}
	if e := EarliestPolicyDate(published); !e.Equal(day(14)) {
		t.Fatalf("EarliestPolicyDate(%v) = %v; want %v", published, e, day(14))
	}
}

// TestEachTenant lists the tenants of every shard.
func TestEachTenant(t *testing.T) {
	ctx := context.Background()
	_, m := open(t, t.TempDir(), newKey())
	want := map[storage.ID]bool{}
	for range 7 {
		id := storage.NewID()
		want[id] = true
		if _, err := m.Apply(ctx, createTenant(id)); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	err := m.EachTenant(ctx, 2, func(rec *actorspb.TenantRecord) error {
		if !want[storage.BytesID(rec.Id)] {
			t.Errorf("unknown tenant %x", rec.Id)
		}
		n++
		return nil
	})
	if err != nil || n != len(want) {
		t.Fatalf("EachTenant = %d tenants, %v; want %d", n, err, len(want))
	}
}
