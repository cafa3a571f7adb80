package transport

import (
	"crypto/sha256"
	"errors"
	"net/http"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/grainpb"
	"github.com/chatpacket/chatpacket/actors/grains"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/storage"
)

// InvitationTTL is how long an invitation to a team can be accepted.
const InvitationTTL = 7 * 24 * time.Hour

// Invitations bring agents into a team: an owner or admin invites an email
// with a role and hands over the link (mail sends it from step 5); whoever
// opens it chooses a name and password and is logged in. An invitation is
// a token like a session's: only its hash is stored, it expires, and it
// works once.

func (a *API) registerInvitations(s *http.ServeMux) {
	s.Handle("POST /api/v1/invitations", a.handler(a.authenticated(a.invite)))
	s.Handle("GET /api/v1/invitations/{token}", a.handler(a.invitation))
	s.Handle("POST /api/v1/invitations/{token}/accept", a.handler(a.acceptInvitation))
}

type inviteRequest struct {
	Email string `json:"email"`
	Role  string `json:"role"`
}

func (a *API) invite(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	if !p.manager() {
		return 0, nil, errorf(http.StatusForbidden, "forbidden", "only owners and admins invite agents")
	}
	var req inviteRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if err := checkEmail(req.Email); err != nil {
		return 0, nil, err
	}
	var role actorspb.Role
	switch req.Role {
	case "admin":
		role = actorspb.Role_ROLE_ADMIN
	case "agent", "":
		role = actorspb.Role_ROLE_AGENT
	default:
		return 0, nil, errorf(http.StatusBadRequest, "invalid_role", "role is admin or agent")
	}
	token, hash := newToken("i_")
	now := a.Now()
	expires := now.Add(InvitationTTL)
	if _, err := a.apply(r.Context(), &actorspb.Command{Op: &actorspb.Command_PutToken{PutToken: &actorspb.PutToken{Hash: hash, Token: &actorspb.TokenRecord{
		Kind: actorspb.TokenKind_TOKEN_KIND_INVITATION, TenantId: p.tenant[:], SubjectId: p.agent[:],
		Email: normalizeEmail(req.Email), Role: role, ExpiresUnixMs: expires.UnixMilli(), CreatedUnixMs: now.UnixMilli(),
	}}}}); err != nil {
		return 0, nil, err
	}
	// Listed under the tenant too, for its export: the token record is
	// found only by its hash.
	if _, err := a.apply(r.Context(), &actorspb.Command{Op: &actorspb.Command_PutInvitation{PutInvitation: &actorspb.PutInvitation{
		TenantId: p.tenant[:], Invitation: &actorspb.InvitationRecord{
			TokenHash: hash, Email: normalizeEmail(req.Email), Role: role, InvitedBy: p.agent[:],
			CreatedUnixMs: now.UnixMilli(), ExpiresUnixMs: expires.UnixMilli(),
		},
	}}}); err != nil {
		return 0, nil, err
	}
	a.audit(r, p, AuditInvitationCreated, map[string]string{"email": normalizeEmail(req.Email), "role": roleName(role)})
	return http.StatusCreated, map[string]string{
		"token": token, "invite_url": a.linkOrigin(r) + "/invite/" + token, "expires_at": expires.UTC().Format(time.RFC3339),
	}, nil
}

var errNoInvitation = errorf(http.StatusNotFound, "not_found", "this invitation does not exist, was used or expired")

// invitationOf reads a live invitation by its token.
func (a *API) invitationOf(r *http.Request) (*actorspb.TokenRecord, []byte, error) {
	hash := hashToken(r.PathValue("token"))
	rec, err := a.Machine.Token(r.Context(), hash)
	switch {
	case errors.Is(err, shard.ErrNotFound), errors.Is(err, storage.ErrErased):
		return nil, nil, errNoInvitation
	case err != nil:
		return nil, nil, err
	case rec.Kind != actorspb.TokenKind_TOKEN_KIND_INVITATION, a.Now().UnixMilli() > rec.ExpiresUnixMs:
		return nil, nil, errNoInvitation
	}
	// No one joins an organization that is being deleted.
	if err := a.refuseWhileTerminating(r.Context(), storage.BytesID(rec.TenantId), rec.Role); err != nil {
		return nil, nil, err
	}
	return rec, hash, nil
}

