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

// tenant is the grain of one tenant. For now it creates tenants; its
// settings, team and inbox come with the rest of step 2.
type tenant struct {
	id   storage.ID
	deps *Deps
}

var _ grainpb.Tenant = (*tenant)(nil)

func (g *tenant) Init(ctx pacluster.GrainContext) {
	g.deps = depsOf(ctx.ActorSystem())
	if id, err := storage.ParseID(ctx.Identity()); err == nil {
		g.id = id
	}
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
			Key: req.EmailBlind, Scope: actorspb.IndexScope_INDEX_SCOPE_GLOBAL,
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
			Key: req.WidgetKeyBlind, Scope: actorspb.IndexScope_INDEX_SCOPE_GLOBAL,
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
	have, err := g.deps.Machine.Index(ctx, claim.Key)
	if err != nil {
		return err
	}
	switch _, err := g.deps.Machine.Agent(ctx, storage.BytesID(have.TenantId), storage.BytesID(have.TargetId)); {
	case err == nil:
		return shard.ErrExists // a real account
	case !errors.Is(err, shard.ErrNotFound):
		return err
	}
	retry := &actorspb.ClaimIndex{Key: claim.Key, Scope: claim.Scope, Record: claim.Record, Replace: have}
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

func (g *tenant) apply(cmd *actorspb.Command) (*actorspb.Result, error) {
	ctx, cancel := g.deps.callContext()
	defer cancel()
	res, err := g.deps.Machine.Apply(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return res, nil
}

// idOf checks and converts an id field of a grain request.
func idOf(raw []byte, field string) (storage.ID, error) {
	if len(raw) != len(storage.ID{}) {
		return storage.ID{}, pacluster.NewGrainErrorResponse(ReasonInvalid, field+" must have 16 bytes")
	}
	return storage.BytesID(raw), nil
}
