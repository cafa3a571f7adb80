package transport

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	pacluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/gateway"
	"github.com/chatpacket/chatpacket/actors/grains"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/storage"
	"github.com/chatpacket/chatpacket/transport/mail"
	"github.com/coder/websocket"
)

// MaxBodyBytes bounds every API request body.
const MaxBodyBytes = 64 << 10

// RequestDeadline bounds every API call's wait for the cluster.
const RequestDeadline = 8 * time.Second

// SessionTTL is how long a login session lasts.
const SessionTTL = 30 * 24 * time.Hour

// API serves /api/v1. Its handlers run concurrently.
type API struct {
	Cluster *pacluster.Cluster
	Machine *shard.Machine
	Gateway *gateway.Gateway
	Log     *slog.Logger
	Now     func() time.Time
	// Mail sends the service's emails (verification, resets, alerts,
	// invitations): SMTP, or the outbox in the data dir.
	Mail mail.Sender
	// TLS says whether the server is reached over TLS: session cookies are
	// then __Host- prefixed and Secure.
	TLS bool
	// PublicOrigin (scheme://host[:port]) is where the links of emails
	// (verification, password reset) point. Empty: the origin a request
	// was addressed to, which a forged Host header could change; set it in
	// production.
	PublicOrigin string
	// MessageLimits bounds how fast visitors send messages (limits.go);
	// the zero value is the default limits.
	MessageLimits MessageLimits

	metrics  *metrics     // the server's, set by Register
	accounts accountState // throttles and background emails of the account calls

	limits widgetLimits // visitors' message rates (limits.go)

	policy policyCache // the policy notices this node read last (policy.go)

	// sockets are the open WebSocket connections: http.Server.Shutdown does
	// not see hijacked connections, so CloseSockets closes them.
	sockets struct {
		sync.Mutex
		open   map[*Conn]socketOwner
		closed bool
	}
}

// socketOwner is whose an open socket is: a termination closes the
// sockets of its tenant but its owners'.
type socketOwner struct {
	tenant storage.ID
	owner  bool
}

// track records an open socket; it refuses (and closes) new ones once
// CloseSockets ran.
func (a *API) track(c *Conn, o socketOwner) bool {
	a.sockets.Lock()
	defer a.sockets.Unlock()
	if a.sockets.closed {
		c.Close(websocket.StatusGoingAway, "server shutting down")
		return false
	}
	if a.sockets.open == nil {
		a.sockets.open = map[*Conn]socketOwner{}
	}
	a.sockets.open[c] = o
	return true
}

func (a *API) untrack(c *Conn) {
	a.sockets.Lock()
	defer a.sockets.Unlock()
	delete(a.sockets.open, c)
}

// CloseSockets closes every WebSocket with 1001 (going away), so clients
// reconnect to another node and resume; call it when the server stops.
func (a *API) CloseSockets() {
	a.sockets.Lock()
	defer a.sockets.Unlock()
	a.sockets.closed = true
	for c := range a.sockets.open {
		c.Close(websocket.StatusGoingAway, "server shutting down")
	}
}

// Register serves the API's routes on srv, in place of the API registered
// before (a node that rejoined its cluster serves a new one).
func (a *API) Register(srv *Server) {
	a.metrics = srv.metrics
	s := http.NewServeMux()
	s.Handle("POST /api/v1/signup", a.handler(a.signup))
	s.Handle("POST /api/v1/login", a.handler(a.login))
	s.Handle("POST /api/v1/logout", a.handler(a.authenticated(a.logout)))
	s.Handle("POST /api/v1/tokens", a.handler(a.authenticated(a.createToken)))
	s.Handle("GET /api/v1/me", a.handler(a.authenticated(a.me)))
	a.registerAccounts(s)
	a.registerWidget(s)
	a.registerConversations(s)
	a.registerSockets(s)
	a.registerVisitors(s)
	a.registerSettings(s)
	a.registerInvitations(s)
	a.registerTeams(s)
	a.registerAudit(s)
	a.registerTermination(s)
	a.registerAnalytics(s)
	a.registerRights(s)
	a.registerAccountExport(s)
	a.registerPolicy(s)
	a.registerWidgetUI(s)
	a.registerDashboard(s)
	srv.mount(s)
}

// apiError is an error with the status and code API.md gives it.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

var _ error = (*apiError)(nil)

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

var errUnauthenticated = errorf(http.StatusUnauthorized, "unauthenticated", "log in or give a bearer token")

// handler turns a function that returns a status and a value, or an error,
// into an http.Handler that writes JSON.
func (a *API) handler(fn func(w http.ResponseWriter, r *http.Request) (int, any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		apiHeaders(w.Header())
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		// Every call answers within RequestDeadline: a node cut off from
		// its shards' majorities says so (503) rather than hang.
		ctx, cancel := context.WithTimeout(r.Context(), RequestDeadline)
		defer cancel()
		r = r.WithContext(ctx)
		status, body, err := fn(w, r)
		if err != nil && ctx.Err() != nil && !errors.As(err, new(*apiError)) {
			err = errUnreachable
		}
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		if body == nil {
			w.WriteHeader(status)
			return
		}
		writeJSON(w, status, body)
	})
}

// apiHeaders are the security headers of every /api/v1 answer: JSON is
// never sniffed as something else, never framed, and runs nothing if a
// browser opens it as a page. (The widget frame and dashboard pages are
// not API answers: they set their own policies.)
func apiHeaders(h http.Header) {
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		// Never log bodies or personal data: the route and the error only.
		a.Log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		ae = errorf(http.StatusInternalServerError, "internal", "something went wrong; try again")
	}
	writeJSON(w, ae.status, map[string]any{"error": map[string]string{"code": ae.code, "message": ae.message}})
}

