package shard

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
)

func createAgent(tenant, agent storage.ID, role actorspb.Role) *actorspb.Command {
	return &actorspb.Command{Op: &actorspb.Command_CreateAgent{CreateAgent: &actorspb.CreateAgent{Agent: &actorspb.AgentRecord{
		Id: agent[:], TenantId: tenant[:], Name: "A", Email: agent.String() + "@example.com",
		PasswordHash: "$argon2id$x", Role: role, CreatedUnixMs: time.Now().UnixMilli(),
	}}}}
}

func setRole(tenant, agent storage.ID, role actorspb.Role) *actorspb.Command {
	return &actorspb.Command{Op: &actorspb.Command_SetAgentRole{SetAgentRole: &actorspb.SetAgentRole{TenantId: tenant[:], AgentId: agent[:], Role: role}}}
}

// TestLastOwnerStays: two owners demoting each other at once cannot both
// succeed; the tenant keeps an owner.
func TestLastOwnerStays(t *testing.T) {
	ctx := context.Background()
	_, m := open(t, t.TempDir(), newKey())
	tenant, a, b := storage.NewID(), storage.NewID(), storage.NewID()
	for _, cmd := range []*actorspb.Command{createTenant(tenant), createAgent(tenant, a, actorspb.Role_ROLE_OWNER), createAgent(tenant, b, actorspb.Role_ROLE_OWNER)} {
		if _, err := m.Apply(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	var errs [2]error
	var wg sync.WaitGroup
	for i, id := range []storage.ID{a, b} {
		wg.Go(func() { _, errs[i] = m.Apply(ctx, setRole(tenant, id, actorspb.Role_ROLE_AGENT)) })
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("demotions = %v, %v; want exactly one to succeed", errs[0], errs[1])
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("refused demotion = %v; want ErrInvalid", err)
		}
	}
	agents, err := m.Agents(ctx, tenant, 10)
	if err != nil {
		t.Fatal(err)
	}
	owners := 0
	for _, ag := range agents {
		if ag.Role == actorspb.Role_ROLE_OWNER {
			owners++
		}
	}
	if owners != 1 {
		t.Fatalf("%d owners; want 1", owners)
	}
	if _, err := m.Apply(ctx, setRole(tenant, storage.NewID(), actorspb.Role_ROLE_ADMIN)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("role of an unknown agent = %v; want ErrNotFound", err)
	}
}

// TestTeamsAndAudit: teams are created once, updated only when they exist,
// deleted; audit events read newest first, a retried append stores one.
func TestTeamsAndAudit(t *testing.T) {
	ctx := context.Background()
	_, m := open(t, t.TempDir(), newKey())
	tenant, team, member := storage.NewID(), storage.NewID(), storage.NewID()
	put := func(create bool, name string, members ...[]byte) error {
		_, err := m.Apply(ctx, &actorspb.Command{Op: &actorspb.Command_PutTeam{PutTeam: &actorspb.PutTeam{TenantId: tenant[:], Create: create,
			Team: &actorspb.TeamRecord{Id: team[:], TenantId: tenant[:], Name: name, MemberIds: members, CreatedUnixMs: 1}}}})
		return err
	}
	if err := put(false, "Sales"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update of a missing team = %v; want ErrNotFound", err)
	}
	if err := put(true, "Sales"); err != nil {
		t.Fatal(err)
	}
	if err := put(true, "Sales"); err != nil {
		t.Fatalf("retried creation = %v; want nil", err)
	}
	if err := put(true, "Other"); !errors.Is(err, ErrExists) {
		t.Fatalf("creation over another team = %v; want ErrExists", err)
	}
	if err := put(false, "Sales", member[:], member[:]); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a member twice = %v; want ErrInvalid", err)
	}
	if err := put(false, "Sales", member[:]); err != nil {
		t.Fatal(err)
	}
	if teams, err := m.Teams(ctx, tenant); err != nil || len(teams) != 1 || len(teams[0].MemberIds) != 1 {
		t.Fatalf("Teams = %v, %v; want Sales with one member", teams, err)
	}
	if _, err := m.Apply(ctx, &actorspb.Command{Op: &actorspb.Command_DeleteTeam{DeleteTeam: &actorspb.DeleteTeam{TenantId: tenant[:], TeamId: team[:]}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Team(ctx, tenant, team); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Team after delete = %v; want ErrNotFound", err)
	}

	appendAudit := func(id storage.ID, at int64, action string) {
		t.Helper()
		if _, err := m.Apply(ctx, &actorspb.Command{Op: &actorspb.Command_AppendAudit{AppendAudit: &actorspb.AppendAudit{
			TenantId: tenant[:], EventId: id[:], Event: &actorspb.AuditEvent{UnixMs: at, Action: action, Ip: "192.0.2.1"},
		}}}); err != nil {
			t.Fatal(err)
		}
	}
	first := storage.NewID()
	appendAudit(first, 1000, "first")
	appendAudit(first, 1000, "first") // a retry
	appendAudit(storage.NewID(), 3000, "third")
	appendAudit(storage.NewID(), 2000, "second")
	events, err := m.Audit(ctx, tenant, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range events {
		got = append(got, e.Action)
	}
	if len(got) != 3 || got[0] != "third" || got[1] != "second" || got[2] != "first" {
		t.Fatalf("Audit = %v; want third, second, first", got)
	}
	if _, err := m.Apply(ctx, &actorspb.Command{Op: &actorspb.Command_AppendAudit{AppendAudit: &actorspb.AppendAudit{
		TenantId: tenant[:], EventId: first[:], Event: &actorspb.AuditEvent{Action: "no time"},
	}}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("event without a time = %v; want ErrInvalid", err)
	}
}
