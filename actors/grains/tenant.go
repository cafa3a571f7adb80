package grains

import (
	"crypto/subtle"
	"errors"
	"strings"

	pacluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/grainpb"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/storage"
)

// ReasonExists answers a signup whose email is taken.
const ReasonExists = pacluster.ErrorReason_ALREADY_EXISTS

// MaxAgents bounds the roster Agents returns.
const MaxAgents = 1000

// maxListed bounds the conversations a tenant grain remembers as listed in
// its inbox; past it, it forgets them all and re-lists idempotently.
const maxListed = 100_000

// tenant is the grain of one tenant: signup, settings, the team roster,
// and the inbox, which conversation grains keep current with summaries
// and which the grain passes on to the gateways of nodes with agents of
// the tenant online.
type tenant struct {
	id     storage.ID
	deps   *Deps
	subs   subscribers
	listed map[storage.ID]bool // in the inbox, known since activation
}

var _ grainpb.Tenant = (*tenant)(nil)

func (g *tenant) Init(ctx pacluster.GrainContext) {
	g.deps = depsOf(ctx.ActorSystem())
	g.subs, g.listed = subscribers{}, map[storage.ID]bool{}
	if id, err := storage.ParseID(ctx.Identity()); err == nil {
		g.id = id
	}
	g.deps.announce(ctx, ctx.Kind(), ctx.Identity())
}

func (g *tenant) Terminate(pacluster.GrainContext)      {}
func (g *tenant) ReceiveDefault(pacluster.GrainContext) {}

// Signup claims the owner's email, then creates the tenant and its owner,
// then claims the widget key. Each step is one command on its own shard; a
// retry with the same ids repeats the steps already done harmlessly (the
// claims and creations are idempotent for the same values), so a signup
// cut off half way can be completed by calling again.
func (g *tenant) Signup(req *grainpb.SignupRequest, _ pacluster.GrainContext) (*grainpb.SignupResponse, error) {
	if g.id == (storage.ID{}) {
		return nil, pacluster.NewGrainErrorResponse(ReasonInvalid, "malformed tenant id")
	}
	owner, err := idOf(req.OwnerId, "owner_id")
	if err != nil {
		return nil, err
	}
	now := g.deps.Now().UnixMilli()
	steps := []*actorspb.Command{
		{Op: &actorspb.Command_ClaimIndex{ClaimIndex: &actorspb.ClaimIndex{
			Name:   GlobalIndexName("email", req.EmailKey),
			Record: &actorspb.IndexRecord{TenantId: g.id[:], TargetId: owner[:]},
		}}},
		{Op: &actorspb.Command_CreateTenant{CreateTenant: &actorspb.CreateTenant{Tenant: &actorspb.TenantRecord{
			Id: g.id[:], Name: strings.TrimSpace(req.Organization), WidgetKey: req.WidgetKey, CreatedUnixMs: now,
		}}}},
		{Op: &actorspb.Command_CreateAgent{CreateAgent: &actorspb.CreateAgent{Agent: &actorspb.AgentRecord{
			Id: owner[:], TenantId: g.id[:], Name: strings.TrimSpace(req.OwnerName), Email: req.OwnerEmail,
			PasswordHash: req.PasswordHash, Role: actorspb.Role_ROLE_OWNER, CreatedUnixMs: now,
		}}}},
		{Op: &actorspb.Command_ClaimIndex{ClaimIndex: &actorspb.ClaimIndex{
			Name:   GlobalIndexName("widget_key", req.WidgetKey),
			Record: &actorspb.IndexRecord{TenantId: g.id[:], TargetId: g.id[:]},
		}}},
	}
	for i, cmd := range steps {
		_, err := g.apply(cmd)
		if i == 0 && errors.Is(err, shard.ErrExists) {
			err = g.reclaim(steps[0].GetClaimIndex())
		}
		if i > 0 && errors.Is(err, shard.ErrExists) && g.sameSignup(req.WidgetKey) {
			continue // a retry of this signup: this step is done
		}
		if err != nil {
			return nil, toGrainError(err)
		}
	}
	return &grainpb.SignupResponse{TenantId: g.id[:], OwnerId: owner[:], WidgetKey: req.WidgetKey}, nil
}

// reclaim takes over an email claim whose account does not exist: the
// trace of a signup that failed after its first step. The swap is
// conditional on the entry still holding what was read, so two signups
// racing for a dangling claim cannot both win.
func (g *tenant) reclaim(claim *actorspb.ClaimIndex) error {
	ctx, cancel := g.deps.callContext()
	defer cancel()
	have, err := g.deps.Machine.Index(ctx, claim.Name)
	if err != nil {
		return err
	}
	switch _, err := g.deps.Machine.Agent(ctx, storage.BytesID(have.TenantId), storage.BytesID(have.TargetId)); {
	case err == nil:
		return shard.ErrExists // a real account
	case !errors.Is(err, shard.ErrNotFound):
		return err
	}
	retry := &actorspb.ClaimIndex{Name: claim.Name, Record: claim.Record, Replace: have}
	_, err = g.deps.Machine.Apply(ctx, &actorspb.Command{Op: &actorspb.Command_ClaimIndex{ClaimIndex: retry}})
	return err
}

