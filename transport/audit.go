package transport

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
)

// The audit log of a tenant: who did what to its account, when and from
// where. Events are sealed under the tenant key on the tenant's shard (so
// they go with the tenant when it is erased) and read newest first by its
// owners.

// Audit actions.
const (
	AuditLogin              = "login"
	AuditRoleChanged        = "role_changed"
	AuditSettingsChanged    = "settings_changed"
	AuditTeamChanged        = "team_changed"
	AuditInvitationCreated  = "invitation_created"
	AuditInvitationAccepted = "invitation_accepted"
	AuditTokenCreated       = "token_created"
)

// Limits of GET /api/v1/audit.
const (
	DefaultAuditLimit = 100
	MaxAuditLimit     = 1000
)

// auditTimeout bounds the append of one event: the action it records has
// happened already, so the request does not wait long for its trace.
const auditTimeout = 2 * time.Second

func (a *API) registerAudit(s *http.ServeMux) {
	s.Handle("GET /api/v1/audit", a.handler(a.authenticated(a.listAudit)))
}

// peerIP is the host of the connection's peer. Forwarding headers are not
// trusted: anyone can send them.
func peerIP(r *http.Request) string {
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return ip
}

// audit records that p did action (one of the Audit constants), with
// detail (no secrets: never a password, token or message body). It is
// called after the action succeeded; a failure to record is logged, not
// returned, since the action cannot be undone by then. p needs only its
// tenant and agent set.
func (a *API) audit(r *http.Request, p *principal, action string, detail map[string]string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), auditTimeout)
	defer cancel()
	event := storage.NewID()
	e := &actorspb.AuditEvent{UnixMs: a.Now().UnixMilli(), Action: action, Ip: peerIP(r), Detail: detail}
	if p.agent != (storage.ID{}) {
		e.ActorId = p.agent[:]
	}
	if _, err := a.apply(ctx, &actorspb.Command{Op: &actorspb.Command_AppendAudit{AppendAudit: &actorspb.AppendAudit{
		TenantId: p.tenant[:], EventId: event[:], Event: e,
	}}}); err != nil {
		a.Log.Warn("recording an audit event", "action", action, "err", err)
	}
}

type auditJSON struct {
	At      string            `json:"at"`
	ActorID string            `json:"actor_id,omitempty"`
	Action  string            `json:"action"`
	IP      string            `json:"ip"`
	Detail  map[string]string `json:"detail"`
}

// listAudit answers the tenant's audit log, newest first (owners only).
func (a *API) listAudit(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	if p.role != actorspb.Role_ROLE_OWNER {
		return 0, nil, errorf(http.StatusForbidden, "forbidden", "only owners read the audit log")
	}
	limit := DefaultAuditLimit
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxAuditLimit {
			return 0, nil, errorf(http.StatusBadRequest, "invalid_limit", "limit is 1 to %d", MaxAuditLimit)
		}
		limit = n
	}
	events, err := a.Machine.Audit(r.Context(), p.tenant, limit)
	if err != nil {
		return 0, nil, err
	}
	out := make([]auditJSON, 0, len(events))
	for _, e := range events {
		out = append(out, auditJSONOf(e))
	}
	return http.StatusOK, map[string]any{"events": out}, nil
}

func auditJSONOf(e *actorspb.AuditEvent) auditJSON {
	d := e.Detail
	if d == nil {
		d = map[string]string{}
	}
	return auditJSON{
		At: time.UnixMilli(e.UnixMs).UTC().Format(time.RFC3339Nano), ActorID: idString(e.ActorId),
		Action: e.Action, IP: e.Ip, Detail: d,
	}
}
