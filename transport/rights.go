package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/grainpb"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/cluster/admin"
	"github.com/chatpacket/chatpacket/storage"
)

// A visitor's rights other than deletion: export (access and portability),
// correction of their contact details, restriction of processing, and the
// tenant's ledger of every such request with its 30-day due date.
//
// Export, correction and restriction are done as they are asked, so the
// ledger records them done at once; a request received by other means
// (email, phone) is recorded open and closed by hand when handled.
//
// Who may do what: export, restriction and the ledger are for owners and
// admins (an export is every conversation of the visitor, team or not,
// and both are decisions for the business, not for one agent); any agent
// who sees the visitor may correct their contact details, as the visitor
// would from the widget.

// Audit actions of visitor rights.
const (
	AuditVisitorExported   = "visitor_exported"
	AuditVisitorCorrected  = "visitor_corrected"
	AuditVisitorRestricted = "visitor_restricted"
	AuditPrivacyRequest    = "privacy_request"
	AuditPrivacyDone       = "privacy_request_done"
)

// PrivacyDue is how long the business has to answer a request.
const PrivacyDue = 30 * 24 * time.Hour

// ExportDeadline bounds one export: longer than RequestDeadline, since a
// visitor may have written many messages.
const ExportDeadline = 2 * time.Minute

// exportPage is how many records (page views, messages) each read of an
// export takes; a variable so that tests can make pages small.
var exportPage = 200

// maxExportConversations is more conversations than a visitor can list.
const maxExportConversations = 10_000

func (a *API) registerRights(s *http.ServeMux) {
	s.Handle("GET /api/v1/visitors/{id}/export", http.HandlerFunc(a.exportVisitor))
	s.Handle("PATCH /api/v1/visitors/{id}", a.handler(a.authenticated(a.correctVisitor)))
	s.Handle("POST /api/v1/visitors/{id}/restrict", a.handler(a.authenticated(a.restrictVisitor)))
	s.Handle("GET /api/v1/privacy/requests", a.handler(a.authenticated(a.listPrivacyRequests)))
	s.Handle("POST /api/v1/privacy/requests", a.handler(a.authenticated(a.createPrivacyRequest)))
	s.Handle("POST /api/v1/privacy/requests/{id}/done", a.handler(a.authenticated(a.closePrivacyRequest)))
	s.Handle("DELETE /api/v1/visitors/{id}", a.handler(a.authenticated(a.deleteVisitor)))
	s.Handle("POST /api/v1/visitors/{id}/under-16", a.handler(a.authenticated(a.visitorUnder16)))
	s.Handle("POST /api/v1/visitors/{id}/consent/withdraw", a.handler(a.authenticated(a.withdrawVisitorConsent)))
	s.Handle("POST /api/v1/widget/consent/withdraw", a.handler(a.visitorOnly(a.widgetWithdrawConsent)))
}

var (
	errNoVisitor       = errorf(http.StatusNotFound, "not_found", "no such visitor")
	errPrivacyManagers = errorf(http.StatusForbidden, "forbidden", "only owners and admins handle privacy requests")
	errNoPrivacyReq    = errorf(http.StatusNotFound, "not_found", "no such request")
	errInvalidKind     = errorf(http.StatusBadRequest, "invalid_kind", "kind is export, correction, restriction, deletion or consent_withdrawal")
	errInvalidNote     = errorf(http.StatusBadRequest, "invalid_note", "a note of at most %d bytes", shard.MaxPrivacyNoteBytes)
	errBadVisitorID    = errorf(http.StatusBadRequest, "invalid_visitor_id", "visitor_id is a visitor of your organization, or empty")
)

// managedVisitor reads the path's visitor for a manager: 403 for agents
// (whatever the id, so the answer tells nothing), 404 when it is not one
// of the tenant's.
func (a *API) managedVisitor(r *http.Request, p *principal) (storage.ID, *actorspb.VisitorRecord, error) {
	if !p.manager() {
		return storage.ID{}, nil, errPrivacyManagers
	}
	id, err := storage.ParseID(r.PathValue("id"))
	if err != nil {
		return id, nil, errNoVisitor
	}
	rec, err := a.Machine.Visitor(r.Context(), p.tenant, id)
	switch {
	case errors.Is(err, shard.ErrNotFound), errors.Is(err, storage.ErrErased):
		return id, nil, errNoVisitor
	case err != nil:
		return id, nil, err
	}
	return id, rec, nil
}

