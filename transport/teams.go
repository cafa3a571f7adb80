package transport

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/grainpb"
	"github.com/chatpacket/chatpacket/actors/grains"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/storage"
)

// Teams, roles and who sees which conversation.
//
// Visibility: owners and admins see every conversation of their tenant. An
// agent (role agent) sees only the conversations whose team is one of the
// teams they are a member of; a conversation with no team, or whose team
// was deleted, is for owners and admins alone. A conversation an agent may
// not see answers exactly as another tenant's does: 404 not_found, over
// REST and WebSocket alike, and it is left out of lists and live frames.

func (a *API) registerTeams(s *http.ServeMux) {
	s.Handle("GET /api/v1/teams", a.handler(a.authenticated(a.listTeams)))
	s.Handle("POST /api/v1/teams", a.handler(a.authenticated(a.createTeam)))
	s.Handle("PUT /api/v1/teams/{id}/members", a.handler(a.authenticated(a.setTeamMembers)))
	s.Handle("DELETE /api/v1/teams/{id}", a.handler(a.authenticated(a.deleteTeam)))
	s.Handle("POST /api/v1/conversations/{id}/team", a.handler(a.authenticated(a.setConversationTeam)))
	s.Handle("PUT /api/v1/agents/{id}/role", a.handler(a.authenticated(a.setRole)))
}

// access is what a principal may see of its tenant's conversations.
type access struct {
	all   bool                // owners and admins
	teams map[storage.ID]bool // an agent's teams
}

// sees reports whether the conversation is visible under ac.
func (ac access) sees(rec *actorspb.ConversationRecord) bool {
	if ac.all {
		return true
	}
	return len(rec.GetTeamId()) == len(storage.ID{}) && ac.teams[storage.BytesID(rec.GetTeamId())]
}

// accessOf reads which conversations p may see. Managers see all without a
// read; an agent's teams are read from the store on every call, so a
// membership change holds from the next request on.
func (a *API) accessOf(ctx context.Context, tenant, agent storage.ID, role actorspb.Role) (access, error) {
	if role == actorspb.Role_ROLE_OWNER || role == actorspb.Role_ROLE_ADMIN {
		return access{all: true}, nil
	}
	teams, err := a.Machine.Teams(ctx, tenant)
	if err != nil {
		return access{}, err
	}
	ac := access{teams: map[storage.ID]bool{}}
	for _, t := range teams {
		if slices.ContainsFunc(t.MemberIds, func(m []byte) bool { return string(m) == string(agent[:]) }) {
			ac.teams[storage.BytesID(t.Id)] = true
		}
	}
	return ac, nil
}

func (a *API) access(r *http.Request, p *principal) (access, error) {
	return a.accessOf(r.Context(), p.tenant, p.agent, p.role)
}

var errNoConversation = errorf(http.StatusNotFound, "not_found", "no such conversation")

// visibleConversation reads the path's conversation for p: 404 when it does
// not exist, is another tenant's, or is one p may not see.
func (a *API) visibleConversation(r *http.Request, p *principal) (storage.ID, *actorspb.ConversationRecord, error) {
	conv, err := agentConversation(r)
	if err != nil {
		return conv, nil, err
	}
	rec, err := a.Machine.Conversation(r.Context(), p.tenant, conv)
	switch {
	case errors.Is(err, shard.ErrNotFound), errors.Is(err, storage.ErrErased):
		return conv, nil, errNoConversation
	case err != nil:
		return conv, nil, err
	}
	ac, err := a.access(r, p)
	if err != nil {
		return conv, nil, err
	}
	if !ac.sees(rec) {
		return conv, nil, errNoConversation
	}
	return conv, rec, nil
}

var errManagersOnly = errorf(http.StatusForbidden, "forbidden", "only owners and admins manage teams")

type teamJSON struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	MemberIDs []string `json:"member_ids"`
}

func teamOf(t *actorspb.TeamRecord) teamJSON {
	out := teamJSON{ID: idString(t.Id), Name: t.Name, MemberIDs: make([]string, 0, len(t.MemberIds))}
	for _, m := range t.MemberIds {
		out.MemberIDs = append(out.MemberIDs, idString(m))
	}
	return out
}

// listTeams answers every team of the tenant, to any agent of it: the
// dashboard names the team of each conversation.
func (a *API) listTeams(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	teams, err := a.Machine.Teams(r.Context(), p.tenant)
	if err != nil {
		return 0, nil, err
	}
	out := make([]teamJSON, 0, len(teams))
	for _, t := range teams {
		out = append(out, teamOf(t))
	}
	return http.StatusOK, map[string]any{"teams": out}, nil
}

