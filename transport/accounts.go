package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/grainpb"
	"github.com/chatpacket/chatpacket/actors/grains"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/storage"
)

// normalizeEmail is the form of an email that its index entry holds.
func normalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

type signupRequest struct {
	Organization string `json:"organization"`
	Name         string `json:"name"`
	Email        string `json:"email"`
	Password     string `json:"password"`
}

func (a *API) signup(w http.ResponseWriter, r *http.Request) (int, any, error) {
	if ok, retry := a.accounts.throttles.get().signupIP.take(networkKey(r), a.Now()); !ok {
		return 0, nil, rateLimited(w, retry)
	}
	var req signupRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if strings.TrimSpace(req.Organization) == "" || len(req.Organization) > 200 {
		return 0, nil, errorf(http.StatusBadRequest, "invalid_organization", "give an organization name of at most 200 bytes")
	}
	if err := checkNameAndPassword(req.Name, req.Password); err != nil {
		return 0, nil, err
	}
	if err := checkEmail(req.Email); err != nil {
		return 0, nil, err
	}
	if ok, retry := a.accounts.throttles.get().signupAccount.take(emailThrottleKey(req.Email), a.Now()); !ok {
		return 0, nil, rateLimited(w, retry)
	}
	email := normalizeEmail(req.Email)
	wk := make([]byte, 16)
	rand.Read(wk)
	widgetKey := "wk_" + hex.EncodeToString(wk)
	tenant, owner := storage.NewID(), storage.NewID()
	res, err := grainpb.GetTenantGrainClient(a.Cluster, tenant.String()).Signup(&grainpb.SignupRequest{
		Organization: req.Organization, OwnerName: req.Name, OwnerEmail: email, EmailKey: email,
		PasswordHash: hashPassword(req.Password), OwnerId: owner[:], WidgetKey: widgetKey,
	})
	if grains.Reason(err) == grains.ReasonExists {
		return 0, nil, errorf(http.StatusConflict, "email_taken", "an account with this email exists; log in instead")
	}
	if err != nil {
		return 0, nil, grainError(err)
	}
	a.sendVerification(r, tenant, owner, req.Name, email)
	return http.StatusCreated, map[string]string{
		"tenant_id": tenant.String(), "agent_id": owner.String(), "widget_key": res.WidgetKey,
	}, nil
}

// checkEmail accepts a plain address (no display name), at most 254 bytes.
func checkEmail(email string) error {
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Address != strings.TrimSpace(email) || len(email) > 254 {
		return errorf(http.StatusBadRequest, "invalid_email", "give a plain email address")
	}
	return nil
}

// checkNameAndPassword checks what every new agent gives.
func checkNameAndPassword(name, password string) error {
	if strings.TrimSpace(name) == "" || len(name) > 200 {
		return errorf(http.StatusBadRequest, "invalid_name", "give your name, at most 200 bytes")
	}
	return checkNewPassword(password)
}

type loginRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	// TOTP is the second factor when two-factor is on: a code of the
	// authenticator app, or one of the recovery codes.
	TOTP string `json:"totp"`
}

var (
	errInvalidCredentials = errorf(http.StatusUnauthorized, "invalid_credentials", "wrong email or password")
	errTOTPRequired       = errorf(http.StatusUnauthorized, "totp_required", "give the code of your authenticator app (totp)")
)

// login checks an email and password (and second factor) and starts a
// session. A wrong email and a wrong password answer the same bytes in
// about the same time: an unknown email is checked against a dummy hash.
// See ratelimit.go for how failures are throttled.
func (a *API) login(w http.ResponseWriter, r *http.Request) (int, any, error) {
	var req loginRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	th, now := a.accounts.throttles.get(), a.Now()
	ipKey, acctKey := networkKey(r), emailThrottleKey(req.Email)
	if over, retry := th.loginIP.over(ipKey, now); over {
		return 0, nil, rateLimited(w, retry)
	}
	failed := func() error {
		th.loginIP.spend(ipKey, now)
		over, retry := th.loginAccount.over(acctKey, now)
		th.loginAccount.spend(acctKey, now)
		if over {
			return rateLimited(w, retry)
		}
		return errInvalidCredentials
	}
	if len(req.Password) > 4*MaxPasswordLen || len(req.Email) > 254 || len(req.TOTP) > 64 {
		return 0, nil, failed()
	}
	agent, err := a.findAgent(r, req.Email)
	if err != nil {
		return 0, nil, err
	}
	hash := dummyHash
	if agent != nil {
		hash = agent.PasswordHash
	}
	// Check a password even for an unknown email: both refusals take as long.
	ok, err := checkPassword(hash, req.Password)
	if err != nil {
		return 0, nil, err
	}
	if agent == nil || !ok {
		return 0, nil, failed()
	}
	// Only a right password learns that the organization is going.
	if err := a.refuseWhileTerminating(r.Context(), storage.BytesID(agent.TenantId), agent.Role); err != nil {
		return 0, nil, err
	}
	if err := a.secondFactorAtLogin(w, r, agent, req.TOTP, func() { th.loginIP.spend(ipKey, now) }); err != nil {
		return 0, nil, err
	}
	status, body, err := a.startSession(w, r, agent)
	if err == nil {
		a.audit(r, &principal{tenant: storage.BytesID(agent.TenantId), agent: storage.BytesID(agent.Id)}, AuditLogin, nil)
	}
	return status, body, err
}