// recordRequest adds a request to the tenant's ledger. Unlike an audit
// event, a failure is returned: the ledger is what proves the request was
// answered, so the caller must know (the calls that record are safe to
// retry).
func (a *API) recordRequest(ctx context.Context, p *principal, kind string, visitor storage.ID, done bool, note string) (*actorspb.PrivacyRequest, error) {
	return a.recordRequestBy(ctx, p.tenant, p.agent, kind, visitor, done, note)
}

// recordRequestBy records a request made by by: an agent, or the visitor
// themself from the widget.
func (a *API) recordRequestBy(ctx context.Context, tenant, by storage.ID, kind string, visitor storage.ID, done bool, note string) (*actorspb.PrivacyRequest, error) {
	id := storage.NewID()
	now := a.Now()
	req := &actorspb.PrivacyRequest{
		Id: id[:], Kind: kind, RequestedBy: by[:], RequestedUnixMs: now.UnixMilli(),
		DueUnixMs: now.Add(PrivacyDue).UnixMilli(), Note: note,
	}
	if visitor != (storage.ID{}) {
		req.VisitorId = visitor[:]
	}
	if done {
		req.DoneUnixMs = req.RequestedUnixMs
	}
	if _, err := a.apply(ctx, &actorspb.Command{Op: &actorspb.Command_PutPrivacyRequest{PutPrivacyRequest: &actorspb.PutPrivacyRequest{
		TenantId: tenant[:], Request: req,
	}}}); err != nil {
		return nil, err
	}
	return req, nil
}

type contactJSON struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

type technicalJSON struct {
	IP        string `json:"ip"`
	UserAgent string `json:"user_agent"`
	Browser   string `json:"browser"`
	OS        string `json:"os"`
	Referrer  string `json:"referrer"`
}

type exportedVisitorJSON struct {
	ID         string        `json:"id"`
	CreatedAt  string        `json:"created_at"`
	LastSeenAt string        `json:"last_seen_at,omitempty"`
	Contact    contactJSON   `json:"contact"`
	Technical  technicalJSON `json:"technical"`
	Restricted bool          `json:"restricted"`
	// ConsentWithdrawn: the visitor withdrew consent to tracking.
	ConsentWithdrawn bool `json:"consent_withdrawn"`
}

func rfc3339(unixMs int64) string {
	if unixMs <= 0 {
		return ""
	}
	return time.UnixMilli(unixMs).UTC().Format(time.RFC3339)
}

