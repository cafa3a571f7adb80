package transport

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	netmail "net/mail"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/gateway"
	"github.com/chatpacket/chatpacket/actors/nodetest"
	"github.com/chatpacket/chatpacket/storage"
	"github.com/chatpacket/chatpacket/transport/mail"
	"github.com/chatpacket/chatpacket/transport/passwords"
	"github.com/pquerna/otp/totp"
)

// clock is a time a test moves forward.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// accountEnv is the API on a real node, with a movable clock and the
// outbox its mail goes to.
type accountEnv struct {
	t      *testing.T
	base   string
	api    *API
	node   *nodetest.Node
	outbox *mail.Outbox
	clock  *clock

	mu   sync.Mutex
	seen map[string]bool // outbox files already returned by nextMail
	logs *lockedBuffer   // everything the API logged, debug level and up
}

// lockedBuffer collects log output from concurrent handlers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]byte(nil), l.b.Bytes()...)
}

func newAccountEnv(t *testing.T) *accountEnv {
	t.Helper()
	n := nodetest.Start(t)
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := NewServer("127.0.0.1:0", log)
	gw := gateway.New(n.Cluster, log)
	outbox := &mail.Outbox{Dir: t.TempDir(), From: "ChatPacket <noreply@chatpacket.test>"}
	clk := &clock{t: time.Now()}
	api := &API{Cluster: n.Cluster, Machine: n.Machine, Gateway: gw, Log: log, Now: clk.Now, Mail: outbox}
	api.Register(s)
	ts := httptest.NewServer(s.http.Handler)
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
		api.WaitMail()
		gw.Close()
	})
	return &accountEnv{t: t, base: ts.URL, api: api, node: n, outbox: outbox, clock: clk, seen: map[string]bool{}, logs: logs}
}

// sentMail is a message of the outbox.
type sentMail struct {
	to, subject, text string
}

func (e *accountEnv) mails() []sentMail {
	e.t.Helper()
	files, err := e.outbox.List()
	if err != nil {
		e.t.Fatal(err)
	}
	var out []sentMail
	for _, f := range files {
		m := readMail(e.t, f)
		out = append(out, m)
	}
	return out
}

func readMail(t *testing.T, path string) sentMail {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := netmail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	body, _ := io.ReadAll(msg.Body)
	return sentMail{to: msg.Header.Get("To"), subject: msg.Header.Get("Subject"), text: string(body)}
}

