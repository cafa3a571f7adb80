package transport

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"net/mail"
	"strings"
	"unicode/utf8"

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

func (a *API) signup(_ http.ResponseWriter, r *http.Request) (int, any, error) {
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
	// The verification email of API.md comes with mail (step 5).
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
	switch n := utf8.RuneCountInString(password); {
	case strings.TrimSpace(name) == "" || len(name) > 200:
		return errorf(http.StatusBadRequest, "invalid_name", "give your name, at most 200 bytes")
	case n < MinPasswordLen || n > MaxPasswordLen:
		return errorf(http.StatusBadRequest, "invalid_password", "a password needs %d to %d characters", MinPasswordLen, MaxPasswordLen)
	}
	return nil
}

type loginRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

var errInvalidCredentials = errorf(http.StatusUnauthorized, "invalid_credentials", "wrong email or password")

func (a *API) login(w http.ResponseWriter, r *http.Request) (int, any, error) {
	var req loginRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if len(req.Password) > 4*MaxPasswordLen || len(req.Email) > 254 {
		return 0, nil, errInvalidCredentials
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
		return 0, nil, errInvalidCredentials
	}

	return a.startSession(w, r, agent)
}

// startSession logs agent in: a new session token in the cookie, and the
// session's CSRF token in the answer.
func (a *API) startSession(w http.ResponseWriter, r *http.Request, agent *actorspb.AgentRecord) (int, any, error) {
	token, tokenHash := newToken("s_")
	csrf, _ := newToken("")
	now := a.Now()
	expires := now.Add(SessionTTL)
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
	return http.StatusOK, map[string]string{
		"agent_id": storage.BytesID(agent.Id).String(), "tenant_id": storage.BytesID(agent.TenantId).String(), "csrf_token": csrf,
	}, nil
}

// findAgent returns the agent of an email, or nil when there is none.
func (a *API) findAgent(r *http.Request, email string) (*actorspb.AgentRecord, error) {
	idx, err := a.Machine.Index(r.Context(), grains.GlobalIndexName("email", normalizeEmail(email)))
	if errors.Is(err, shard.ErrNotFound) || errors.Is(err, storage.ErrErased) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rec, err := a.Machine.Agent(r.Context(), storage.BytesID(idx.TenantId), storage.BytesID(idx.TargetId))
	if errors.Is(err, shard.ErrNotFound) || errors.Is(err, storage.ErrErased) {
		return nil, nil
	}
	return rec, err
}

func (a *API) logout(w http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	if _, err := a.apply(r.Context(), &actorspb.Command{Op: &actorspb.Command_DeleteToken{DeleteToken: &actorspb.DeleteToken{Hash: p.tokenHash}}}); err != nil {
		return 0, nil, err
	}
	if p.session {
		http.SetCookie(w, &http.Cookie{Name: a.sessionCookieName(), Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: a.TLS, SameSite: http.SameSiteLaxMode})
	}
	return http.StatusNoContent, nil, nil
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
	// Shown once: only its hash is stored.
	return http.StatusCreated, map[string]string{"token": token}, nil
}
