package shard

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
)

func putPrivacyRequest(tenant storage.ID, req *actorspb.PrivacyRequest) *actorspb.Command {
	return &actorspb.Command{Op: &actorspb.Command_PutPrivacyRequest{PutPrivacyRequest: &actorspb.PutPrivacyRequest{TenantId: tenant[:], Request: req}}}
}

// TestPrivacyLedger: requests list newest first, a retried put stores one,
// closing keeps the first done time, and another tenant sees none of them.
func TestPrivacyLedger(t *testing.T) {
	ctx := context.Background()
	_, m := open(t, t.TempDir(), newKey())
	tenant, other, agent := storage.NewID(), storage.NewID(), storage.NewID()
	for _, cmd := range []*actorspb.Command{createTenant(tenant), createTenant(other)} {
		if _, err := m.Apply(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UnixMilli()
	due := now + (30 * 24 * time.Hour).Milliseconds()
	first, second := storage.NewID(), storage.NewID()
	for _, req := range []*actorspb.PrivacyRequest{
		{Id: first[:], Kind: PrivacyExport, RequestedBy: agent[:], RequestedUnixMs: now, DueUnixMs: due, DoneUnixMs: now},
		{Id: second[:], Kind: PrivacyDeletion, RequestedBy: agent[:], RequestedUnixMs: now + 1, DueUnixMs: due + 1, Note: "by email"},
		{Id: second[:], Kind: PrivacyDeletion, RequestedBy: agent[:], RequestedUnixMs: now + 1, DueUnixMs: due + 1, Note: "by email"},
	} {
		if _, err := m.Apply(ctx, putPrivacyRequest(tenant, req)); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []*actorspb.PrivacyRequest{
		{Id: first[:], Kind: "gossip", RequestedBy: agent[:], RequestedUnixMs: now, DueUnixMs: due},
		{Id: first[:], Kind: PrivacyExport, RequestedBy: agent[:], RequestedUnixMs: now, DueUnixMs: now - 1},
	} {
		if _, err := m.Apply(ctx, putPrivacyRequest(tenant, bad)); !errors.Is(err, ErrInvalid) {
			t.Fatalf("put %v = %v; want ErrInvalid", bad, err)
		}
	}
	all, err := m.PrivacyRequests(ctx, tenant, false)
	if err != nil || len(all) != 2 || string(all[0].Id) != string(second[:]) {
		t.Fatalf("ledger = %v, %v; want two, the deletion first", all, err)
	}
	open, err := m.PrivacyRequests(ctx, tenant, true)
	if err != nil || len(open) != 1 || open[0].Kind != PrivacyDeletion {
		t.Fatalf("open = %v, %v; want the deletion", open, err)
	}
	closeReq := func(tenant storage.ID, at int64) error {
		_, err := m.Apply(ctx, &actorspb.Command{Op: &actorspb.Command_ClosePrivacyRequest{ClosePrivacyRequest: &actorspb.ClosePrivacyRequest{
			TenantId: tenant[:], RequestId: second[:], DoneUnixMs: at}}})
		return err
	}
	if err := closeReq(other, now+5); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another tenant closes = %v; want ErrNotFound", err)
	}
	for _, at := range []int64{now + 5, now + 9} {
		if err := closeReq(tenant, at); err != nil {
			t.Fatal(err)
		}
	}
	got, err := m.PrivacyRequest(ctx, tenant, second)
	if err != nil || got.DoneUnixMs != now+5 {
		t.Fatalf("closed = %v, %v; want done at the first close", got, err)
	}
	if open, _ := m.PrivacyRequests(ctx, tenant, true); len(open) != 0 {
		t.Fatalf("open after close = %v; want none", open)
	}
	if theirs, _ := m.PrivacyRequests(ctx, other, false); len(theirs) != 0 {
		t.Fatalf("another tenant's ledger = %v; want none", theirs)
	}
}