// startSession logs agent in: a new session token in the cookie (any
// session the browser had is ended: a login never reuses a session id),
// the session's CSRF token in the answer, and the login in the agent's
// history. A login from a device the history does not know is announced
// to the agent by email.
func (a *API) startSession(w http.ResponseWriter, r *http.Request, agent *actorspb.AgentRecord) (int, any, error) {
	if err := a.endPresentedSession(r); err != nil {
		return 0, nil, err
	}
	tenant, agentID := storage.BytesID(agent.TenantId), storage.BytesID(agent.Id)
	token, tokenHash := newToken("s_")
	csrf, _ := newToken("")
	now := a.Now()
	expires := now.Add(SessionTTL)
	past, err := a.Machine.LoginEvents(r.Context(), tenant, agentID)
	if err != nil {
		return 0, nil, err
	}
	ev := loginEventOf(r, now)
	ev.NewDevice = len(past) > 0 && !knownDevice(past, ev)
	// The index entry first: a session whose token exists is always listed,
	// so ending every session of an agent finds it.
	if _, err := a.apply(r.Context(), &actorspb.Command{Op: &actorspb.Command_AddAgentSession{AddAgentSession: &actorspb.AddAgentSession{
		TenantId: agent.TenantId, AgentId: agent.Id, TokenHash: tokenHash,
		Session: &actorspb.AgentSession{CreatedUnixMs: now.UnixMilli(), ExpiresUnixMs: expires.UnixMilli()}, Event: ev,
	}}}); err != nil {
		return 0, nil, err
	}
	if _, err := a.apply(r.Context(), &actorspb.Command{Op: &actorspb.Command_PutToken{PutToken: &actorspb.PutToken{Hash: tokenHash, Token: &actorspb.TokenRecord{
		Kind: actorspb.TokenKind_TOKEN_KIND_SESSION, TenantId: agent.TenantId, SubjectId: agent.Id,
		CsrfToken: csrf, ExpiresUnixMs: expires.UnixMilli(), CreatedUnixMs: now.UnixMilli(),
	}}}}); err != nil {
		return 0, nil, err
	}
	http.SetCookie(w, &http.Cookie{
		Name: a.sessionCookieName(), Value: token, Path: "/", Expires: expires,
		HttpOnly: true, Secure: a.TLS, SameSite: http.SameSiteLaxMode,
	})
	if ev.NewDevice {
		a.sendMail("new_login", alertMail(agent.Email, agent.Name, "New login to your ChatPacket account",
			fmt.Sprintf("Your ChatPacket account was logged in to from a new device:\n\n  when:    %s\n  browser: %s\n  system:  %s\n  address: %s",
				now.UTC().Format(time.RFC1123), orUnknown(ev.Browser), orUnknown(ev.Os), ev.Ip), a.linkOrigin(r)))
	}
	return http.StatusOK, map[string]string{
		"agent_id": agentID.String(), "tenant_id": tenant.String(), "csrf_token": csrf,
	}, nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// endPresentedSession ends the session of the cookie a request carries, if
// any: logging in replaces it.
func (a *API) endPresentedSession(r *http.Request) error {
	c, err := r.Cookie(a.sessionCookieName())
	if err != nil || c.Value == "" {
		return nil
	}
	hash := hashToken(c.Value)
	rec, err := a.Machine.Token(r.Context(), hash)
	switch {
	case errors.Is(err, shard.ErrNotFound), errors.Is(err, storage.ErrErased):
		return nil
	case err != nil:
		return err
	case rec.Kind != actorspb.TokenKind_TOKEN_KIND_SESSION:
		return nil
	}
	return a.endSessions(r.Context(), storage.BytesID(rec.TenantId), storage.BytesID(rec.SubjectId), [][]byte{hash})
}

// endSessions deletes sessions of an agent: their tokens, then their
// index entries (so that a failure half way leaves them listed, for a
// retry).
func (a *API) endSessions(ctx context.Context, tenant, agent storage.ID, hashes [][]byte) error {
	for _, h := range hashes {
		if _, err := a.apply(ctx, &actorspb.Command{Op: &actorspb.Command_DeleteToken{DeleteToken: &actorspb.DeleteToken{Hash: h}}}); err != nil {
			return err
		}
	}
	if len(hashes) == 0 {
		return nil
	}
	_, err := a.apply(ctx, &actorspb.Command{Op: &actorspb.Command_RemoveAgentSessions{RemoveAgentSessions: &actorspb.RemoveAgentSessions{
		TenantId: tenant[:], AgentId: agent[:], TokenHashes: hashes,
	}}})
	return err
}

// maxSessions bounds the sessions of an agent that one call ends.
const maxSessions = 10_000

// endOtherSessions ends every session of an agent but keep (nil: all).
func (a *API) endOtherSessions(ctx context.Context, tenant, agent storage.ID, keep []byte) error {
	all, err := a.Machine.AgentSessions(ctx, tenant, agent, maxSessions)
	if err != nil {
		return err
	}
	others := slices.DeleteFunc(all, func(h []byte) bool { return keep != nil && bytes.Equal(h, keep) })
	return a.endSessions(ctx, tenant, agent, others)
}

// findAgent returns the agent of an email, or nil when there is none.
func (a *API) findAgent(r *http.Request, email string) (*actorspb.AgentRecord, error) {
	return a.findAgentCtx(r.Context(), email)
}

func (a *API) findAgentCtx(ctx context.Context, email string) (*actorspb.AgentRecord, error) {
	idx, err := a.Machine.Index(ctx, grains.GlobalIndexName("email", normalizeEmail(email)))
	if errors.Is(err, shard.ErrNotFound) || errors.Is(err, storage.ErrErased) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rec, err := a.Machine.Agent(ctx, storage.BytesID(idx.TenantId), storage.BytesID(idx.TargetId))
	if errors.Is(err, shard.ErrNotFound) || errors.Is(err, storage.ErrErased) {
		return nil, nil
	}
	return rec, err
}

func (a *API) logout(w http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	if p.session {
		if err := a.endSessions(r.Context(), p.tenant, p.agent, [][]byte{p.tokenHash}); err != nil {
			return 0, nil, err
		}
		a.clearSessionCookie(w)
		return http.StatusNoContent, nil, nil
	}
	if _, err := a.apply(r.Context(), &actorspb.Command{Op: &actorspb.Command_DeleteToken{DeleteToken: &actorspb.DeleteToken{Hash: p.tokenHash}}}); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

// logoutAll ends every session of the agent, this one included. API tokens
// stay: they are revoked one by one.
func (a *API) logoutAll(w http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	if err := a.endOtherSessions(r.Context(), p.tenant, p.agent, nil); err != nil {
		return 0, nil, err
	}
	if p.session {
		a.clearSessionCookie(w)
	}
	return http.StatusNoContent, nil, nil
}

func (a *API) clearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: a.sessionCookieName(), Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: a.TLS, SameSite: http.SameSiteLaxMode})
}

type tokenRequest struct {
	Name string `json:"name"`
}

func (a *API) createToken(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	if !p.manager() {
		return 0, nil, errorf(http.StatusForbidden, "forbidden", "only owners and admins create API tokens")
	}
	var req tokenRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if strings.TrimSpace(req.Name) == "" || len(req.Name) > 100 {
		return 0, nil, errorf(http.StatusBadRequest, "invalid_name", "name the token, in at most 100 bytes")
	}
	token, hash := newToken("t_")
	if _, err := a.apply(r.Context(), &actorspb.Command{Op: &actorspb.Command_PutToken{PutToken: &actorspb.PutToken{Hash: hash, Token: &actorspb.TokenRecord{
		Kind: actorspb.TokenKind_TOKEN_KIND_API, TenantId: p.tenant[:], SubjectId: p.agent[:], Name: req.Name, CreatedUnixMs: a.Now().UnixMilli(),
	}}}}); err != nil {
		return 0, nil, err
	}
	a.audit(r, p, AuditTokenCreated, map[string]string{"name": req.Name})
	// Shown once: only its hash is stored.
	return http.StatusCreated, map[string]string{"token": token}, nil
}
