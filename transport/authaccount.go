package transport

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/storage"
)

// Account upkeep: email verification, password reset and change, ending
// sessions, and the login history. Verification and reset links carry a
// token like a session's: only its SHA-256 is stored, it expires, and
// it works once (ConsumeToken lets exactly one use through).

const (
	// VerifyTTL is how long an email verification link works.
	VerifyTTL = 48 * time.Hour
	// ResetTTL is how long a password reset link works.
	ResetTTL = time.Hour
)

func (a *API) registerAccounts(s *http.ServeMux) {
	s.Handle("POST /api/v1/logout/all", a.handler(a.authenticated(a.logoutAll)))
	s.Handle("POST /api/v1/account/verify", a.handler(a.verifyEmail))
	s.Handle("POST /api/v1/account/verify/resend", a.handler(a.authenticated(a.resendVerification)))
	s.Handle("GET /api/v1/account/logins", a.handler(a.authenticated(a.logins)))
	s.Handle("POST /api/v1/password/forgot", a.handler(a.forgotPassword))
	s.Handle("POST /api/v1/password/reset", a.handler(a.resetPassword))
	s.Handle("POST /api/v1/password", a.handler(a.authenticated(a.changePassword)))
	a.registerTwoFactor(s)
}

// sendVerification makes a verification token for a new agent and mails
// its link, in the background: a failure leaves the account unverified,
// which it may be.
func (a *API) sendVerification(r *http.Request, tenant, agent storage.ID, name, email string) {
	if a.Mail == nil {
		a.Log.Warn("account email not sent: no mail sender", "kind", "verify")
		return
	}
	origin := a.linkOrigin(r)
	now := a.Now()
	a.background("verify", func(ctx context.Context) error {
		token, hash := newToken("v_")
		if _, err := a.apply(ctx, &actorspb.Command{Op: &actorspb.Command_PutToken{PutToken: &actorspb.PutToken{Hash: hash, Token: &actorspb.TokenRecord{
			Kind: actorspb.TokenKind_TOKEN_KIND_VERIFY_EMAIL, TenantId: tenant[:], SubjectId: agent[:],
			ExpiresUnixMs: now.Add(VerifyTTL).UnixMilli(), CreatedUnixMs: now.UnixMilli(),
		}}}}); err != nil {
			return err
		}
		return a.deliver(ctx, verifyMail(email, name, origin+"/verify?token="+token))
	})
}

var errNoToken = errorf(http.StatusNotFound, "not_found", "this link does not exist, was used or expired")

// useToken spends a live single-use token of kind and returns its record.
func (a *API) useToken(ctx context.Context, token string, kind actorspb.TokenKind) (*actorspb.TokenRecord, error) {
	if token == "" || len(token) > 256 {
		return nil, errNoToken
	}
	hash := hashToken(token)
	rec, err := a.Machine.Token(ctx, hash)
	switch {
	case errors.Is(err, shard.ErrNotFound), errors.Is(err, storage.ErrErased):
		return nil, errNoToken
	case err != nil:
		return nil, err
	case rec.Kind != kind || a.Now().UnixMilli() > rec.ExpiresUnixMs:
		return nil, errNoToken
	}
	_, err = a.apply(ctx, &actorspb.Command{Op: &actorspb.Command_ConsumeToken{ConsumeToken: &actorspb.ConsumeToken{Hash: hash, Kind: kind}}})
	if errors.Is(err, shard.ErrNotFound) {
		return nil, errNoToken
	}
	return rec, err
}

type tokenBody struct {
	Token string `json:"token"`
}

