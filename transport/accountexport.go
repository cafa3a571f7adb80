package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/grains"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/storage"
)

// The owner's export of the whole tenant (GET /api/v1/account/export): one
// portable JSON document, its schema in docs/api.md, versioned by its
// "format" field. It is streamed as it is read, a page of records at a
// time, so a large tenant is never held in memory; it keeps working during
// a termination's grace period, since it reads nothing termination
// changes.
//
// Progress: the answer's X-Export-Items header is how many conversations
// and visitors the export will hold (counted as it starts: writes during
// the export may change it), and each of those items ends with a newline,
// the only newlines of the document but its last. A client counts them.
//
// Secrets never leave: no password hash, TOTP secret, recovery code,
// session or token (nor their hashes), invitation token.

// AccountExportFormat names the export's schema; a change that is not an
// addition gets a new version.
const AccountExportFormat = "chatpacket-tenant-export/1"

// AccountExportDeadline bounds one tenant export.
const AccountExportDeadline = time.Hour

// AuditAccountExported is the audit action of a tenant export.
const AuditAccountExported = "account_exported"

// Headers of the export's answer.
const (
	HeaderExportItems         = "X-Export-Items"
	HeaderExportConversations = "X-Export-Conversations"
	HeaderExportVisitors      = "X-Export-Visitors"
)

var errExportOwners = errorf(http.StatusForbidden, "forbidden", "only owners export the organization's data")

func (a *API) registerAccountExport(s *http.ServeMux) {
	s.Handle("GET /api/v1/account/export", http.HandlerFunc(a.exportAccount))
}

type exportedAgentJSON struct {
	ID            string   `json:"id"`
	Name          string   `json:"name"`
	Email         string   `json:"email"`
	Role          string   `json:"role"`
	Teams         []string `json:"teams"`
	EmailVerified bool     `json:"email_verified"`
	TwoFactor     bool     `json:"two_factor"`
	CreatedAt     string   `json:"created_at"`
}

type exportedTeamJSON struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	Members   []string `json:"members"`
	CreatedAt string   `json:"created_at"`
}

type exportedInvitationJSON struct {
	Email     string `json:"email"`
	Role      string `json:"role"`
	InvitedBy string `json:"invited_by"`
	CreatedAt string `json:"created_at"`
	ExpiresAt string `json:"expires_at"`
}

type exportedConversationJSON struct {
	ID            string `json:"id"`
	VisitorID     string `json:"visitor_id"`
	Status        string `json:"status"`
	AssigneeID    string `json:"assignee_id,omitempty"`
	TeamID        string `json:"team_id,omitempty"`
	CreatedAt     string `json:"created_at"`
	LastMessageAt string `json:"last_message_at,omitempty"`
}

