package transport

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/retention"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/storage"
	"github.com/chatpacket/chatpacket/transport/mail"
	"github.com/coder/websocket"
)

// Account termination. An owner terminates the organization; a grace
// period of retention.GracePeriod follows, in which the owners can still
// log in, export and cancel, while every other agent is logged out and
// kept out and the widget is quiet (its calls answer 410
// tenant_terminating). When it ends, retention (actors/retention) erases
// the tenant by shredding its key.

// Audit actions of termination.
const (
	AuditTerminated           = "account_terminated"
	AuditTerminationCancelled = "termination_cancelled"
)

var errTerminating = errorf(http.StatusGone, "tenant_terminating", "this organization is being deleted: its chat is closed")

// terminating reports whether t is in its grace period.
func terminating(t *actorspb.TenantRecord) bool { return t.GetDeleteAfterUnixMs() > 0 }

func (a *API) registerTermination(s *http.ServeMux) {
	s.Handle("POST /api/v1/account/terminate", a.handler(a.authenticated(a.terminate)))
	s.Handle("POST /api/v1/account/terminate/cancel", a.handler(a.authenticated(a.cancelTermination)))
	s.Handle("GET /api/v1/account/termination", a.handler(a.authenticated(a.termination)))
}

type terminationJSON struct {
	Terminating  bool   `json:"terminating"`
	TerminatedAt string `json:"terminated_at,omitempty"`
	DeleteAfter  string `json:"delete_after,omitempty"`
}

func terminationOf(t *actorspb.TenantRecord) terminationJSON {
	if !terminating(t) {
		return terminationJSON{}
	}
	return terminationJSON{
		Terminating:  true,
		TerminatedAt: time.UnixMilli(t.TerminatedUnixMs).UTC().Format(time.RFC3339),
		DeleteAfter:  time.UnixMilli(t.DeleteAfterUnixMs).UTC().Format(time.RFC3339),
	}
}

func ownerOnly(p *principal, what string) error {
	if p.role != actorspb.Role_ROLE_OWNER {
		return errorf(http.StatusForbidden, "forbidden", "only owners %s", what)
	}
	return nil
}

// terminate starts the grace period, or answers the one running: the same
// delete_after every time.
func (a *API) terminate(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	if err := ownerOnly(p, "delete the organization"); err != nil {
		return 0, nil, err
	}
	ctx := r.Context()
	now := a.Now()
	before, err := a.Machine.Tenant(ctx, p.tenant)
	if err != nil {
		return 0, nil, err
	}
	t, err := a.Machine.Terminate(ctx, p.tenant, p.agent, now, now.Add(retention.GracePeriod))
	if err != nil {
		return 0, nil, err
	}
	// Repeated on a retry: whoever is still logged in is logged out.
	if err := a.endAgentSessions(ctx, p.tenant); err != nil {
		return 0, nil, err
	}
	a.closeTenantSockets(p.tenant)
	if !terminating(before) {
		at := terminationOf(t).DeleteAfter
		a.audit(r, p, AuditTerminated, map[string]string{"delete_after": at})
		a.mailOwners(ctx, r, p.tenant, func(to, name string) mail.Message { return terminationMail(to, name, t, a.linkOrigin(r)) })
	}
	return http.StatusAccepted, map[string]string{"delete_after": terminationOf(t).DeleteAfter}, nil
}

func (a *API) cancelTermination(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	if err := ownerOnly(p, "cancel the deletion"); err != nil {
		return 0, nil, err
	}
	t, err := a.Machine.Tenant(r.Context(), p.tenant)
	if err != nil {
		return 0, nil, err
	}
	if terminating(t) {
		if err := a.Machine.CancelTermination(r.Context(), p.tenant); err != nil {
			return 0, nil, err
		}
		a.audit(r, p, AuditTerminationCancelled, map[string]string{"delete_after": terminationOf(t).DeleteAfter})
	}
	return http.StatusOK, terminationJSON{}, nil
}