// decode reads a JSON body into v.
func decode(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "send application/json")
	}
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errorf(http.StatusRequestEntityTooLarge, "body_too_large", "the body is larger than %d bytes", MaxBodyBytes)
		}
		return errorf(http.StatusBadRequest, "bad_json", "the body is not the JSON this call takes")
	}
	return nil
}

// grainError maps an error of a grain call to the API's.
func grainError(err error) error {
	switch grains.Reason(err) {
	case grains.ReasonNotFound:
		return errorf(http.StatusNotFound, "not_found", "no such resource")
	case grains.ReasonInvalid:
		return errorf(http.StatusBadRequest, "invalid", "%s", pacluster.FromError(err).Message)
	case grains.ReasonErased:
		return errorf(http.StatusGone, "erased", "this data was erased")
	case grains.ReasonUnavailable, pacluster.ErrorReason_DEADLINE_EXCEEDED:
		return errorf(http.StatusServiceUnavailable, "unavailable", "try again")
	case pacluster.ErrorReason_UNKNOWN:
		// Not the grain's answer: the call did not reach it or timed out
		// (its node died, its shard is electing a leader). A retry is safe:
		// posts are idempotent by client_id.
		return errUnreachable
	}
	return err
}

var errUnreachable = errorf(http.StatusServiceUnavailable, "unavailable", "the cluster could not answer in time; try again")

// newToken returns a random bearer secret (256 bits) and its SHA-256, under
// which it is stored.
func newToken(prefix string) (token string, hash []byte) {
	b := make([]byte, 32)
	rand.Read(b)
	token = prefix + base64.RawURLEncoding.EncodeToString(b)
	return token, hashToken(token)
}

func hashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// principal is who a request acts as.
type principal struct {
	tenant, agent storage.ID
	role          actorspb.Role
	tokenHash     []byte
	session       bool
	csrf          string // the session's CSRF token (sessions only): pages embed it for their scripts
}

// manager reports whether the principal may change the tenant's settings
// and tokens: owners and admins.
func (p *principal) manager() bool {
	return p.role == actorspb.Role_ROLE_OWNER || p.role == actorspb.Role_ROLE_ADMIN
}

func (a *API) sessionCookieName() string {
	if a.TLS {
		return "__Host-chatpacket_session"
	}
	return "chatpacket_session"
}

// authenticated runs fn for a request with a valid session cookie (and,
// when it changes state, the session's CSRF token in X-CSRF-Token) or a
// valid API bearer token.
func (a *API) authenticated(fn func(w http.ResponseWriter, r *http.Request, p *principal) (int, any, error)) func(w http.ResponseWriter, r *http.Request) (int, any, error) {
	return func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		p, err := a.authenticate(r)
		if err != nil {
			return 0, nil, err
		}
		return fn(w, r, p)
	}
}

func (a *API) authenticate(r *http.Request) (*principal, error) {
	var token string
	session := false
	if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
		token = strings.TrimPrefix(h, "Bearer ")
	} else if c, err := r.Cookie(a.sessionCookieName()); err == nil {
		token, session = c.Value, true
	} else {
		return nil, errUnauthenticated
	}
	hash := hashToken(token)
	rec, err := a.Machine.Token(r.Context(), hash)
	switch {
	case errors.Is(err, shard.ErrNotFound), errors.Is(err, storage.ErrErased):
		return nil, errUnauthenticated
	case err != nil:
		return nil, err
	}
	wantKind := actorspb.TokenKind_TOKEN_KIND_API
	if session {
		wantKind = actorspb.TokenKind_TOKEN_KIND_SESSION
	}
	if rec.Kind != wantKind || rec.ExpiresUnixMs != 0 && a.Now().UnixMilli() > rec.ExpiresUnixMs {
		return nil, errUnauthenticated
	}
	if session && r.Method != http.MethodGet && r.Method != http.MethodHead &&
		subtle.ConstantTimeCompare([]byte(r.Header.Get("X-CSRF-Token")), []byte(rec.CsrfToken)) != 1 {
		return nil, errorf(http.StatusForbidden, "csrf", "send the session's X-CSRF-Token")
	}
	p := &principal{tokenHash: hash, session: session, tenant: storage.BytesID(rec.TenantId), agent: storage.BytesID(rec.SubjectId)}
	if session {
		p.csrf = rec.CsrfToken
	}
	agent, err := a.Machine.Agent(r.Context(), p.tenant, p.agent)
	switch {
	case errors.Is(err, shard.ErrNotFound), errors.Is(err, storage.ErrErased):
		return nil, errUnauthenticated
	case err != nil:
		return nil, err
	}
	p.role = agent.Role
	if err := a.refuseWhileTerminating(r.Context(), p.tenant, p.role); err != nil {
		return nil, err
	}
	return p, nil
}

// apply proposes a command and maps its errors.
func (a *API) apply(ctx context.Context, cmd *actorspb.Command) (*actorspb.Result, error) {
	res, err := a.Machine.Apply(ctx, cmd)
	switch {
	case errors.Is(err, shard.ErrInvalid):
		return nil, errorf(http.StatusBadRequest, "invalid", "%s", err.Error())
	case errors.Is(err, shard.ErrStopped), errors.Is(err, shard.ErrUnavailable):
		return nil, errorf(http.StatusServiceUnavailable, "unavailable", "try again")
	}
	return res, err
}