// exportAccount streams the tenant's export. It is a plain handler, not
// a.handler: the answer is streamed and may take far longer than
// RequestDeadline.
func (a *API) exportAccount(w http.ResponseWriter, r *http.Request) {
	apiHeaders(w.Header())
	ctx, cancel := context.WithTimeout(r.Context(), AccountExportDeadline)
	defer cancel()
	r = r.WithContext(ctx)
	p, err := a.authenticate(r)
	if err == nil && p.role != actorspb.Role_ROLE_OWNER {
		err = errExportOwners
	}
	var counts shard.TenantCounts
	if err == nil {
		counts, err = a.Machine.CountTenant(ctx, p.tenant)
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	a.audit(r, p, AuditAccountExported, map[string]string{
		"conversations": strconv.Itoa(counts.Conversations), "visitors": strconv.Itoa(counts.Visitors),
	})
	h := w.Header()
	h.Set(HeaderExportItems, strconv.Itoa(counts.Conversations+counts.Visitors))
	h.Set(HeaderExportConversations, strconv.Itoa(counts.Conversations))
	h.Set(HeaderExportVisitors, strconv.Itoa(counts.Visitors))
	name := "chatpacket-" + p.tenant.String() + "-" + a.Now().UTC().Format("20060102") + ".json"
	a.streamAttachment(w, r, AccountExportDeadline, name, func(w io.Writer) error {
		return a.writeAccountExport(ctx, w, p.tenant, counts)
	})
}

// writeAccountExport writes the document; see docs/api.md for its schema.
func (a *API) writeAccountExport(ctx context.Context, w io.Writer, tenant storage.ID, counts shard.TenantCounts) error {
	s := &jsonStream{w: w}
	t, err := a.Machine.Tenant(ctx, tenant)
	if err != nil {
		return fmt.Errorf("tenant: %w", err)
	}
	s.raw(`{"format":"` + AccountExportFormat + `","exported_at":"` + a.Now().UTC().Format(time.RFC3339) + `","tenant_id":"` + tenant.String() + `"`)
	s.raw(`,"counts":`)
	s.value(map[string]int{"conversations": counts.Conversations, "visitors": counts.Visitors})
	s.raw(`,"tenant":`)
	s.value(struct {
		settingsJSON
		CreatedAt string `json:"created_at"`
	}{settingsOf(t), rfc3339(t.CreatedUnixMs)})
	steps := []struct {
		key   string
		write func(context.Context, *jsonStream, storage.ID) error
	}{
		{"agents", a.exportAgents},
		{"invitations", a.exportInvitations},
		{"privacy_requests", a.exportPrivacyRequests},
		{"audit_log", a.exportAuditLog},
		{"visitors", a.exportVisitors},
		{"conversations", a.exportConversations},
	}
	for _, step := range steps {
		s.raw(`,"` + step.key + `":[`)
		if err := step.write(ctx, s, tenant); err != nil {
			return fmt.Errorf("%s: %w", step.key, err)
		}
		s.raw("]")
	}
	s.raw("}\n")
	return s.err
}

// exportAgents writes the team (agents, then the teams they form as a
// second array).
func (a *API) exportAgents(ctx context.Context, s *jsonStream, tenant storage.ID) error {
	teams, err := a.Machine.Teams(ctx, tenant)
	if err != nil {
		return err
	}
	teamsOf := map[string][]string{}
	for _, t := range teams {
		for _, m := range t.MemberIds {
			teamsOf[string(m)] = append(teamsOf[string(m)], idString(t.Id))
		}
	}
	agents, err := a.Machine.Agents(ctx, tenant, grains.MaxAgents)
	if err != nil {
		return err
	}
	l := listOf(s)
	for _, ag := range agents {
		acc, err := a.Machine.Account(ctx, tenant, storage.BytesID(ag.Id))
		if err != nil && !errors.Is(err, storage.ErrErased) {
			return err
		}
		l.next()
		s.value(exportedAgentJSON{
			ID: idString(ag.Id), Name: ag.Name, Email: ag.Email, Role: roleName(ag.Role), Teams: nonNil(teamsOf[string(ag.Id)]),
			EmailVerified: acc.GetEmailVerified(), TwoFactor: acc.GetTotpSecret() != "", CreatedAt: rfc3339(ag.CreatedUnixMs),
		})
	}
	s.raw(`],"teams":[`)
	l = listOf(s)
	for _, t := range teams {
		members := make([]string, 0, len(t.MemberIds))
		for _, m := range t.MemberIds {
			members = append(members, idString(m))
		}
		l.next()
		s.value(exportedTeamJSON{ID: idString(t.Id), Name: t.Name, Members: members, CreatedAt: rfc3339(t.CreatedUnixMs)})
	}
	return s.err
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// exportInvitations writes the pending invitations: those whose token is
// still there (not accepted) and not expired. The token never leaves.
func (a *API) exportInvitations(ctx context.Context, s *jsonStream, tenant storage.ID) error {
	invs, err := a.Machine.Invitations(ctx, tenant)
	if err != nil {
		return err
	}
	now := a.Now().UnixMilli()
	l := listOf(s)
	for _, inv := range invs {
		if inv.ExpiresUnixMs < now {
			continue
		}
		switch _, err := a.Machine.Token(ctx, inv.TokenHash); {
		case errors.Is(err, shard.ErrNotFound), errors.Is(err, storage.ErrErased):
			continue // accepted
		case err != nil:
			return err
		}
		l.next()
		s.value(exportedInvitationJSON{Email: inv.Email, Role: roleName(inv.Role), InvitedBy: idString(inv.InvitedBy),
			CreatedAt: rfc3339(inv.CreatedUnixMs), ExpiresAt: rfc3339(inv.ExpiresUnixMs)})
	}
	return s.err
}

func (a *API) exportPrivacyRequests(ctx context.Context, s *jsonStream, tenant storage.ID) error {
	reqs, err := a.Machine.PrivacyRequests(ctx, tenant, false)
	if err != nil {
		return err
	}
	l := listOf(s)
	for _, req := range reqs {
		l.next()
		s.value(a.privacyRequestOf(req))
	}
	return s.err
}

func (a *API) exportAuditLog(ctx context.Context, s *jsonStream, tenant storage.ID) error {
	l := listOf(s)
	err := a.Machine.EachAudit(ctx, tenant, exportPage, func(e *actorspb.AuditEvent) error {
		l.next()
		s.value(auditJSONOf(e))
		return s.err
	})
	if err != nil {
		return err
	}
	return s.err
}

// exportVisitors writes every visitor of the tenant with their page views
// and the ids of their conversations (which the conversations array
// holds); an erased visitor is {"id":…,"erased":true}. Each item ends with
// a newline. Visitors come from the tenant's visitor index, then from the
// inbox those created before the index existed, which have no entry.
func (a *API) exportVisitors(ctx context.Context, s *jsonStream, tenant storage.ID) error {
	l := listOf(s)
	err := a.Machine.EachTenantVisitor(ctx, tenant, exportPage, func(id storage.ID) error {
		return a.exportTenantVisitor(ctx, s, l, tenant, id)
	})
	if err != nil {
		return err
	}
	unlisted := map[storage.ID]bool{} // only visitors without an index entry: old ones
	return a.eachInboxEntry(ctx, tenant, func(e *actorspb.InboxEntry) error {
		id := storage.BytesID(e.VisitorId)
		if len(e.VisitorId) != len(id) || unlisted[id] {
			return nil
		}
		switch listed, err := a.Machine.TenantVisitorListed(ctx, tenant, id); {
		case err != nil:
			return fmt.Errorf("visitor %s: %w", id, err)
		case listed:
			return nil
		}
		unlisted[id] = true
		return a.exportTenantVisitor(ctx, s, l, tenant, id)
	})
}

// exportTenantVisitor writes one visitor as an item of l.
func (a *API) exportTenantVisitor(ctx context.Context, s *jsonStream, l *list, tenant, id storage.ID) error {
	rec, err := a.Machine.Visitor(ctx, tenant, id)
	switch {
	case errors.Is(err, storage.ErrErased):
		l.next()
		s.value(map[string]any{"id": id.String(), "erased": true})
		s.raw("\n")
		return s.err
	case errors.Is(err, shard.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("visitor %s: %w", id, err)
	}
	convs, err := a.Machine.VisitorConversations(ctx, tenant, id, maxExportConversations)
	if err != nil {
		return fmt.Errorf("visitor %s: %w", id, err)
	}
	ids := make([]string, len(convs))
	for i, c := range convs {
		ids[i] = idString(c.ConversationId)
	}
	l.next()
	s.open(visitorJSONOf(id, rec))
	s.raw(`,"page_views":[`)
	if err := a.writePageViews(ctx, s, tenant, id); err != nil {
		return fmt.Errorf("visitor %s: %w", id, err)
	}
	s.raw(`],"conversation_ids":`)
	s.value(ids)
	s.raw("}\n")
	return s.err
}

// eachInboxEntry calls fn with every conversation of tenant's inbox, in id
// order, reading a page at a time.
func (a *API) eachInboxEntry(ctx context.Context, tenant storage.ID, fn func(*actorspb.InboxEntry) error) error {
	var after storage.ID
	for {
		page, err := a.Machine.Inbox(ctx, tenant, after, exportPage)
		if err != nil {
			return err
		}
		for _, e := range page {
			after = storage.BytesID(e.ConversationId)
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(page) < exportPage {
			return nil
		}
	}
}

// exportConversations writes every conversation of the tenant's inbox,
// with all its messages, the agents' notes marked internal. Each item ends
// with a newline.
func (a *API) exportConversations(ctx context.Context, s *jsonStream, tenant storage.ID) error {
	l := listOf(s)
	return a.eachInboxEntry(ctx, tenant, func(e *actorspb.InboxEntry) error {
		id := storage.BytesID(e.ConversationId)
		c, err := a.Machine.Conversation(ctx, tenant, id)
		switch {
		case errors.Is(err, shard.ErrNotFound):
			return nil
		case err != nil:
			return fmt.Errorf("conversation %s: %w", id, err)
		}
		l.next()
		s.open(exportedConversationJSON{
			ID: id.String(), VisitorID: idString(c.VisitorId), Status: statusName(c.Status), AssigneeID: idString(c.AssigneeId),
			TeamID: idString(c.TeamId), CreatedAt: rfc3339(c.CreatedUnixMs), LastMessageAt: rfc3339(c.LastMessageUnixMs),
		})
		s.raw(`,"messages":[`)
		if err := a.writeMessages(ctx, s, tenant, id, true); err != nil {
			return fmt.Errorf("conversation %s: %w", id, err)
		}
		s.raw("]}\n")
		return s.err
	})
}