// termination answers whether the organization is being deleted, and when.
func (a *API) termination(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	t, err := a.Machine.Tenant(r.Context(), p.tenant)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, terminationOf(t), nil
}

// endAgentSessions ends every session of the tenant's agents but its
// owners'. Their API tokens stay, refused while the tenant terminates
// (authenticate) and erased with it.
func (a *API) endAgentSessions(ctx context.Context, tenant storage.ID) error {
	agents, err := a.Machine.Agents(ctx, tenant, maxTeam)
	if err != nil {
		return err
	}
	for _, ag := range agents {
		if ag.Role == actorspb.Role_ROLE_OWNER {
			continue
		}
		if err := a.endOtherSessions(ctx, tenant, storage.BytesID(ag.Id), nil); err != nil {
			return fmt.Errorf("log out an agent: %w", err)
		}
	}
	return nil
}

// maxTeam bounds the agents a termination goes through.
const maxTeam = 10_000

// closeTenantSockets closes this node's widget sockets of tenant, and its
// agent sockets but the owners'. Sockets on other nodes are refused their
// next reconnect; their frames fail as the grains' commands do.
func (a *API) closeTenantSockets(tenant storage.ID) {
	a.sockets.Lock()
	defer a.sockets.Unlock()
	for c, o := range a.sockets.open {
		if o.tenant == tenant && !o.owner {
			c.Close(websocket.StatusPolicyViolation, "tenant_terminating")
		}
	}
}

// mailOwners emails every owner of tenant, in the background.
func (a *API) mailOwners(ctx context.Context, r *http.Request, tenant storage.ID, msg func(to, name string) mail.Message) {
	agents, err := a.Machine.Agents(ctx, tenant, maxTeam)
	if err != nil {
		a.Log.Warn("listing the owners to email", "err", err)
		return
	}
	for _, ag := range agents {
		if ag.Role == actorspb.Role_ROLE_OWNER {
			a.sendMail("termination", msg(ag.Email, ag.Name))
		}
	}
}

func terminationMail(to, name string, t *actorspb.TenantRecord, origin string) mail.Message {
	at := time.UnixMilli(t.DeleteAfterUnixMs).UTC().Format("Monday 2 January 2006, 15:04 MST")
	return mail.Message{To: to, Subject: "Your ChatPacket organization will be deleted", Text: fmt.Sprintf(`Hello %s,

The deletion of the organization %q on ChatPacket was requested. Its team
is logged out and its chat widget is off.

On %s everything it holds (conversations, visitors, analytics, settings,
the team's accounts) will be erased, for good. Until then you can still
log in, export its data, and cancel the deletion from the Account page:

%s/app/account

If you did not ask for this, log in and cancel it now, then change your
password.
`, name, t.Name, at, origin)}
}

// refuseWhileTerminating keeps every agent but the owners out of a tenant
// in its grace period.
func (a *API) refuseWhileTerminating(ctx context.Context, tenant storage.ID, role actorspb.Role) error {
	if role == actorspb.Role_ROLE_OWNER {
		return nil
	}
	t, err := a.Machine.Tenant(ctx, tenant)
	switch {
	case errors.Is(err, storage.ErrErased), errors.Is(err, shard.ErrNotFound):
		return errUnauthenticated
	case err != nil:
		return err
	case terminating(t):
		return errorf(http.StatusForbidden, "tenant_terminating", "this organization is being deleted; only its owners can log in until %s",
			time.UnixMilli(t.DeleteAfterUnixMs).UTC().Format(time.RFC3339))
	}
	return nil
}

// widgetSettings is a tenant's record for the widget's calls: errTerminating
// while the tenant is in its grace period.
func (a *API) widgetSettings(tenant storage.ID) (*actorspb.TenantRecord, error) {
	t, err := a.settings(tenant)
	if err != nil {
		return nil, err
	}
	if terminating(t) {
		return nil, errTerminating
	}
	return t, nil
}
