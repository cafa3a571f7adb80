package shard

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
)

// accountFixture makes a tenant and its owner.
func accountFixture(t *testing.T) (context.Context, *storage.DB, *Machine, storage.ID, storage.ID, func(*actorspb.Command) error) {
	t.Helper()
	ctx := context.Background()
	db, m := open(t, t.TempDir(), newKey())
	tenant, agent := storage.NewID(), storage.NewID()
	apply := func(cmd *actorspb.Command) error {
		_, err := m.Apply(ctx, cmd)
		return err
	}
	if err := apply(createTenant(tenant)); err != nil {
		t.Fatal(err)
	}
	if err := apply(&actorspb.Command{Op: &actorspb.Command_CreateAgent{CreateAgent: &actorspb.CreateAgent{Agent: &actorspb.AgentRecord{
		Id: agent[:], TenantId: tenant[:], Name: "Ada", Email: "ada@example.com",
		PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", Role: actorspb.Role_ROLE_OWNER,
	}}}}); err != nil {
		t.Fatal(err)
	}
	return ctx, db, m, tenant, agent, apply
}

func hashOf(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func login(tenant, agent storage.ID, token string, at int64, ua string) *actorspb.Command {
	return &actorspb.Command{Op: &actorspb.Command_AddAgentSession{AddAgentSession: &actorspb.AddAgentSession{
		TenantId: tenant[:], AgentId: agent[:], TokenHash: hashOf(token),
		Session: &actorspb.AgentSession{CreatedUnixMs: at, ExpiresUnixMs: at + 1000},
		Event:   &actorspb.LoginEvent{UnixMs: at, Ip: "192.0.2.1", UserAgent: ua},
	}}}
}

// TestAgentSessionsAndLoginRing: logins index their sessions and keep the
// latest MaxLoginEvents events; removing sessions takes them out.
func TestAgentSessionsAndLoginRing(t *testing.T) {
	ctx, _, m, tenant, agent, apply := accountFixture(t)
	start := time.Now().UnixMilli()
	const logins = MaxLoginEvents + 7
	for i := range logins {
		if err := apply(login(tenant, agent, fmt.Sprint("token ", i), start+int64(i), fmt.Sprint("ua ", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := apply(login(tenant, storage.NewID(), "x", start, "ua")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("session of a missing agent = %v; want ErrNotFound", err)
	}
	sessions, err := m.AgentSessions(ctx, tenant, agent, 1000)
	if err != nil || len(sessions) != logins {
		t.Fatalf("AgentSessions = %d, %v; want %d", len(sessions), err, logins)
	}
	events, err := m.LoginEvents(ctx, tenant, agent)
	if err != nil || len(events) != MaxLoginEvents {
		t.Fatalf("LoginEvents = %d, %v; want %d", len(events), err, MaxLoginEvents)
	}
	if events[0].UserAgent != fmt.Sprint("ua ", logins-1) || events[len(events)-1].UserAgent != fmt.Sprint("ua ", logins-MaxLoginEvents) {
		t.Fatalf("LoginEvents run from %q to %q; want the latest %d, newest first", events[0].UserAgent, events[len(events)-1].UserAgent, MaxLoginEvents)
	}
	if acc, err := m.Account(ctx, tenant, agent); err != nil || acc.Logins != logins {
		t.Fatalf("Account = %v, %v; want %d logins", acc, err, logins)
	}
	if err := apply(&actorspb.Command{Op: &actorspb.Command_RemoveAgentSessions{RemoveAgentSessions: &actorspb.RemoveAgentSessions{
		TenantId: tenant[:], AgentId: agent[:], TokenHashes: sessions[1:],
	}}}); err != nil {
		t.Fatal(err)
	}
	if left, err := m.AgentSessions(ctx, tenant, agent, 1000); err != nil || len(left) != 1 || string(left[0]) != string(sessions[0]) {
		t.Fatalf("AgentSessions after removing all but one = %d, %v", len(left), err)
	}
}

// TestTwoFactorCommands: a pending secret grants nothing until enabled with
// the same secret; a time step and a recovery code each work once.
func TestTwoFactorCommands(t *testing.T) {
	ctx, _, m, tenant, agent, apply := accountFixture(t)
	tn, ag := tenant[:], agent[:]
	use := func(step int64, code string) error {
		u := &actorspb.UseSecondFactor{TenantId: tn, AgentId: ag, Step: step}
		if code != "" {
			u.RecoveryCodeHash = hashOf(code)
		}
		return apply(&actorspb.Command{Op: &actorspb.Command_UseSecondFactor{UseSecondFactor: u}})
	}
	enable := func(secret string) error {
		return apply(&actorspb.Command{Op: &actorspb.Command_EnableTwoFactor{EnableTwoFactor: &actorspb.EnableTwoFactor{
			TenantId: tn, AgentId: ag, Secret: secret, RecoveryCodeHashes: [][]byte{hashOf("r1"), hashOf("r2")}, Step: 10,
		}}})
	}
	setup := func(secret string) error {
		return apply(&actorspb.Command{Op: &actorspb.Command_SetupTwoFactor{SetupTwoFactor: &actorspb.SetupTwoFactor{TenantId: tn, AgentId: ag, PendingSecret: secret}}})
	}
	if err := use(11, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second factor while off = %v; want ErrNotFound", err)
	}
	if err := setup("SECRETONE"); err != nil {
		t.Fatal(err)
	}
	if err := setup("SECRETTWO"); err != nil {
		t.Fatal(err)
	}
	if err := enable("SECRETONE"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("enable with a replaced pending secret = %v; want ErrNotFound", err)
	}
	if err := enable("SECRETTWO"); err != nil {
		t.Fatal(err)
	}
	if err := setup("SECRETTHREE"); !errors.Is(err, ErrExists) {
		t.Fatalf("setup while on = %v; want ErrExists", err)
	}
	for _, tc := range []struct {
		step int64
		code string
		want error
	}{
		{10, "", ErrNotFound}, // the step that enabled it
		{11, "", nil},
		{11, "", ErrNotFound},
		{0, "r1", nil},
		{0, "r1", ErrNotFound},
		{0, "nope", ErrNotFound},
		{0, "r2", nil},
	} {
		if err := use(tc.step, tc.code); !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
			t.Errorf("use(%d, %q) = %v; want %v", tc.step, tc.code, err, tc.want)
		}
	}
	if err := apply(&actorspb.Command{Op: &actorspb.Command_DisableTwoFactor{DisableTwoFactor: &actorspb.DisableTwoFactor{TenantId: tn, AgentId: ag}}}); err != nil {
		t.Fatal(err)
	}
	if acc, err := m.Account(ctx, tenant, agent); err != nil || acc.TotpSecret != "" || len(acc.RecoveryCodeHashes) != 0 {
		t.Fatalf("Account after disable = %v, %v", acc, err)
	}
}

// TestConsumeTokenOnce: of two consumptions of a token, one succeeds, and
// a token of another kind is not consumed.
func TestConsumeTokenOnce(t *testing.T) {
	ctx, _, m, tenant, agent, apply := accountFixture(t)
	h := hashOf("reset token")
	if err := apply(&actorspb.Command{Op: &actorspb.Command_PutToken{PutToken: &actorspb.PutToken{Hash: h, Token: &actorspb.TokenRecord{
		Kind: actorspb.TokenKind_TOKEN_KIND_PASSWORD_RESET, TenantId: tenant[:], SubjectId: agent[:],
	}}}}); err != nil {
		t.Fatal(err)
	}
	consume := func(kind actorspb.TokenKind) error {
		return apply(&actorspb.Command{Op: &actorspb.Command_ConsumeToken{ConsumeToken: &actorspb.ConsumeToken{Hash: h, Kind: kind}}})
	}
	if err := consume(actorspb.TokenKind_TOKEN_KIND_SESSION); !errors.Is(err, ErrNotFound) {
		t.Fatalf("consume as another kind = %v; want ErrNotFound", err)
	}
	if err := consume(actorspb.TokenKind_TOKEN_KIND_PASSWORD_RESET); err != nil {
		t.Fatal(err)
	}
	if err := consume(actorspb.TokenKind_TOKEN_KIND_PASSWORD_RESET); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second consume = %v; want ErrNotFound", err)
	}
	if _, err := m.Token(ctx, h); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Token after consume = %v; want ErrNotFound", err)
	}

	// Password and verification change the agent and its account.
	if err := apply(&actorspb.Command{Op: &actorspb.Command_SetAgentPassword{SetAgentPassword: &actorspb.SetAgentPassword{
		TenantId: tenant[:], AgentId: agent[:], PasswordHash: "$argon2id$new",
	}}}); err != nil {
		t.Fatal(err)
	}
	if a, err := m.Agent(ctx, tenant, agent); err != nil || a.PasswordHash != "$argon2id$new" || a.Email != "ada@example.com" {
		t.Fatalf("Agent after SetAgentPassword = %v, %v", a, err)
	}
	if err := apply(&actorspb.Command{Op: &actorspb.Command_VerifyAgentEmail{VerifyAgentEmail: &actorspb.VerifyAgentEmail{TenantId: tenant[:], AgentId: agent[:]}}}); err != nil {
		t.Fatal(err)
	}
	if acc, err := m.Account(ctx, tenant, agent); err != nil || !acc.EmailVerified {
		t.Fatalf("Account after verify = %v, %v", acc, err)
	}
}