type teamRequest struct {
	Name string `json:"name"`
}

func (a *API) createTeam(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	if !p.manager() {
		return 0, nil, errManagersOnly
	}
	var req teamRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	name := strings.TrimSpace(req.Name)
	if name == "" || len(name) > shard.MaxTeamNameBytes {
		return 0, nil, errorf(http.StatusBadRequest, "invalid_name", "name the team, in at most %d bytes", shard.MaxTeamNameBytes)
	}
	teams, err := a.Machine.Teams(r.Context(), p.tenant)
	if err != nil {
		return 0, nil, err
	}
	if len(teams) >= shard.MaxTeams {
		return 0, nil, errorf(http.StatusConflict, "too_many_teams", "a tenant has at most %d teams", shard.MaxTeams)
	}
	id := storage.NewID()
	t := &actorspb.TeamRecord{Id: id[:], TenantId: p.tenant[:], Name: name, CreatedUnixMs: a.Now().UnixMilli()}
	if _, err := a.apply(r.Context(), &actorspb.Command{Op: &actorspb.Command_PutTeam{PutTeam: &actorspb.PutTeam{TenantId: p.tenant[:], Team: t, Create: true}}}); err != nil {
		return 0, nil, err
	}
	a.audit(r, p, AuditTeamChanged, map[string]string{"team_id": id.String(), "change": "created", "name": name})
	return http.StatusCreated, map[string]string{"id": id.String(), "name": name}, nil
}

var errNoTeam = errorf(http.StatusNotFound, "not_found", "no such team")

// team reads the path's team of p's tenant.
func (a *API) team(r *http.Request, p *principal) (*actorspb.TeamRecord, error) {
	id, err := storage.ParseID(r.PathValue("id"))
	if err != nil {
		return nil, errNoTeam
	}
	t, err := a.Machine.Team(r.Context(), p.tenant, id)
	switch {
	case errors.Is(err, shard.ErrNotFound), errors.Is(err, storage.ErrErased):
		return nil, errNoTeam
	case err != nil:
		return nil, err
	}
	return t, nil
}

type membersRequest struct {
	AgentIDs []string `json:"agent_ids"`
}

// setTeamMembers replaces a team's members; each must be an agent of the
// tenant.
func (a *API) setTeamMembers(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	if !p.manager() {
		return 0, nil, errManagersOnly
	}
	t, err := a.team(r, p)
	if err != nil {
		return 0, nil, err
	}
	var req membersRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if len(req.AgentIDs) > shard.MaxTeamMembers {
		return 0, nil, errorf(http.StatusBadRequest, "invalid_agent", "a team has at most %d members", shard.MaxTeamMembers)
	}
	var members [][]byte
	seen := map[storage.ID]bool{}
	for _, s := range req.AgentIDs {
		errNoAgent := errorf(http.StatusBadRequest, "invalid_agent", "%q is not an agent of this team", s)
		id, err := storage.ParseID(s)
		if err != nil {
			return 0, nil, errNoAgent
		}
		if seen[id] {
			continue
		}
		switch _, err := a.Machine.Agent(r.Context(), p.tenant, id); {
		case errors.Is(err, shard.ErrNotFound), errors.Is(err, storage.ErrErased):
			return 0, nil, errNoAgent
		case err != nil:
			return 0, nil, err
		}
		seen[id] = true
		members = append(members, id[:])
	}
	t.MemberIds = members
	switch _, err := a.apply(r.Context(), &actorspb.Command{Op: &actorspb.Command_PutTeam{PutTeam: &actorspb.PutTeam{TenantId: p.tenant[:], Team: t}}}); {
	case errors.Is(err, shard.ErrNotFound):
		return 0, nil, errNoTeam // deleted meanwhile
	case err != nil:
		return 0, nil, err
	}
	ids := make([]string, 0, len(members))
	for _, m := range members {
		ids = append(ids, idString(m))
	}
	a.audit(r, p, AuditTeamChanged, map[string]string{"team_id": idString(t.Id), "change": "members", "member_ids": strings.Join(ids, ",")})
	return http.StatusOK, teamOf(t), nil
}