// exportVisitor answers everything held about a visitor as one JSON
// document, written as it is read: a visitor's history may be long. It is
// a plain handler, not a.handler, because the answer is streamed and takes
// longer than RequestDeadline.
func (a *API) exportVisitor(w http.ResponseWriter, r *http.Request) {
	apiHeaders(w.Header())
	ctx, cancel := context.WithTimeout(r.Context(), ExportDeadline)
	defer cancel()
	r = r.WithContext(ctx)
	p, err := a.authenticate(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	id, rec, err := a.managedVisitor(r, p)
	if err == nil {
		_, err = a.recordRequest(ctx, p, shard.PrivacyExport, id, true, "")
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	a.audit(r, p, AuditVisitorExported, map[string]string{"visitor_id": id.String()})
	a.streamAttachment(w, r, ExportDeadline, "visitor-"+id.String()+".json", func(w io.Writer) error {
		return a.writeExport(ctx, w, p.tenant, id, rec)
	})
}

// streamAttachment answers 200 with a JSON attachment that write streams,
// for up to deadline (the server's WriteTimeout, 30 s, is for ordinary
// answers). The caller sets any other header first. If write fails once
// the status is sent, all that is left is to cut the answer short, so
// that the client sees a broken download rather than a short one.
func (a *API) streamAttachment(w http.ResponseWriter, r *http.Request, deadline time.Duration, filename string, write func(io.Writer) error) {
	if err := http.NewResponseController(w).SetWriteDeadline(time.Now().Add(deadline)); err != nil {
		a.Log.Warn("export: cannot lift the write deadline", "err", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", `attachment; filename="`+filename+`"`)
	w.WriteHeader(http.StatusOK)
	if err := write(w); err != nil {
		a.Log.Error("export failed", "path", r.URL.Path, "err", err)
		panic(http.ErrAbortHandler)
	}
}

// visitorJSONOf is what an export shows of a visitor's record.
func visitorJSONOf(id storage.ID, rec *actorspb.VisitorRecord) exportedVisitorJSON {
	t := rec.GetTech()
	return exportedVisitorJSON{
		ID: id.String(), CreatedAt: rfc3339(rec.CreatedUnixMs), LastSeenAt: rfc3339(rec.LastSeenUnixMs),
		Contact:    contactJSON{Name: rec.ContactName, Email: rec.ContactEmail},
		Technical:  technicalJSON{IP: t.GetIp(), UserAgent: t.GetUserAgent(), Browser: t.GetBrowser(), OS: t.GetOs(), Referrer: t.GetReferrer()},
		Restricted: rec.Restricted, ConsentWithdrawn: rec.ConsentWithdrawn,
	}
}

// writeExport writes the export of a visitor to w: the visitor, their page
// views oldest first, and their conversations with every message but the
// agents' notes (those are the business's own notes about the visitor, not
// data the visitor gave).
func (a *API) writeExport(ctx context.Context, w io.Writer, tenant, id storage.ID, rec *actorspb.VisitorRecord) error {
	s := &jsonStream{w: w}
	s.raw(`{"exported_at":"` + a.Now().UTC().Format(time.RFC3339) + `","visitor":`)
	s.value(visitorJSONOf(id, rec))
	s.raw(`,"page_views":[`)
	if err := a.writePageViews(ctx, s, tenant, id); err != nil {
		return err
	}
	s.raw(`],"conversations":[`)
	list, err := a.Machine.VisitorConversations(ctx, tenant, id, maxExportConversations)
	if err != nil {
		return err
	}
	// The list is newest first; an export reads oldest first, like the
	// page views.
	convs := listOf(s)
	for i := len(list) - 1; i >= 0; i-- {
		conv := storage.BytesID(list[i].ConversationId)
		crec, err := a.Machine.Conversation(ctx, tenant, conv)
		switch {
		case errors.Is(err, shard.ErrNotFound):
			continue
		case err != nil:
			return err
		}
		convs.next()
		s.raw(`{"id":"` + conv.String() + `","status":"` + statusName(crec.Status) +
			`","created_at":"` + rfc3339(crec.CreatedUnixMs) + `","messages":[`)
		if err := a.writeMessages(ctx, s, tenant, conv, false); err != nil {
			return err
		}
		s.raw("]}")
	}
	s.raw("]}\n")
	return s.err
}

// writePageViews writes a visitor's page views, oldest first, as the items
// of an array, a page at a time.
func (a *API) writePageViews(ctx context.Context, s *jsonStream, tenant, visitor storage.ID) error {
	views := listOf(s)
	err := a.Machine.EachPageView(ctx, tenant, visitor, exportPage, func(pv *actorspb.PageViewRecord) error {
		views.next()
		s.value(pageViewJSON{URL: pv.Url, Title: pv.Title, Referrer: pv.Referrer, At: rfc3339(pv.UnixMs)})
		return s.err
	})
	if err != nil {
		return err
	}
	return s.err
}

// writeMessages writes the messages of a conversation as the items of an
// array, in seq order, a page at a time; the agents' notes (marked
// internal) only when notes.
func (a *API) writeMessages(ctx context.Context, s *jsonStream, tenant, conv storage.ID, notes bool) error {
	after := uint64(0)
	msgs := listOf(s)
	for {
		page, err := a.Machine.Messages(ctx, tenant, conv, after, exportPage)
		if err != nil {
			return err
		}
		for _, m := range page {
			after = m.Seq
			if m.Record != nil && m.Record.Internal && !notes {
				continue
			}
			out := messageJSON{Seq: m.Seq, Erased: true, Author: authorJSON{Kind: "visitor"}}
			if !m.Erased {
				out = messageJSON{Seq: m.Seq, Author: authorOf(m.Record.Author), Body: m.Record.Body, ClientID: m.Record.ClientId,
					CreatedAt: rfc3339(m.Record.CreatedUnixMs), Internal: m.Record.Internal}
			}
			msgs.next()
			s.value(out)
		}
		if s.err != nil {
			return s.err
		}
		if len(page) < exportPage {
			return nil
		}
	}
}

type correctionRequest struct {
	Name  *string `json:"name"`
	Email *string `json:"email"`
}

// correctVisitor corrects a visitor's contact details: the fields given
// replace the ones held, an empty one removes it.
func (a *API) correctVisitor(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	var req correctionRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	id, err := storage.ParseID(r.PathValue("id"))
	if err != nil {
		return 0, nil, errNoVisitor
	}
	rec, err := a.Machine.Visitor(r.Context(), p.tenant, id)
	switch {
	case errors.Is(err, shard.ErrNotFound), errors.Is(err, storage.ErrErased):
		return 0, nil, errNoVisitor
	case err != nil:
		return 0, nil, err
	}
	switch ok, err := a.seesVisitor(r, p, id); {
	case err != nil:
		return 0, nil, err
	case !ok:
		return 0, nil, errNoVisitor
	}
	name, email := rec.ContactName, rec.ContactEmail
	var fields []string
	if req.Name != nil {
		name = strings.TrimSpace(*req.Name)
		fields = append(fields, "name")
	}
	if req.Email != nil {
		if email, err = contactEmail(*req.Email); err != nil {
			return 0, nil, err
		}
		fields = append(fields, "email")
	}
	if len(fields) == 0 {
		return 0, nil, errorf(http.StatusBadRequest, "nothing_to_correct", "give name, email or both")
	}
	// Through the visitor's grain, like the widget's own contact call.
	if _, err := grainpb.GetVisitorGrainClient(a.Cluster, id.String()).SetContact(&grainpb.ContactRequest{
		TenantId: p.tenant[:], Name: name, Email: email,
	}); err != nil {
		return 0, nil, grainError(err)
	}
	if _, err := a.recordRequest(r.Context(), p, shard.PrivacyCorrection, id, true, ""); err != nil {
		return 0, nil, err
	}
	a.audit(r, p, AuditVisitorCorrected, map[string]string{"visitor_id": id.String(), "fields": strings.Join(fields, ",")})
	return http.StatusOK, map[string]any{"id": id.String(), "name": name, "email": email}, nil
}

type restrictRequest struct {
	Restricted *bool `json:"restricted"`
}

// restrictVisitor sets or lifts the restriction of processing of a
// visitor's data. Nothing processes it yet (no AI, no analytics): the flag
// is recorded, and those will skip a restricted visitor.
func (a *API) restrictVisitor(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	var req restrictRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	id, _, err := a.managedVisitor(r, p)
	if err != nil {
		return 0, nil, err
	}
	if req.Restricted == nil {
		return 0, nil, errorf(http.StatusBadRequest, "invalid_restricted", "give restricted: true or false")
	}
	if _, err := a.apply(r.Context(), &actorspb.Command{Op: &actorspb.Command_SetVisitorRestricted{SetVisitorRestricted: &actorspb.SetVisitorRestricted{
		TenantId: p.tenant[:], VisitorId: id[:], Restricted: *req.Restricted,
	}}}); err != nil {
		if errors.Is(err, shard.ErrNotFound) || errors.Is(err, storage.ErrErased) {
			return 0, nil, errNoVisitor
		}
		return 0, nil, err
	}
	if _, err := a.recordRequest(r.Context(), p, shard.PrivacyRestriction, id, true, ""); err != nil {
		return 0, nil, err
	}
	on := "false"
	if *req.Restricted {
		on = "true"
	}
	a.audit(r, p, AuditVisitorRestricted, map[string]string{"visitor_id": id.String(), "restricted": on})
	return http.StatusNoContent, nil, nil
}

type privacyRequestJSON struct {
	ID          string `json:"id"`
	Kind        string `json:"kind"`
	VisitorID   string `json:"visitor_id,omitempty"`
	RequestedBy string `json:"requested_by"`
	RequestedAt string `json:"requested_at"`
	DueAt       string `json:"due_at"`
	DoneAt      string `json:"done_at,omitempty"`
	DaysLeft    *int   `json:"days_left"` // open requests only; negative when late
	Note        string `json:"note,omitempty"`
}

func (a *API) privacyRequestOf(req *actorspb.PrivacyRequest) privacyRequestJSON {
	out := privacyRequestJSON{
		ID: idString(req.Id), Kind: req.Kind, VisitorID: idString(req.VisitorId), RequestedBy: idString(req.RequestedBy),
		RequestedAt: rfc3339(req.RequestedUnixMs), DueAt: rfc3339(req.DueUnixMs), DoneAt: rfc3339(req.DoneUnixMs), Note: req.Note,
	}
	if req.DoneUnixMs == 0 {
		// Whole days, rounded up: due in 2.5 days is 3 days left, due an
		// hour ago is 0, due a day and an hour ago is -1.
		left := int(math.Ceil(float64(req.DueUnixMs-a.Now().UnixMilli()) / float64(24*time.Hour/time.Millisecond)))
		out.DaysLeft = &left
	}
	return out
}

// listPrivacyRequests answers the tenant's ledger, newest first; only the
// open requests with ?open=true.
func (a *API) listPrivacyRequests(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	if !p.manager() {
		return 0, nil, errPrivacyManagers
	}
	var open bool
	switch r.URL.Query().Get("open") {
	case "", "false":
	case "true":
		open = true
	default:
		return 0, nil, errorf(http.StatusBadRequest, "invalid_open", "open is true or false")
	}
	list, err := a.Machine.PrivacyRequests(r.Context(), p.tenant, open)
	if err != nil {
		return 0, nil, err
	}
	out := make([]privacyRequestJSON, 0, len(list))
	for _, req := range list {
		out = append(out, a.privacyRequestOf(req))
	}
	return http.StatusOK, map[string]any{"requests": out}, nil
}

type manualRequest struct {
	Kind      string `json:"kind"`
	VisitorID string `json:"visitor_id"`
	Note      string `json:"note"`
}

// createPrivacyRequest records a request received by other means (email,
// phone, letter); it stays open until closed with done.
func (a *API) createPrivacyRequest(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	if !p.manager() {
		return 0, nil, errPrivacyManagers
	}
	var req manualRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	switch req.Kind {
	case shard.PrivacyExport, shard.PrivacyCorrection, shard.PrivacyRestriction, shard.PrivacyDeletion:
	default:
		return 0, nil, errInvalidKind
	}
	if len(req.Note) > shard.MaxPrivacyNoteBytes {
		return 0, nil, errInvalidNote
	}
	// Someone who writes in may not know their visitor id: it can be left
	// empty, but a given one must be a visitor of the tenant.
	var visitor storage.ID
	if req.VisitorID != "" {
		id, err := storage.ParseID(req.VisitorID)
		if err != nil {
			return 0, nil, errBadVisitorID
		}
		switch _, err := a.Machine.Visitor(r.Context(), p.tenant, id); {
		case errors.Is(err, shard.ErrNotFound):
			return 0, nil, errBadVisitorID
		case err != nil && !errors.Is(err, storage.ErrErased):
			return 0, nil, err
		}
		visitor = id
	}
	rec, err := a.recordRequest(r.Context(), p, req.Kind, visitor, false, strings.TrimSpace(req.Note))
	if err != nil {
		return 0, nil, err
	}
	a.audit(r, p, AuditPrivacyRequest, map[string]string{"request_id": idString(rec.Id), "kind": rec.Kind})
	return http.StatusCreated, a.privacyRequestOf(rec), nil
}

// closePrivacyRequest marks a request done; closing it again keeps the
// first time.
func (a *API) closePrivacyRequest(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	if !p.manager() {
		return 0, nil, errPrivacyManagers
	}
	id, err := storage.ParseID(r.PathValue("id"))
	if err != nil {
		return 0, nil, errNoPrivacyReq
	}
	if _, err := a.apply(r.Context(), &actorspb.Command{Op: &actorspb.Command_ClosePrivacyRequest{ClosePrivacyRequest: &actorspb.ClosePrivacyRequest{
		TenantId: p.tenant[:], RequestId: id[:], DoneUnixMs: a.Now().UnixMilli(),
	}}}); err != nil {
		if errors.Is(err, shard.ErrNotFound) {
			return 0, nil, errNoPrivacyReq
		}
		return 0, nil, err
	}
	rec, err := a.Machine.PrivacyRequest(r.Context(), p.tenant, id)
	if err != nil {
		return 0, nil, err
	}
	a.audit(r, p, AuditPrivacyDone, map[string]string{"request_id": id.String(), "kind": rec.Kind})
	return http.StatusOK, a.privacyRequestOf(rec), nil
}

var _ admin.Privacy = (*API)(nil)

// OverdueRequests lists, for the operator, the open privacy requests of
// every tenant of the cluster that are past their due date, the latest
// due first. A tenant whose ledger cannot be read (erased since) is
// passed over.
func (a *API) OverdueRequests(ctx context.Context) ([]admin.OverdueRequest, error) {
	now := a.Now()
	var out []admin.OverdueRequest
	err := a.Machine.EachTenant(ctx, policyTenants, func(t *actorspb.TenantRecord) error {
		tenant := storage.BytesID(t.Id)
		reqs, err := a.Machine.PrivacyRequests(ctx, tenant, true)
		if errors.Is(err, storage.ErrErased) || errors.Is(err, shard.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("the requests of tenant %s: %w", tenant, err)
		}
		for _, req := range reqs {
			if req.DueUnixMs >= now.UnixMilli() {
				continue
			}
			out = append(out, admin.OverdueRequest{
				TenantID: tenant.String(), Organization: t.Name, RequestID: idString(req.Id), Kind: req.Kind,
				VisitorID: idString(req.VisitorId), RequestedAt: rfc3339(req.RequestedUnixMs), DueAt: rfc3339(req.DueUnixMs),
				DaysLate: int(now.Sub(time.UnixMilli(req.DueUnixMs)).Hours() / 24),
			})
		}
		return ctx.Err()
	})
	slices.SortFunc(out, func(x, y admin.OverdueRequest) int { return strings.Compare(y.DueAt, x.DueAt) })
	return out, err
}