// invitation shows what an invitation is for, to the page that accepts it.
func (a *API) invitation(_ http.ResponseWriter, r *http.Request) (int, any, error) {
	rec, _, err := a.invitationOf(r)
	if err != nil {
		return 0, nil, err
	}
	t, err := a.settings(storage.BytesID(rec.TenantId))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]string{"organization": t.Name, "email": rec.Email, "role": roleName(rec.Role)}, nil
}

type acceptRequest struct {
	Name     string `json:"name"`
	Password string `json:"password"`
}

// acceptInvitation makes the invited agent and logs them in. The agent's
// id derives from the invitation, so a retry after a lost answer makes the
// same agent rather than a second one.
func (a *API) acceptInvitation(w http.ResponseWriter, r *http.Request) (int, any, error) {
	var req acceptRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if err := checkNameAndPassword(req.Name, req.Password); err != nil {
		return 0, nil, err
	}
	rec, hash, err := a.invitationOf(r)
	if err != nil {
		return 0, nil, err
	}
	sum := sha256.Sum256(append([]byte("invited agent:"), hash...))
	var id storage.ID
	copy(id[:], sum[:])
	agent := &actorspb.AgentRecord{
		Id: id[:], TenantId: rec.TenantId, Name: req.Name, Email: rec.Email,
		PasswordHash: hashPassword(req.Password), Role: rec.Role, CreatedUnixMs: a.Now().UnixMilli(),
	}
	_, err = a.apply(r.Context(), &actorspb.Command{Op: &actorspb.Command_ClaimIndex{ClaimIndex: &actorspb.ClaimIndex{
		Name:   grains.GlobalIndexName("email", rec.Email),
		Record: &actorspb.IndexRecord{TenantId: rec.TenantId, TargetId: id[:]},
	}}})
	if errors.Is(err, shard.ErrExists) {
		return 0, nil, errorf(http.StatusConflict, "email_taken", "an account with this email exists; log in with it instead")
	}
	if err != nil {
		return 0, nil, err
	}
	if _, err := a.apply(r.Context(), &actorspb.Command{Op: &actorspb.Command_CreateAgent{CreateAgent: &actorspb.CreateAgent{Agent: agent}}}); err != nil && !errors.Is(err, shard.ErrExists) {
		return 0, nil, err
	}
	if _, err := a.apply(r.Context(), &actorspb.Command{Op: &actorspb.Command_DeleteToken{DeleteToken: &actorspb.DeleteToken{Hash: hash}}}); err != nil {
		return 0, nil, err
	}
	a.audit(r, &principal{tenant: storage.BytesID(rec.TenantId), agent: id}, AuditInvitationAccepted, map[string]string{
		"invited_by": idString(rec.SubjectId), "role": roleName(rec.Role),
	})
	_, body, err := a.startSession(w, r, agent)
	return http.StatusCreated, body, err
}

// me is who the session or token acts as.
func (a *API) me(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	agent, err := a.Machine.Agent(r.Context(), p.tenant, p.agent)
	if err != nil {
		return 0, nil, err
	}
	res, err := grainpb.GetTenantGrainClient(a.Cluster, p.tenant.String()).Settings(&grainpb.TenantRequest{TenantId: p.tenant[:]})
	if err != nil {
		return 0, nil, grainError(err)
	}
	body := map[string]any{
		"agent_id": p.agent.String(), "tenant_id": p.tenant.String(), "name": agent.Name, "email": agent.Email,
		"role": roleName(agent.Role), "organization": res.Tenant.GetName(),
	}
	if err := a.accountStatus(r.Context(), p, body); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, body, nil
}