// verifyEmail marks the agent of a verification link verified.
func (a *API) verifyEmail(_ http.ResponseWriter, r *http.Request) (int, any, error) {
	var req tokenBody
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	rec, err := a.useToken(r.Context(), req.Token, actorspb.TokenKind_TOKEN_KIND_VERIFY_EMAIL)
	if err != nil {
		return 0, nil, err
	}
	if err := a.markVerified(r.Context(), rec.TenantId, rec.SubjectId); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

// resendVerification mails the agent a new verification link (the first
// may be lost, or past its 48 hours): 202, or 409 when the email is
// verified already. It shares the reset emails' limit per address.
func (a *API) resendVerification(w http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	acc, err := a.Machine.Account(r.Context(), p.tenant, p.agent)
	if err != nil {
		return 0, nil, err
	}
	if acc.EmailVerified {
		return 0, nil, errorf(http.StatusConflict, "already_verified", "this email is verified already")
	}
	agent, err := a.Machine.Agent(r.Context(), p.tenant, p.agent)
	if err != nil {
		return 0, nil, err
	}
	if ok, retry := a.accounts.throttles.get().forgotAccount.take(emailThrottleKey(agent.Email), a.Now()); !ok {
		return 0, nil, rateLimited(w, retry)
	}
	a.sendVerification(r, p.tenant, p.agent, agent.Name, agent.Email)
	return http.StatusAccepted, nil, nil
}

func (a *API) markVerified(ctx context.Context, tenant, agent []byte) error {
	_, err := a.apply(ctx, &actorspb.Command{Op: &actorspb.Command_VerifyAgentEmail{VerifyAgentEmail: &actorspb.VerifyAgentEmail{TenantId: tenant, AgentId: agent}}})
	if errors.Is(err, shard.ErrNotFound) || errors.Is(err, storage.ErrErased) {
		return errNoToken
	}
	return err
}

type forgotRequest struct {
	Email string `json:"email"`
}

// forgotPassword answers 202 at once, whether or not the email has an
// account; the lookup and the email happen in the background.
func (a *API) forgotPassword(w http.ResponseWriter, r *http.Request) (int, any, error) {
	th, now := a.accounts.throttles.get(), a.Now()
	if ok, retry := th.forgotIP.take(networkKey(r), now); !ok {
		return 0, nil, rateLimited(w, retry)
	}
	var req forgotRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if err := checkEmail(req.Email); err != nil {
		return 0, nil, err
	}
	// A few emails per address, then one per 10 minutes: the answer is the
	// same, so that no one can bomb an inbox through us.
	if a.Mail == nil {
		a.Log.Warn("account email not sent: no mail sender", "kind", "reset")
	} else if ok, _ := th.forgotAccount.take(emailThrottleKey(req.Email), now); ok {
		origin := a.linkOrigin(r)
		a.background("reset", func(ctx context.Context) error {
			agent, err := a.findAgentCtx(ctx, req.Email)
			if err != nil || agent == nil {
				return err
			}
			token, hash := newToken("r_")
			if _, err := a.apply(ctx, &actorspb.Command{Op: &actorspb.Command_PutToken{PutToken: &actorspb.PutToken{Hash: hash, Token: &actorspb.TokenRecord{
				Kind: actorspb.TokenKind_TOKEN_KIND_PASSWORD_RESET, TenantId: agent.TenantId, SubjectId: agent.Id,
				ExpiresUnixMs: now.Add(ResetTTL).UnixMilli(), CreatedUnixMs: now.UnixMilli(),
			}}}}); err != nil {
				return err
			}
			return a.deliver(ctx, resetMail(agent.Email, agent.Name, origin+"/reset?token="+token))
		})
	}
	return http.StatusAccepted, nil, nil
}

type resetRequest struct {
	Token    string `json:"token"`
	Password string `json:"password"`
}

// resetPassword sets a new password with a reset link, ends every session
// of the agent, and tells them by email. The link proves the mailbox, so
// it verifies the email too.
func (a *API) resetPassword(_ http.ResponseWriter, r *http.Request) (int, any, error) {
	var req resetRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if err := checkNewPassword(req.Password); err != nil {
		return 0, nil, err
	}
	rec, err := a.useToken(r.Context(), req.Token, actorspb.TokenKind_TOKEN_KIND_PASSWORD_RESET)
	if err != nil {
		return 0, nil, err
	}
	tenant, agentID := storage.BytesID(rec.TenantId), storage.BytesID(rec.SubjectId)
	agent, err := a.setPassword(r.Context(), tenant, agentID, req.Password)
	if err != nil {
		return 0, nil, err
	}
	if err := a.endOtherSessions(r.Context(), tenant, agentID, nil); err != nil {
		return 0, nil, err
	}
	if err := a.markVerified(r.Context(), rec.TenantId, rec.SubjectId); err != nil {
		return 0, nil, err
	}
	a.sendMail("password_reset", alertMail(agent.Email, agent.Name, "Your ChatPacket password was reset",
		"The password of your ChatPacket account was reset with a link sent to this address, and every session was logged out.", a.linkOrigin(r)))
	return http.StatusNoContent, nil, nil
}

// setPassword hashes and stores an agent's new password.
func (a *API) setPassword(ctx context.Context, tenant, agentID storage.ID, password string) (*actorspb.AgentRecord, error) {
	agent, err := a.Machine.Agent(ctx, tenant, agentID)
	if errors.Is(err, shard.ErrNotFound) || errors.Is(err, storage.ErrErased) {
		return nil, errNoToken
	}
	if err != nil {
		return nil, err
	}
	if _, err := a.apply(ctx, &actorspb.Command{Op: &actorspb.Command_SetAgentPassword{SetAgentPassword: &actorspb.SetAgentPassword{
		TenantId: tenant[:], AgentId: agentID[:], PasswordHash: hashPassword(password),
	}}}); err != nil {
		return nil, err
	}
	return agent, nil
}

type changePasswordRequest struct {
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
}

var (
	errSessionOnly   = errorf(http.StatusForbidden, "forbidden", "log in to change this: API tokens cannot")
	errWrongPassword = errorf(http.StatusForbidden, "invalid_credentials", "the password is wrong")
)

// changePassword sets a new password given the current one, ends every
// other session, and tells the agent by email.
func (a *API) changePassword(w http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	if !p.session {
		return 0, nil, errSessionOnly
	}
	var req changePasswordRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if err := checkNewPassword(req.NewPassword); err != nil {
		return 0, nil, err
	}
	agent, err := a.checkCurrentPassword(w, r, p, req.CurrentPassword)
	if err != nil {
		return 0, nil, err
	}
	if _, err := a.setPassword(r.Context(), p.tenant, p.agent, req.NewPassword); err != nil {
		return 0, nil, err
	}
	if err := a.endOtherSessions(r.Context(), p.tenant, p.agent, p.tokenHash); err != nil {
		return 0, nil, err
	}
	a.sendMail("password_changed", alertMail(agent.Email, agent.Name, "Your ChatPacket password was changed",
		"The password of your ChatPacket account was changed, and every other session was logged out.", a.linkOrigin(r)))
	return http.StatusNoContent, nil, nil
}

// checkCurrentPassword checks the password of the principal's agent, for
// a change of its security; wrong guesses are throttled like second
// factors, so a stolen session cannot try passwords at speed.
func (a *API) checkCurrentPassword(w http.ResponseWriter, r *http.Request, p *principal, password string) (*actorspb.AgentRecord, error) {
	th, now := a.accounts.throttles.get(), a.Now()
	key := "agent:" + p.agent.String()
	if over, retry := th.secondFactor.over(key, now); over {
		return nil, rateLimited(w, retry)
	}
	agent, err := a.Machine.Agent(r.Context(), p.tenant, p.agent)
	if err != nil {
		return nil, err
	}
	if len(password) > 4*MaxPasswordLen {
		th.secondFactor.spend(key, now)
		return nil, errWrongPassword
	}
	ok, err := checkPassword(agent.PasswordHash, password)
	if err != nil {
		return nil, err
	}
	if !ok {
		th.secondFactor.spend(key, now)
		return nil, errWrongPassword
	}
	return agent, nil
}

// loginEventOf is the login event of a request.
func loginEventOf(r *http.Request, now time.Time) *actorspb.LoginEvent {
	t := techOf(r)
	return &actorspb.LoginEvent{UnixMs: now.UnixMilli(), Ip: t.Ip, UserAgent: t.UserAgent, Browser: t.Browser, Os: t.Os}
}

// deviceOf is what tells devices apart: browser, operating system and
// network (the IPv4 /24 or IPv6 /48 of the address), so that a new
// address from the same provider is not a new device.
func deviceOf(ev *actorspb.LoginEvent) string {
	network := ev.Ip
	if ip, err := netip.ParseAddr(ev.Ip); err == nil {
		ip = ip.Unmap()
		bits := 24
		if ip.Is6() {
			bits = 48
		}
		p, _ := ip.Prefix(bits)
		network = p.String()
	} else if h, _, err := net.SplitHostPort(ev.Ip); err == nil {
		network = h
	}
	return strings.Join([]string{ev.Browser, ev.Os, network}, "|")
}

// knownDevice reports whether ev comes from a device of the logins past.
func knownDevice(past []*actorspb.LoginEvent, ev *actorspb.LoginEvent) bool {
	d := deviceOf(ev)
	for _, p := range past {
		if deviceOf(p) == d {
			return true
		}
	}
	return false
}

type loginJSON struct {
	At        string `json:"at"`
	IP        string `json:"ip"`
	UserAgent string `json:"user_agent"`
	Browser   string `json:"browser"`
	OS        string `json:"os"`
	NewDevice bool   `json:"new_device"`
}

// logins is the agent's login history, newest first.
func (a *API) logins(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	events, err := a.Machine.LoginEvents(r.Context(), p.tenant, p.agent)
	if err != nil {
		return 0, nil, err
	}
	out := make([]loginJSON, 0, len(events))
	for _, e := range events {
		out = append(out, loginJSON{
			At: time.UnixMilli(e.UnixMs).UTC().Format(time.RFC3339), IP: e.Ip, UserAgent: e.UserAgent,
			Browser: e.Browser, OS: e.Os, NewDevice: e.NewDevice,
		})
	}
	return http.StatusOK, map[string]any{"logins": out}, nil
}

// accountStatus adds to a /me answer what the agent's account security
// is: whether the email is verified and two-factor is on.
func (a *API) accountStatus(ctx context.Context, p *principal, body map[string]any) error {
	acc, err := a.Machine.Account(ctx, p.tenant, p.agent)
	if err != nil {
		return err
	}
	body["email_verified"] = acc.EmailVerified
	body["two_factor_enabled"] = acc.TotpSecret != ""
	return nil
}
