package shard

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
)

func emailName(email string) *actorspb.IndexName {
	return &actorspb.IndexName{Scope: actorspb.IndexScope_INDEX_SCOPE_GLOBAL, Purpose: "email", Value: []byte(email)}
}

func claim(name *actorspb.IndexName, tenant, target storage.ID) *actorspb.Command {
	return &actorspb.Command{Op: &actorspb.Command_ClaimIndex{ClaimIndex: &actorspb.ClaimIndex{
		Name: name, Record: &actorspb.IndexRecord{TenantId: tenant[:], TargetId: target[:]},
	}}}
}

func createTenant(tenant storage.ID) *actorspb.Command {
	return &actorspb.Command{Op: &actorspb.Command_CreateTenant{CreateTenant: &actorspb.CreateTenant{Tenant: &actorspb.TenantRecord{
		Id: tenant[:], Name: "Acme", WidgetKey: "wk_0123456789abcdef", CreatedUnixMs: time.Now().UnixMilli(),
	}}}}
}

// TestClaimIndexOnce claims one email from many goroutines for different
// accounts at once: exactly one wins, its retry succeeds, the others get
// ErrExists.
func TestClaimIndexOnce(t *testing.T) {
	ctx := context.Background()
	_, m := open(t, t.TempDir(), newKey())
	key := emailName("ada@example.com")
	tenant := storage.NewID()
	targets := make([]storage.ID, 16)
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i := range targets {
		targets[i] = storage.NewID()
		wg.Go(func() { _, errs[i] = m.Apply(ctx, claim(key, tenant, targets[i])) })
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("claims %d and %d both won", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, ErrExists):
			t.Fatalf("claim %d = %v; want nil or ErrExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no claim won")
	}
	if _, err := m.Apply(ctx, claim(key, tenant, targets[winner])); err != nil {
		t.Fatalf("the winner's retry = %v; want nil", err)
	}
	rec, err := m.Index(ctx, key)
	if err != nil || string(rec.TargetId) != string(targets[winner][:]) {
		t.Fatalf("Index = %v, %v; want the winner", rec, err)
	}
}

func TestTenantAgentTokenVisitor(t *testing.T) {
	ctx := context.Background()
	db, m := open(t, t.TempDir(), newKey())
	tenant, agent, visitor := storage.NewID(), storage.NewID(), storage.NewID()
	apply := func(cmd *actorspb.Command) error {
		_, err := m.Apply(ctx, cmd)
		return err
	}
	agentCmd := &actorspb.Command{Op: &actorspb.Command_CreateAgent{CreateAgent: &actorspb.CreateAgent{Agent: &actorspb.AgentRecord{
		Id: agent[:], TenantId: tenant[:], Name: "Ada", Email: "ada@example.com",
		PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", Role: actorspb.Role_ROLE_OWNER,
	}}}}
	if err := apply(agentCmd); !errors.Is(err, ErrNotFound) {
		t.Fatalf("agent of a missing tenant = %v; want ErrNotFound", err)
	}
	if err := apply(createTenant(tenant)); err != nil {
		t.Fatal(err)
	}
	if err := apply(createTenant(tenant)); !errors.Is(err, ErrExists) {
		t.Fatalf("second tenant with the same id = %v; want ErrExists", err)
	}
	if err := apply(agentCmd); err != nil {
		t.Fatal(err)
	}
	if got, err := m.Agent(ctx, tenant, agent); err != nil || got.Email != "ada@example.com" || got.Role != actorspb.Role_ROLE_OWNER {
		t.Fatalf("Agent = %v, %v", got, err)
	}
	if got, err := m.Tenant(ctx, tenant); err != nil || got.Name != "Acme" {
		t.Fatalf("Tenant = %v, %v", got, err)
	}

	hash := sha256.Sum256([]byte("a session token"))
	put := &actorspb.Command{Op: &actorspb.Command_PutToken{PutToken: &actorspb.PutToken{Hash: hash[:], Token: &actorspb.TokenRecord{
		Kind: actorspb.TokenKind_TOKEN_KIND_SESSION, TenantId: tenant[:], SubjectId: agent[:], CsrfToken: "csrf",
	}}}}
	if err := apply(put); err != nil {
		t.Fatal(err)
	}
	if got, err := m.Token(ctx, hash[:]); err != nil || got.CsrfToken != "csrf" {
		t.Fatalf("Token = %v, %v", got, err)
	}
	if err := apply(&actorspb.Command{Op: &actorspb.Command_DeleteToken{DeleteToken: &actorspb.DeleteToken{Hash: hash[:]}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Token(ctx, hash[:]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Token after delete = %v; want ErrNotFound", err)
	}

	createVisitor := &actorspb.Command{Op: &actorspb.Command_CreateVisitor{CreateVisitor: &actorspb.CreateVisitor{Visitor: &actorspb.VisitorRecord{Id: visitor[:], TenantId: tenant[:]}}}}
	if err := apply(createVisitor); err != nil {
		t.Fatal(err)
	}
	if err := apply(createVisitor); err != nil {
		t.Fatalf("retried visitor creation = %v; want nil", err)
	}
	if _, err := m.Visitor(ctx, storage.NewID(), visitor); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Visitor through another tenant = %v; want ErrNotFound", err)
	}

	// Erasing the tenant erases its tokens and team.
	if err := apply(put); err != nil {
		t.Fatal(err)
	}
	if err := db.Shred(ctx, storage.TenantKey(tenant).ID); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Token(ctx, hash[:]); !errors.Is(err, storage.ErrErased) {
		t.Fatalf("Token of an erased tenant = %v; want ErrErased", err)
	}
	if _, err := m.Agent(ctx, tenant, agent); !errors.Is(err, storage.ErrErased) {
		t.Fatalf("Agent of an erased tenant = %v; want ErrErased", err)
	}
}

// TestBatchSeesItsOwnCreations applies one batch holding two creations of
// the same tenant and two claims of one index for different targets: the
// second of each sees the first, although neither is committed yet.
func TestBatchSeesItsOwnCreations(t *testing.T) {
	_, m := open(t, t.TempDir(), newKey())
	tenant := storage.NewID()
	key := emailName("bo@example.com")
	for _, pair := range [][]*actorspb.Command{
		{createTenant(tenant), createTenant(tenant)},
		{claim(key, tenant, storage.NewID()), claim(key, tenant, storage.NewID())},
	} {
		// Apply as the shard's raft group would, both in one batch.
		f := m.fsmOf(t, pair[0])
		replies := f.ApplyBatch(entries(f.Applied()+1, pair...))
		for i, want := range []error{nil, ErrExists} {
			if err := errorOf(replies[i].(*actorspb.Reply)); !errors.Is(err, want) {
				t.Errorf("%T, command %d of the batch = %v; want %v", pair[0].Op, i, err, want)
			}
		}
	}
}