// nextMail waits for a message to to whose subject contains subject and
// that no earlier call returned.
func (e *accountEnv) nextMail(to, subject string) sentMail {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		files, err := e.outbox.List()
		if err != nil {
			e.t.Fatal(err)
		}
		for _, f := range files {
			e.mu.Lock()
			seen := e.seen[f]
			e.mu.Unlock()
			if seen {
				continue
			}
			if m := readMail(e.t, f); m.to == to && strings.Contains(m.subject, subject) {
				e.mu.Lock()
				e.seen[f] = true
				e.mu.Unlock()
				return m
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no email to %s about %q in the outbox", to, subject)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var linkToken = regexp.MustCompile(`(https?://[^\s/]+)/(verify|reset)\?token=([A-Za-z0-9_-]+)`)

// tokenOf returns the token of the link of path in a message.
func tokenOf(t *testing.T, m sentMail, base, path string) string {
	t.Helper()
	found := linkToken.FindStringSubmatch(m.text)
	if found == nil || found[2] != path {
		t.Fatalf("email %q has no /%s link:\n%s", m.subject, path, m.text)
	}
	if found[1] != base {
		t.Fatalf("email link points to %s; want %s", found[1], base)
	}
	return found[3]
}

// uaTransport sends every request with a User-Agent, from a local address.
type uaTransport struct {
	ua   string
	base http.RoundTripper
}

func (u uaTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("User-Agent", u.ua)
	return u.base.RoundTrip(r)
}

// clientFrom is a client with its own cookies that connects from the
// loopback address ip (the whole 127/8 is the loopback on Linux) with
// user agent ua.
func (e *accountEnv) clientFrom(ip, ua string) *client {
	c := newClient(e.t, e.base)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext}
	e.t.Cleanup(tr.CloseIdleConnections)
	c.http.Transport = uaTransport{ua: ua, base: tr}
	return c
}

const (
	firefoxLinux  = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
	chromeWindows = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
	goodPassword  = "correct horse battery"
)

// signup makes an account and returns its email.
func (e *accountEnv) signup(email string) {
	e.t.Helper()
	c := newClient(e.t, e.base)
	if status, out := c.call("POST", "/api/v1/signup", map[string]string{"organization": "Acme", "name": "Ada", "email": email, "password": goodPassword}); status != http.StatusCreated {
		e.t.Fatalf("signup = %d %v", status, out)
	}
}

// login logs c in and keeps its CSRF token.
func (e *accountEnv) login(c *client, email, password string) {
	e.t.Helper()
	status, out := c.call("POST", "/api/v1/login", map[string]string{"email": email, "password": password})
	if status != http.StatusOK {
		e.t.Fatalf("login = %d %v; want 200", status, out)
	}
	c.csrf = out["csrf_token"].(string)
}

func TestLoginFailuresAreIdentical(t *testing.T) {
	e := newAccountEnv(t)
	e.signup("ada@example.com")
	raw := func(body map[string]string) ([]byte, time.Duration, http.Header) {
		start := time.Now()
		resp, err := http.Post(e.base+"/api/v1/login", "application/json", jsonBody(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("login %v = %d %s; want 401", body, resp.StatusCode, b)
		}
		return b, time.Since(start), resp.Header
	}
	var wrongPw, wrongEmail []time.Duration
	wrongPassword := map[string]string{"email": "ada@example.com", "password": "wrong password!"}
	unknownEmail := map[string]string{"email": "nobody@example.com", "password": goodPassword}
	for i := range 8 {
		// Alternate which goes first: the second of a pair pays for the
		// garbage of the first's 19 MiB hash.
		var b1, b2 []byte
		var d1, d2 time.Duration
		var h1, h2 http.Header
		if i%2 == 0 {
			b1, d1, h1 = raw(wrongPassword)
			b2, d2, h2 = raw(unknownEmail)
		} else {
			b2, d2, h2 = raw(unknownEmail)
			b1, d1, h1 = raw(wrongPassword)
		}
		if !bytes.Equal(b1, b2) {
			t.Fatalf("wrong password answers %q, unknown email %q; want the same bytes", b1, b2)
		}
		for _, k := range []string{"Content-Type", "Set-Cookie", "Retry-After"} {
			if h1.Get(k) != h2.Get(k) {
				t.Fatalf("header %s: %q and %q; want the same", k, h1.Get(k), h2.Get(k))
			}
		}
		wrongPw, wrongEmail = append(wrongPw, d1), append(wrongEmail, d2)
	}
	slices.Sort(wrongPw)
	slices.Sort(wrongEmail)
	t.Logf("median time of a wrong password: %v; of an unknown email: %v (all: %v; %v)", wrongPw[4], wrongEmail[4], wrongPw, wrongEmail)
}

func TestSignupSendsVerificationMail(t *testing.T) {
	e := newAccountEnv(t)
	e.signup("Ada@Example.com")
	m := e.nextMail("ada@example.com", "Verify your email")
	token := tokenOf(t, m, e.base, "verify")

	c := newClient(t, e.base)
	e.login(c, "ada@example.com", goodPassword) // unverified agents log in
	if status, out := c.call("GET", "/api/v1/me", nil); status != http.StatusOK || out["email_verified"] != false || out["two_factor_enabled"] != false {
		t.Fatalf("me before verifying = %d %v; want email_verified false", status, out)
	}
	anon := newClient(t, e.base)
	if status, out := anon.call("POST", "/api/v1/account/verify", map[string]string{"token": token + "x"}); status != http.StatusNotFound {
		t.Fatalf("verify with a wrong token = %d %v; want 404", status, out)
	}
	if status, out := anon.call("POST", "/api/v1/account/verify", map[string]string{"token": token}); status != http.StatusNoContent {
		t.Fatalf("verify = %d %v; want 204", status, out)
	}
	if status, out := c.call("GET", "/api/v1/me", nil); status != http.StatusOK || out["email_verified"] != true {
		t.Fatalf("me after verifying = %d %v; want email_verified true", status, out)
	}
	if status, out := anon.call("POST", "/api/v1/account/verify", map[string]string{"token": token}); status != http.StatusNotFound || errCode(out) != "not_found" {
		t.Fatalf("verify again = %d %v; want 404 not_found", status, out)
	}
}

// TestResendVerification: a new link while unverified (the old one may be
// lost), and 409 once verified.
func TestResendVerification(t *testing.T) {
	e := newAccountEnv(t)
	e.signup("ada@example.com")
	first := tokenOf(t, e.nextMail("ada@example.com", "Verify your email"), e.base, "verify")
	c := newClient(t, e.base)
	e.login(c, "ada@example.com", goodPassword)
	if status, out := c.call("POST", "/api/v1/account/verify/resend", nil); status != http.StatusAccepted {
		t.Fatalf("resend = %d %v; want 202", status, out)
	}
	second := tokenOf(t, e.nextMail("ada@example.com", "Verify your email"), e.base, "verify")
	if second == first {
		t.Fatal("the resent link carries the first token")
	}
	if status, out := newClient(t, e.base).call("POST", "/api/v1/account/verify", map[string]string{"token": second}); status != http.StatusNoContent {
		t.Fatalf("verify with the resent link = %d %v; want 204", status, out)
	}
	if status, out := c.call("POST", "/api/v1/account/verify/resend", nil); status != http.StatusConflict || errCode(out) != "already_verified" {
		t.Fatalf("resend once verified = %d %v; want 409 already_verified", status, out)
	}
}

func TestSignupRefusesCommonPassword(t *testing.T) {
	if n := passwords.Count(); n != 10000 {
		t.Fatalf("the common password list has %d entries; want 10000", n)
	}
	for _, pw := range []string{"Password123", "QWERTYUIOP", "1234567890"} {
		if !passwords.Common(pw) {
			t.Errorf("Common(%q) = false; want true", pw)
		}
	}
	if passwords.Common(goodPassword) {
		t.Errorf("Common(%q) = true; want false", goodPassword)
	}
	e := newAccountEnv(t)
	c := newClient(t, e.base)
	status, out := c.call("POST", "/api/v1/signup", map[string]string{"organization": "Acme", "name": "Ada", "email": "ada@example.com", "password": "Password123"})
	if status != http.StatusBadRequest || errCode(out) != "common_password" {
		t.Fatalf("signup with a common password = %d %v; want 400 common_password", status, out)
	}
}

func TestPasswordResetWorksOnceAndExpires(t *testing.T) {
	e := newAccountEnv(t)
	e.signup("ada@example.com")
	logged := newClient(t, e.base)
	e.login(logged, "ada@example.com", goodPassword)

	anon := newClient(t, e.base)
	forgot := func(email string) {
		t.Helper()
		status, out := anon.call("POST", "/api/v1/password/forgot", map[string]string{"email": email})
		if status != http.StatusAccepted || out != nil {
			t.Fatalf("forgot %s = %d %v; want 202 and no body", email, status, out)
		}
	}
	forgot("nobody@example.com") // answers alike, sends nothing
	forgot("ada@example.com")
	token := tokenOf(t, e.nextMail("ada@example.com", "Reset your ChatPacket password"), e.base, "reset")

	if status, out := anon.call("POST", "/api/v1/password/reset", map[string]string{"token": token, "password": "Password123"}); status != http.StatusBadRequest || errCode(out) != "common_password" {
		t.Fatalf("reset to a common password = %d %v; want 400 common_password", status, out)
	}
	const newPassword = "a much better passphrase"
	if status, out := anon.call("POST", "/api/v1/password/reset", map[string]string{"token": token, "password": newPassword}); status != http.StatusNoContent {
		t.Fatalf("reset = %d %v; want 204", status, out)
	}
	if status, out := anon.call("POST", "/api/v1/password/reset", map[string]string{"token": token, "password": "yet another passphrase"}); status != http.StatusNotFound || errCode(out) != "not_found" {
		t.Fatalf("second reset with the token = %d %v; want 404 not_found", status, out)
	}
	if status, out := logged.call("GET", "/api/v1/me", nil); status != http.StatusUnauthorized {
		t.Fatalf("a session from before the reset = %d %v; want 401", status, out)
	}
	e.nextMail("ada@example.com", "password was reset")
	if status, _ := newClient(t, e.base).call("POST", "/api/v1/login", map[string]string{"email": "ada@example.com", "password": goodPassword}); status != http.StatusUnauthorized {
		t.Fatalf("login with the old password = %d; want 401", status)
	}
	c := newClient(t, e.base)
	e.login(c, "ada@example.com", newPassword)
	if _, out := c.call("GET", "/api/v1/me", nil); out["email_verified"] != true {
		t.Fatalf("me after a reset = %v; want email_verified true (the link proved the mailbox)", out)
	}

	// A link older than an hour no longer works.
	forgot("ada@example.com")
	late := tokenOf(t, e.nextMail("ada@example.com", "Reset your ChatPacket password"), e.base, "reset")
	e.clock.Add(ResetTTL + time.Minute)
	if status, out := anon.call("POST", "/api/v1/password/reset", map[string]string{"token": late, "password": "yet another passphrase"}); status != http.StatusNotFound {
		t.Fatalf("reset with an expired token = %d %v; want 404", status, out)
	}
	e.login(newClient(t, e.base), "ada@example.com", newPassword)
}

func TestPasswordChangeEndsOtherSessions(t *testing.T) {
	e := newAccountEnv(t)
	e.signup("ada@example.com")
	here, there := newClient(t, e.base), newClient(t, e.base)
	e.login(here, "ada@example.com", goodPassword)
	e.login(there, "ada@example.com", goodPassword)

	change := func(current, next string) (int, map[string]any) {
		return here.call("POST", "/api/v1/password", map[string]string{"current_password": current, "new_password": next})
	}
	if status, out := change("not my password", "a much better passphrase"); status != http.StatusForbidden || errCode(out) != "invalid_credentials" {
		t.Fatalf("change with a wrong current password = %d %v; want 403 invalid_credentials", status, out)
	}
	if status, out := change(goodPassword, "1qaz2wsx3edc"); status != http.StatusBadRequest || errCode(out) != "common_password" {
		t.Fatalf("change to a common password = %d %v; want 400 common_password", status, out)
	}
	noCSRF := *here
	noCSRF.csrf = ""
	if status, out := noCSRF.call("POST", "/api/v1/password", map[string]string{"current_password": goodPassword, "new_password": "a much better passphrase"}); status != http.StatusForbidden || errCode(out) != "csrf" {
		t.Fatalf("change without CSRF = %d %v; want 403 csrf", status, out)
	}
	if status, out := change(goodPassword, "a much better passphrase"); status != http.StatusNoContent {
		t.Fatalf("change = %d %v; want 204", status, out)
	}
	if status, out := here.call("GET", "/api/v1/me", nil); status != http.StatusOK {
		t.Fatalf("the session that changed it = %d %v; want 200", status, out)
	}
	if status, out := there.call("GET", "/api/v1/me", nil); status != http.StatusUnauthorized {
		t.Fatalf("another session = %d %v; want 401", status, out)
	}
	e.nextMail("ada@example.com", "password was changed")
	e.login(newClient(t, e.base), "ada@example.com", "a much better passphrase")
}

func TestSessionLogoutAllEndsEverySession(t *testing.T) {
	e := newAccountEnv(t)
	e.signup("ada@example.com")
	one, two := newClient(t, e.base), newClient(t, e.base)
	e.login(one, "ada@example.com", goodPassword)
	e.login(two, "ada@example.com", goodPassword)
	if status, out := one.call("POST", "/api/v1/logout/all", nil); status != http.StatusNoContent {
		t.Fatalf("logout/all = %d %v; want 204", status, out)
	}
	for i, c := range []*client{one, two} {
		if status, _ := c.call("GET", "/api/v1/me", nil); status != http.StatusUnauthorized {
			t.Fatalf("session %d after logout/all = %d; want 401", i, status)
		}
	}
	tenant, agent := agentIDsOf(t, e, "ada@example.com")
	sessions, err := e.node.Machine.AgentSessions(context.Background(), tenant, agent, 100)
	if err != nil || len(sessions) != 0 {
		t.Fatalf("sessions listed after logout/all: %d, %v; want none", len(sessions), err)
	}
}

func TestSessionRotatesAtLogin(t *testing.T) {
	if name := (&API{TLS: true}).sessionCookieName(); !strings.HasPrefix(name, "__Host-") {
		t.Fatalf("session cookie under TLS is %q; want a __Host- name", name)
	}
	e := newAccountEnv(t)
	e.signup("ada@example.com")
	login := func() *http.Cookie {
		resp, err := http.Post(e.base+"/api/v1/login", "application/json", jsonBody(map[string]string{"email": "ada@example.com", "password": goodPassword}))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for _, c := range resp.Cookies() {
			if c.Name == "chatpacket_session" {
				return c
			}
		}
		t.Fatalf("login set no session cookie")
		return nil
	}
	first := login()
	if !first.HttpOnly || first.SameSite != http.SameSiteLaxMode || first.Path != "/" || first.Domain != "" {
		t.Fatalf("session cookie %v; want HttpOnly, SameSite=Lax, Path=/, no Domain", first)
	}
	if raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(first.Value, "s_")); err != nil || len(raw) < 16 {
		t.Fatalf("session token of %d bytes (%v); want at least 128 bits", len(raw), err)
	}
	// Logging in again from the browser that holds the first session
	// replaces it.
	jar, _ := cookiejar.New(nil)
	c := newClient(t, e.base)
	c.http.Jar = jar
	u, _ := http.NewRequest("GET", e.base, nil)
	jar.SetCookies(u.URL, []*http.Cookie{first})
	e.login(c, "ada@example.com", goodPassword)
	second := jar.Cookies(u.URL)[0]
	if second.Value == first.Value {
		t.Fatal("the second login kept the session id")
	}
	old := newClient(t, e.base)
	old.http.Jar, _ = cookiejar.New(nil)
	old.http.Jar.SetCookies(u.URL, []*http.Cookie{first})
	if status, _ := old.call("GET", "/api/v1/me", nil); status != http.StatusUnauthorized {
		t.Fatalf("the replaced session = %d; want 401", status)
	}
	if status, _ := c.call("GET", "/api/v1/me", nil); status != http.StatusOK {
		t.Fatalf("the new session = %d; want 200", status)
	}
}

func TestTwoFactorLogin(t *testing.T) {
	e := newAccountEnv(t)
	e.signup("ada@example.com")
	c := newClient(t, e.base)
	e.login(c, "ada@example.com", goodPassword)

	status, out := c.call("POST", "/api/v1/2fa/setup", nil)
	if status != http.StatusOK || out["secret"] == "" || !strings.HasPrefix(out["otpauth_url"].(string), "otpauth://totp/ChatPacket:") {
		t.Fatalf("2fa/setup = %d %v", status, out)
	}
	if png, err := base64.StdEncoding.DecodeString(out["qr_png_base64"].(string)); err != nil || !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Fatalf("qr_png_base64 is not a PNG (%v)", err)
	}
	secret := out["secret"].(string)
	code := func() string {
		c, err := totp.GenerateCode(secret, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// Pending until enabled: logins need no code yet.
	e.login(newClient(t, e.base), "ada@example.com", goodPassword)
	if status, out := c.call("POST", "/api/v1/2fa/enable", map[string]string{"code": "000000"}); status != http.StatusBadRequest || errCode(out) != "invalid_code" {
		t.Fatalf("enable with a wrong code = %d %v; want 400 invalid_code", status, out)
	}
	status, out = c.call("POST", "/api/v1/2fa/enable", map[string]string{"code": code()})
	if status != http.StatusOK {
		t.Fatalf("enable = %d %v; want 200", status, out)
	}
	recovery, _ := out["recovery_codes"].([]any)
	if len(recovery) != 10 {
		t.Fatalf("enable gave %d recovery codes; want 10", len(recovery))
	}
	e.nextMail("ada@example.com", "Two-factor authentication is on")
	if _, out := c.call("GET", "/api/v1/me", nil); out["two_factor_enabled"] != true {
		t.Fatalf("me = %v; want two_factor_enabled", out)
	}

	try := func(second string) (int, map[string]any) {
		return newClient(t, e.base).call("POST", "/api/v1/login", map[string]string{"email": "ada@example.com", "password": goodPassword, "totp": second})
	}
	if status, out := try(""); status != http.StatusUnauthorized || errCode(out) != "totp_required" {
		t.Fatalf("login without a code = %d %v; want 401 totp_required", status, out)
	}
	if status, out := try("123456"); status != http.StatusUnauthorized || errCode(out) != "invalid_credentials" {
		t.Fatalf("login with a wrong code = %d %v; want 401 invalid_credentials", status, out)
	}
	if status, out := newClient(t, e.base).call("POST", "/api/v1/login", map[string]string{"email": "ada@example.com", "password": "wrong password!", "totp": code()}); status != http.StatusUnauthorized || errCode(out) != "invalid_credentials" {
		t.Fatalf("login with a wrong password and a code = %d %v; want 401 invalid_credentials", status, out)
	}
	e.clock.Add(30 * time.Second) // the code that enabled it is spent
	now := code()
	if status, out := try(now); status != http.StatusOK {
		t.Fatalf("login with the code = %d %v; want 200", status, out)
	}
	if status, out := try(now); status != http.StatusUnauthorized {
		t.Fatalf("login with the same code again = %d %v; want 401", status, out)
	}
	first := recovery[0].(string)
	if status, out := try(strings.ToUpper(first)); status != http.StatusOK {
		t.Fatalf("login with a recovery code = %d %v; want 200", status, out)
	}
	if status, out := try(first); status != http.StatusUnauthorized {
		t.Fatalf("login with a used recovery code = %d %v; want 401", status, out)
	}

	e.clock.Add(30 * time.Second)
	if status, out := c.call("POST", "/api/v1/2fa/disable", map[string]string{"password": "wrong password!", "code": code()}); status != http.StatusForbidden {
		t.Fatalf("disable with a wrong password = %d %v; want 403", status, out)
	}
	if status, out := c.call("POST", "/api/v1/2fa/disable", map[string]string{"password": goodPassword, "code": code()}); status != http.StatusNoContent {
		t.Fatalf("disable = %d %v; want 204", status, out)
	}
	e.nextMail("ada@example.com", "Two-factor authentication is off")
	e.login(newClient(t, e.base), "ada@example.com", goodPassword)
}

func TestLoginAlertForNewDevice(t *testing.T) {
	e := newAccountEnv(t)
	e.signup("ada@example.com")
	e.nextMail("ada@example.com", "Verify") // out of the way
	firefox := e.clientFrom("127.0.0.1", firefoxLinux)
	e.login(firefox, "ada@example.com", goodPassword) // the first login: nothing to compare with
	e.login(e.clientFrom("127.0.0.1", firefoxLinux), "ada@example.com", goodPassword)
	e.login(e.clientFrom("127.0.0.1", chromeWindows), "ada@example.com", goodPassword)
	m := e.nextMail("ada@example.com", "New login to your ChatPacket account")
	if !strings.Contains(m.text, "Chrome") || !strings.Contains(m.text, "Windows") {
		t.Fatalf("the alert does not name the device:\n%s", m.text)
	}
	e.api.WaitMail()
	alerts := 0
	for _, m := range e.mails() {
		if strings.Contains(m.subject, "New login") {
			alerts++
		}
	}
	if alerts != 1 {
		t.Fatalf("%d new-login alerts; want 1 (the Chrome login only)", alerts)
	}

	status, out := firefox.call("GET", "/api/v1/account/logins", nil)
	logins, _ := out["logins"].([]any)
	if status != http.StatusOK || len(logins) != 3 {
		t.Fatalf("account/logins = %d %v; want 3 logins", status, out)
	}
	newest := logins[0].(map[string]any)
	if newest["browser"] != "Chrome" || newest["os"] != "Windows" || newest["new_device"] != true || newest["ip"] != "127.0.0.1" {
		t.Fatalf("newest login = %v; want Chrome on Windows, a new device", newest)
	}
	for _, l := range logins[1:] {
		if l.(map[string]any)["new_device"] != false {
			t.Fatalf("login %v is a new device; want not", l)
		}
	}
}

func TestLoginRateLimitSparesTheRightPassword(t *testing.T) {
	e := newAccountEnv(t)
	e.signup("ada@example.com")
	attacker := e.clientFrom("127.0.0.1", firefoxLinux)
	limited := -1
	for i := range 40 {
		status, out := attacker.call("POST", "/api/v1/login", map[string]string{"email": "ada@example.com", "password": fmt.Sprint("guess number ", i)})
		if status == http.StatusTooManyRequests {
			if errCode(out) != "rate_limited" {
				t.Fatalf("throttled login = %v; want rate_limited", out)
			}
			limited = i
			break
		}
		if status != http.StatusUnauthorized {
			t.Fatalf("wrong login %d = %d %v; want 401 or 429", i, status, out)
		}
	}
	if limited < 0 {
		t.Fatal("40 wrong passwords from one IP were never throttled")
	}
	t.Logf("throttled after %d failures", limited)
	resp, err := attacker.http.Post(e.base+"/api/v1/login", "application/json", jsonBody(map[string]string{"email": "ada@example.com", "password": "one more guess"}))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("throttled login = %d, Retry-After %q; want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// The owner, elsewhere, still logs in, though the account is throttled.
	owner := e.clientFrom("127.0.0.2", chromeWindows)
	e.login(owner, "ada@example.com", goodPassword)
	// A wrong guess from there is throttled by the account's budget.
	if status, out := e.clientFrom("127.0.0.3", chromeWindows).call("POST", "/api/v1/login", map[string]string{"email": "ada@example.com", "password": "a guess from elsewhere"}); status != http.StatusTooManyRequests {
		t.Fatalf("wrong password from another IP on a throttled account = %d %v; want 429", status, out)
	}
}

// TestAccountStoreHoldsNoSecrets greps a copy of the node's store, and
// everything the API logged, for a password, a session token, a TOTP
// secret and a recovery code, and finds none; it does find the token's
// SHA-256 (the key of its record), so the search does see what the store
// wrote. (The outbox holds the links of undelivered mail by design: it is
// the mail an operator delivers by hand.)
func TestAccountStoreHoldsNoSecrets(t *testing.T) {
	e := newAccountEnv(t)
	e.signup("ada@example.com")
	resp, err := http.Post(e.base+"/api/v1/login", "application/json", jsonBody(map[string]string{"email": "ada@example.com", "password": goodPassword}))
	if err != nil {
		t.Fatal(err)
	}
	out := decodeBody(t, resp)
	var session string
	for _, c := range resp.Cookies() {
		if c.Name == "chatpacket_session" {
			session = c.Value
		}
	}
	c := newClient(t, e.base)
	c.csrf = out["csrf_token"].(string)
	u, _ := http.NewRequest("GET", e.base, nil)
	c.http.Jar.SetCookies(u.URL, resp.Cookies())
	_, setup := c.call("POST", "/api/v1/2fa/setup", nil)
	secret, _ := setup["secret"].(string)
	code, _ := totp.GenerateCode(secret, e.clock.Now())
	status, enabled := c.call("POST", "/api/v1/2fa/enable", map[string]string{"code": code})
	codes, _ := enabled["recovery_codes"].([]any)
	if session == "" || secret == "" || status != http.StatusOK || len(codes) == 0 {
		t.Fatalf("setup: session %t, secret %t, enable %d %v", session != "", secret != "", status, enabled)
	}
	e.api.WaitMail()

	dir := filepath.Join(t.TempDir(), "copy")
	if err := e.node.DB.Checkpoint(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	var store []byte
	filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(path)
			store = append(store, b...)
		}
		return nil
	})
	hash := sha256.Sum256([]byte(session))
	if !bytes.Contains(store, hash[:]) {
		t.Fatal("the session token's hash is not in the copy: the search sees nothing")
	}
	recovery := normalizeRecoveryCode(codes[0].(string))
	// A failed login and a wrong second factor log what they log, too; and
	// a reset mail that cannot be sent (the outbox is a file now) is
	// logged: by its kind, never its address or link.
	post := func(path string, body map[string]string) {
		if resp, err := http.Post(e.base+path, "application/json", jsonBody(body)); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	post("/api/v1/login", map[string]string{"email": "ada@example.com", "password": goodPassword + "x"})
	post("/api/v1/login", map[string]string{"email": "ada@example.com", "password": goodPassword, "totp": "000000"})
	blocked := filepath.Join(t.TempDir(), "not-a-dir")
	os.WriteFile(blocked, nil, 0o600)
	e.outbox.Dir = filepath.Join(blocked, "outbox")
	post("/api/v1/password/forgot", map[string]string{"email": "ada@example.com"})
	e.api.WaitMail()
	logs := e.logs.Bytes()
	if !bytes.Contains(logs, []byte("level=")) {
		t.Fatal("the API logged nothing, not even the failed mail: the search sees nothing")
	}
	for _, leak := range []string{"ada@example.com", "token="} {
		if bytes.Contains(logs, []byte(leak)) {
			t.Errorf("the logs hold %q:\n%s", leak, logs)
		}
	}
	for name, secret := range map[string]string{"password": goodPassword, "session token": session, "TOTP secret": secret, "recovery code": recovery, "CSRF token": c.csrf} {
		if bytes.Contains(store, []byte(secret)) || bytes.Contains(bytes.ToLower(store), []byte(strings.ToLower(secret))) {
			t.Errorf("the store holds the %s in clear", name)
		}
		if bytes.Contains(logs, []byte(secret)) {
			t.Errorf("the logs hold the %s", name)
		}
	}
}

// agentIDsOf returns the tenant and agent ids of an email.
func agentIDsOf(t *testing.T, e *accountEnv, email string) (tenant, agent storage.ID) {
	t.Helper()
	a, err := e.api.findAgentCtx(context.Background(), email)
	if err != nil || a == nil {
		t.Fatalf("findAgent(%s) = %v, %v", email, a, err)
	}
	return storage.BytesID(a.TenantId), storage.BytesID(a.Id)
}

// TestRateLimiterIsBounded: a limiter keeps at most its maximum of buckets,
// drops full ones first, and a key's spent budget refills with time.
func TestRateLimiterIsBounded(t *testing.T) {
	l := newLimiter(60, 2, 100) // one a second, bursts of 2
	now := time.Now()
	l.spend("hot", now)
	l.spend("hot", now)
	if over, retry := l.over("hot", now); !over || retry <= 0 || retry > time.Second {
		t.Fatalf("over(hot) = %v, %v; want true within a second", over, retry)
	}
	for i := range 1000 {
		l.spend(fmt.Sprint("key ", i), now.Add(time.Duration(i)*time.Second))
	}
	if n := len(l.buckets); n > 100 {
		t.Fatalf("%d buckets; want at most 100", n)
	}
	if over, _ := l.over("hot", now.Add(time.Second)); over {
		t.Fatal("hot is still over a second later")
	}
	if ok, _ := l.take("cold", now); !ok {
		t.Fatal("take(cold) refused a fresh key")
	}
}
