package transport

import (
	"context"
	"errors"
	"net/http"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/storage"
)

// Erasure and consent withdrawal: the visitor rights that destroy.
//
// Deleting a visitor shreds their subject key (shard.Machine.Shred): their
// contact, technical data, page views, messages and tokens were all sealed
// under it, so they become unreadable on every replica at once, and the
// nodes' ledger exchange carries the shred to every other node. What stays
// is the conversations' outline under the tenant key (ids, times, status),
// whose messages now read as erased, and the request in the ledger that
// proves the erasure. Marking a visitor as under 16 erases them the same
// way: we keep no data of children.
//
// Withdrawing consent stops tracking: the visitor's page views are
// deleted, no new ones are kept, and they are restricted (no AI, no
// analytics). Their conversations stay: answering them is what they came
// for.

const (
	AuditVisitorErased         = "visitor_erased"
	AuditVisitorConsentRevoked = "visitor_consent_withdrawn"
)

// Notes the requests ledger gets for erasures that were not asked for
// by the visitor as such.
const under16Note = "marked as under 16: erased at once"

func (a *API) deleteVisitor(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	return a.eraseVisitor(r, p, "")
}

func (a *API) visitorUnder16(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	return a.eraseVisitor(r, p, under16Note)
}

// eraseVisitor shreds the path's visitor and records the done request. A
// repeat answers 404: the visitor is gone, and a gone visitor and an
// unknown one look alike.
func (a *API) eraseVisitor(r *http.Request, p *principal, note string) (int, any, error) {
	id, _, err := a.managedVisitor(r, p)
	if err != nil {
		return 0, nil, err
	}
	// The shred must happen even if the client goes away once it is asked.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), RequestDeadline)
	defer cancel()
	if err := a.Machine.Shred(ctx, id, a.Now(), storage.SubjectKey(p.tenant, id).ID); err != nil {
		return 0, nil, err
	}
	if _, err := a.recordRequest(ctx, p, shard.PrivacyDeletion, id, true, note); err != nil {
		return 0, nil, err
	}
	detail := map[string]string{"visitor_id": id.String()}
	if note != "" {
		detail["reason"] = "under_16"
	}
	a.audit(r, p, AuditVisitorErased, detail)
	return http.StatusNoContent, nil, nil
}

// withdrawVisitorConsent records, for a manager, that the path's visitor
// withdrew consent (by email, by phone: outside the widget).
func (a *API) withdrawVisitorConsent(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	id, _, err := a.managedVisitor(r, p)
	if err != nil {
		return 0, nil, err
	}
	if err := a.withdrawConsent(r.Context(), p.tenant, id, p.agent); err != nil {
		return 0, nil, err
	}
	a.audit(r, p, AuditVisitorConsentRevoked, map[string]string{"visitor_id": id.String()})
	return http.StatusNoContent, nil, nil
}

// widgetWithdrawConsent is the visitor withdrawing consent themself.
func (a *API) widgetWithdrawConsent(_ http.ResponseWriter, r *http.Request, v visitor) (int, any, error) {
	if err := a.withdrawConsent(r.Context(), v.tenant, v.id, v.id); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

func (a *API) withdrawConsent(ctx context.Context, tenant, visitor, by storage.ID) error {
	_, err := a.apply(ctx, &actorspb.Command{Op: &actorspb.Command_WithdrawConsent{WithdrawConsent: &actorspb.WithdrawConsent{
		TenantId: tenant[:], VisitorId: visitor[:],
	}}})
	if errors.Is(err, shard.ErrNotFound) || errors.Is(err, storage.ErrErased) {
		return errNoVisitor
	}
	if err != nil {
		return err
	}
	_, err = a.recordRequestBy(ctx, tenant, by, shard.PrivacyConsent, visitor, true, "")
	return err
}