// deleteTeam removes a team. Its conversations keep the dangling team id
// and so are seen by owners and admins only, until moved to another team.
func (a *API) deleteTeam(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	if !p.manager() {
		return 0, nil, errManagersOnly
	}
	t, err := a.team(r, p)
	if err != nil {
		return 0, nil, err
	}
	switch _, err := a.apply(r.Context(), &actorspb.Command{Op: &actorspb.Command_DeleteTeam{DeleteTeam: &actorspb.DeleteTeam{TenantId: p.tenant[:], TeamId: t.Id}}}); {
	case errors.Is(err, shard.ErrNotFound):
		return 0, nil, errNoTeam
	case err != nil:
		return 0, nil, err
	}
	a.audit(r, p, AuditTeamChanged, map[string]string{"team_id": idString(t.Id), "change": "deleted", "name": t.Name})
	return http.StatusNoContent, nil, nil
}

type conversationTeamRequest struct {
	TeamID string `json:"team_id"`
}

// setConversationTeam moves a conversation the caller sees to a team of
// the tenant ("" for none) and answers the conversation. An agent may hand
// a conversation to a team they are not in: it then leaves their view.
func (a *API) setConversationTeam(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	conv, _, err := a.visibleConversation(r, p)
	if err != nil {
		return 0, nil, err
	}
	var req conversationTeamRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	var team []byte
	if req.TeamID != "" {
		errBadTeam := errorf(http.StatusBadRequest, "invalid_team", "team_id is not a team of this tenant")
		id, err := storage.ParseID(req.TeamID)
		if err != nil {
			return 0, nil, errBadTeam
		}
		switch _, err := a.Machine.Team(r.Context(), p.tenant, id); {
		case errors.Is(err, shard.ErrNotFound), errors.Is(err, storage.ErrErased):
			return 0, nil, errBadTeam
		case err != nil:
			return 0, nil, err
		}
		team = id[:]
	}
	info, err := grainpb.GetConversationGrainClient(a.Cluster, conv.String()).SetTeam(&grainpb.SetTeamRequest{TenantId: p.tenant[:], TeamId: team})
	if err != nil {
		return 0, nil, grainError(err)
	}
	return http.StatusOK, conversationOf(info.Conversation), nil
}

type roleRequest struct {
	Role string `json:"role"`
}

var roleNames = map[string]actorspb.Role{"owner": actorspb.Role_ROLE_OWNER, "admin": actorspb.Role_ROLE_ADMIN, "agent": actorspb.Role_ROLE_AGENT}

// setRole changes an agent's role (owners only). The last owner cannot be
// demoted: the check here answers 409 last_owner; the state machine checks
// again, so two owners demoting each other at once cannot both succeed.
func (a *API) setRole(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	if p.role != actorspb.Role_ROLE_OWNER {
		return 0, nil, errorf(http.StatusForbidden, "forbidden", "only owners change roles")
	}
	errNoAgent := errorf(http.StatusNotFound, "not_found", "no such agent")
	id, err := storage.ParseID(r.PathValue("id"))
	if err != nil {
		return 0, nil, errNoAgent
	}
	var req roleRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	role, ok := roleNames[req.Role]
	if !ok {
		return 0, nil, errorf(http.StatusBadRequest, "invalid_role", "role is owner, admin or agent")
	}
	agent, err := a.Machine.Agent(r.Context(), p.tenant, id)
	switch {
	case errors.Is(err, shard.ErrNotFound), errors.Is(err, storage.ErrErased):
		return 0, nil, errNoAgent
	case err != nil:
		return 0, nil, err
	}
	errLastOwner := errorf(http.StatusConflict, "last_owner", "a tenant keeps at least one owner: make another agent owner first")
	if agent.Role == actorspb.Role_ROLE_OWNER && role != actorspb.Role_ROLE_OWNER {
		agents, err := a.Machine.Agents(r.Context(), p.tenant, grains.MaxAgents)
		if err != nil {
			return 0, nil, err
		}
		owners := 0
		for _, ag := range agents {
			if ag.Role == actorspb.Role_ROLE_OWNER {
				owners++
			}
		}
		if owners <= 1 {
			return 0, nil, errLastOwner
		}
	}
	_, err = a.apply(r.Context(), &actorspb.Command{Op: &actorspb.Command_SetAgentRole{SetAgentRole: &actorspb.SetAgentRole{TenantId: p.tenant[:], AgentId: id[:], Role: role}}})
	var ae *apiError
	switch {
	case errors.As(err, &ae) && ae.code == "invalid":
		return 0, nil, errLastOwner // lost a race with another demotion
	case errors.Is(err, shard.ErrNotFound):
		return 0, nil, errNoAgent
	case err != nil:
		return 0, nil, err
	}
	if agent.Role != role {
		a.audit(r, p, AuditRoleChanged, map[string]string{"agent_id": id.String(), "from": roleName(agent.Role), "to": roleName(role)})
	}
	agent.Role = role
	return http.StatusOK, agentJSONOf(agent), nil
}