// sameSignup reports whether the tenant exists and was created by a signup
// with this widget key: a random secret only that signup knows, so a retry
// completes its own signup and never adds an owner to someone else's tenant.
func (g *tenant) sameSignup(widgetKey string) bool {
	ctx, cancel := g.deps.callContext()
	defer cancel()
	t, err := g.deps.Machine.Tenant(ctx, g.id)
	return err == nil && widgetKey != "" && subtle.ConstantTimeCompare([]byte(t.WidgetKey), []byte(widgetKey)) == 1
}

func (g *tenant) apply(cmd *actorspb.Command) (*actorspb.Result, error) { return g.deps.apply(cmd) }

// check makes sure the caller asks about the grain's own tenant.
func (g *tenant) check(raw []byte) error {
	if g.id == (storage.ID{}) {
		return pacluster.NewGrainErrorResponse(ReasonInvalid, "malformed tenant id")
	}
	if string(raw) != string(g.id[:]) {
		return pacluster.NewGrainErrorResponse(ReasonNotFound, "no such tenant")
	}
	return nil
}

// Settings returns the tenant's record: name, widget key and look, allowed
// origins.
func (g *tenant) Settings(req *grainpb.TenantRequest, _ pacluster.GrainContext) (*grainpb.SettingsResponse, error) {
	if err := g.check(req.TenantId); err != nil {
		return nil, err
	}
	ctx, cancel := g.deps.callContext()
	defer cancel()
	t, err := g.deps.Machine.Tenant(ctx, g.id)
	if err != nil {
		return nil, toGrainError(err)
	}
	return &grainpb.SettingsResponse{Tenant: t}, nil
}

// UpdateSettings replaces the tenant's settings.
func (g *tenant) UpdateSettings(req *grainpb.UpdateSettingsRequest, gctx pacluster.GrainContext) (*grainpb.SettingsResponse, error) {
	if err := g.check(req.GetSettings().GetTenantId()); err != nil {
		return nil, err
	}
	if _, err := g.apply(&actorspb.Command{Op: &actorspb.Command_UpdateTenant{UpdateTenant: req.Settings}}); err != nil {
		return nil, toGrainError(err)
	}
	return g.Settings(&grainpb.TenantRequest{TenantId: g.id[:]}, gctx)
}

// Agents returns the team, without password hashes.
func (g *tenant) Agents(req *grainpb.TenantRequest, _ pacluster.GrainContext) (*grainpb.AgentsResponse, error) {
	if err := g.check(req.TenantId); err != nil {
		return nil, err
	}
	ctx, cancel := g.deps.callContext()
	defer cancel()
	agents, err := g.deps.Machine.Agents(ctx, g.id, MaxAgents)
	if err != nil {
		return nil, toGrainError(err)
	}
	for _, a := range agents {
		a.PasswordHash = ""
	}
	return &grainpb.AgentsResponse{Agents: agents}, nil
}

// Summarize lists a conversation in the inbox the first time this
// activation hears of it, then passes the summary on to the subscribers.
func (g *tenant) Summarize(req *grainpb.ConversationSummary, ctx pacluster.GrainContext) (*grainpb.Empty, error) {
	if err := g.check(req.TenantId); err != nil {
		return nil, err
	}
	conv := req.GetConversation()
	id, err := idOf(conv.GetId(), "conversation.id")
	if err != nil {
		return nil, err
	}
	if !g.listed[id] {
		if _, err := g.apply(&actorspb.Command{Op: &actorspb.Command_AddToInbox{AddToInbox: &actorspb.AddToInbox{
			TenantId: g.id[:], Entry: &actorspb.InboxEntry{ConversationId: id[:], VisitorId: conv.VisitorId, CreatedUnixMs: conv.CreatedUnixMs},
		}}}); err != nil {
			return nil, toGrainError(err)
		}
		if len(g.listed) >= maxListed {
			clear(g.listed)
		}
		g.listed[id] = true
	}
	g.subs.publish(ctx, g.id[:], &grainpb.TenantEvent{TenantId: g.id[:], Event: &grainpb.TenantEvent_Summary{Summary: req}}, g.deps.Now())
	return &grainpb.Empty{}, nil
}

// Subscribe starts or renews a gateway's lease on the tenant's events.
func (g *tenant) Subscribe(req *grainpb.SubscribeRequest, _ pacluster.GrainContext) (*grainpb.Empty, error) {
	if err := g.check(req.TenantId); err != nil {
		return nil, err
	}
	if err := g.subs.add(req, g.deps.Now()); err != nil {
		return nil, err
	}
	return &grainpb.Empty{}, nil
}

// GlobalIndexName names an entry of the cluster-wide index: an agent's
// email (normalized), a widget key.
func GlobalIndexName(purpose, value string) *actorspb.IndexName {
	return &actorspb.IndexName{Scope: actorspb.IndexScope_INDEX_SCOPE_GLOBAL, Purpose: purpose, Value: []byte(value)}
}

// SessionIndexName names the entry of a widget session id in its tenant's
// index.
func SessionIndexName(tenant storage.ID, sessionID string) *actorspb.IndexName {
	return &actorspb.IndexName{Scope: actorspb.IndexScope_INDEX_SCOPE_TENANT, TenantId: tenant[:], Purpose: "session", Value: []byte(sessionID)}
}

// idOf checks and converts an id field of a grain request.
func idOf(raw []byte, field string) (storage.ID, error) {
	if len(raw) != len(storage.ID{}) {
		return storage.ID{}, pacluster.NewGrainErrorResponse(ReasonInvalid, field+" must have 16 bytes")
	}
	return storage.BytesID(raw), nil
}
