package transport

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/gateway"
	"github.com/chatpacket/chatpacket/actors/nodetest"
	"github.com/chatpacket/chatpacket/transport/mail"
)

var quiet = nodetest.Quiet

// apiServer runs the API on a real node, store and socket.
func apiServer(t *testing.T) string {
	t.Helper()
	base, _ := apiServerWithMail(t)
	return base
}

// apiServerWithMail is apiServer, with the outbox its mail goes to.
func apiServerWithMail(t *testing.T) (string, *mail.Outbox) {
	t.Helper()
	n := nodetest.Start(t)
	s := NewServer("127.0.0.1:0", quiet)
	gw := gateway.New(n.Cluster, quiet)
	outbox := &mail.Outbox{Dir: t.TempDir(), From: "ChatPacket <noreply@chatpacket.test>"}
	api := &API{Cluster: n.Cluster, Machine: n.Machine, Gateway: gw, Log: quiet, Now: time.Now, Mail: outbox}
	api.Register(s)
	ts := httptest.NewServer(s.http.Handler)
	t.Cleanup(func() { // runs before the node's cleanup
		ts.CloseClientConnections()
		ts.Close()
		api.WaitMail() // before the outbox's temp dir goes
		gw.Close()
	})
	return ts.URL, outbox
}

type client struct {
	t      *testing.T
	base   string
	http   *http.Client
	csrf   string
	auth   string
	origin string // sent as Origin when set, as a browser page would
}

func newClient(t *testing.T, base string) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, base: base, http: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

// call sends body (a value to encode, or a raw string) and decodes the
// answer into a map.
func (c *client) call(method, path string, body any) (int, map[string]any) {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	if c.csrf != "" {
		req.Header.Set("X-CSRF-Token", c.csrf)
	}
	if c.auth != "" {
		req.Header.Set("Authorization", "Bearer "+c.auth)
	}
	if c.origin != "" {
		req.Header.Set("Origin", c.origin)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func errCode(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

func TestSignupLoginTokensLogout(t *testing.T) {
	base := apiServer(t)
	c := newClient(t, base)
	signup := map[string]string{"organization": "Acme", "name": "Ada", "email": "Ada@Example.com", "password": "correct horse battery"}

	status, out := c.call("POST", "/api/v1/signup", signup)
	if status != http.StatusCreated || out["tenant_id"] == nil || !strings.HasPrefix(out["widget_key"].(string), "wk_") {
		t.Fatalf("signup = %d %v; want 201 with ids and a widget key", status, out)
	}
	tenant := out["tenant_id"]
	if status, out := c.call("POST", "/api/v1/signup", signup); status != http.StatusConflict || errCode(out) != "email_taken" {
		t.Fatalf("second signup with the email = %d %v; want 409 email_taken", status, out)
	}

	// Wrong password and unknown email answer alike.
	for _, bad := range []map[string]string{
		{"email": "ada@example.com", "password": "wrong password!"},
		{"email": "nobody@example.com", "password": "correct horse battery"},
	} {
		if status, out := c.call("POST", "/api/v1/login", bad); status != http.StatusUnauthorized || errCode(out) != "invalid_credentials" {
			t.Fatalf("login %v = %d %v; want 401 invalid_credentials", bad, status, out)
		}
	}
	status, out = c.call("POST", "/api/v1/login", map[string]string{"email": "ada@example.com", "password": "correct horse battery"})
	if status != http.StatusOK || out["tenant_id"] != tenant || out["csrf_token"] == "" {
		t.Fatalf("login = %d %v", status, out)
	}
	csrf := out["csrf_token"].(string)

	// A state-changing call with the cookie needs the CSRF token.
	if status, out := c.call("POST", "/api/v1/tokens", map[string]string{"name": "ci"}); status != http.StatusForbidden || errCode(out) != "csrf" {
		t.Fatalf("tokens without CSRF = %d %v; want 403 csrf", status, out)
	}
	c.csrf = csrf
	status, out = c.call("POST", "/api/v1/tokens", map[string]string{"name": "ci"})
	if status != http.StatusCreated || !strings.HasPrefix(out["token"].(string), "t_") {
		t.Fatalf("tokens = %d %v", status, out)
	}
	bearer := newClient(t, base)
	bearer.auth = out["token"].(string)
	if status, out := bearer.call("POST", "/api/v1/tokens", map[string]string{"name": "from a script"}); status != http.StatusCreated {
		t.Fatalf("tokens with a bearer token = %d %v", status, out)
	}

	if status, _ := c.call("POST", "/api/v1/logout", nil); status != http.StatusNoContent {
		t.Fatalf("logout = %d; want 204", status)
	}
	if status, out := c.call("POST", "/api/v1/tokens", map[string]string{"name": "after logout"}); status != http.StatusUnauthorized {
		t.Fatalf("tokens after logout = %d %v; want 401", status, out)
	}
}

func TestBadInputIsRefusedAndChangesNothing(t *testing.T) {
	base := apiServer(t)
	c := newClient(t, base)
	for _, tc := range []struct {
		body   any
		status int
		code   string
	}{
		{`{"organization":`, http.StatusBadRequest, "bad_json"},
		{`{"organization":"Acme","name":"Ada","email":"not an email","password":"long enough password"}`, http.StatusBadRequest, "invalid_email"},
		{`{"organization":"Acme","name":"Ada","email":"a@b.c","password":"short"}`, http.StatusBadRequest, "invalid_password"},
		{`{"organization":"","name":"Ada","email":"a@b.c","password":"long enough password"}`, http.StatusBadRequest, "invalid_organization"},
		{`{"organization":"` + strings.Repeat("x", MaxBodyBytes) + `"}`, http.StatusRequestEntityTooLarge, "body_too_large"},
	} {
		if status, out := c.call("POST", "/api/v1/signup", tc.body); status != tc.status || errCode(out) != tc.code {
			t.Errorf("signup %.50v = %d %v; want %d %s", tc.body, status, out, tc.status, tc.code)
		}
	}
	// None of them created the account.
	if status, _ := c.call("POST", "/api/v1/login", map[string]string{"email": "a@b.c", "password": "long enough password"}); status != http.StatusUnauthorized {
		t.Fatalf("login after refused signups = %d; want 401", status)
	}
	if status, out := c.call("POST", "/api/v1/tokens", map[string]string{"name": "x"}); status != http.StatusUnauthorized || errCode(out) != "unauthenticated" {
		t.Fatalf("tokens without credentials = %d %v; want 401", status, out)
	}
}

func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}

func decodeBody(t *testing.T, resp *http.Response) map[string]any {
	t.Helper()
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("decode %d answer: %v", resp.StatusCode, err)
	}
	return out
}
