package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestTLSSelfSignedPair generates the development pair, reuses it on the
// next start, and replaces it when it is about to expire.
func TestTLSSelfSignedPair(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	now := time.Now()
	certFile, keyFile, generated, err := selfSignedPair(dir, now)
	if err != nil || !generated {
		t.Fatalf("selfSignedPair in an empty dir = %v, generated %v; want a new pair", err, generated)
	}
	for file, want := range map[string]os.FileMode{keyFile: 0o600, certFile: 0o644, dir: 0o700} {
		if st, err := os.Stat(file); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: %v, mode %v; want %v", file, err, st.Mode().Perm(), want)
		}
	}
	first, _ := os.ReadFile(certFile)
	leaf := parseCertPEM(t, first)
	if err := leaf.VerifyHostname("localhost"); err != nil {
		t.Error(err)
	}
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}

	if _, _, generated, err = selfSignedPair(dir, now.Add(time.Hour)); err != nil || generated {
		t.Fatalf("selfSignedPair again = %v, generated %v; want the same pair", err, generated)
	}
	if again, _ := os.ReadFile(certFile); !bytes.Equal(again, first) {
		t.Fatal("the certificate changed on the second start")
	}

	if _, _, generated, err = selfSignedPair(dir, leaf.NotAfter.Add(-selfSignedRenew+time.Hour)); err != nil || !generated {
		t.Fatalf("selfSignedPair near expiry = %v, generated %v; want a new pair", err, generated)
	}
	if renewed, _ := os.ReadFile(certFile); bytes.Equal(renewed, first) {
		t.Fatal("the certificate was not replaced near its expiry")
	}

	// A pair half there is not silently replaced.
	os.Remove(keyFile)
	if _, _, _, err := selfSignedPair(dir, now); err == nil || !strings.Contains(err.Error(), "want both") {
		t.Errorf("selfSignedPair without its key = %v; want an error", err)
	}
}

// TestServeFlagsRefused checks that serve refuses flags that cannot work,
// before it touches the data dir.
func TestServeFlagsRefused(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--smtp-user", "relay"}, "need --smtp-host"},
		{[]string{"--smtp-host", "smtp.example.com", "--smtp-user", "relay"}, "CHATPACKET_SMTP_PASSWORD"},
		{[]string{"--smtp-host", "smtp.example.com", "--smtp-password", "pw"}, "--smtp-password needs --smtp-user"},
		{[]string{"--smtp-host", "smtp.example.com:587"}, "--smtp-port"},
		{[]string{"--smtp-host", "smtp.example.com", "--smtp-port", "0"}, "--smtp-port 0"},
		{[]string{"--smtp-host", "smtp.example.com", "--smtp-starttls", "maybe"}, `--smtp-starttls "maybe"`},
		{[]string{"--mail-from", "nobody"}, `--mail-from "nobody"`},
		{[]string{"--tls-cert", "cert.pem"}, "--tls-cert and --tls-key go together"},
		{[]string{"--tls-key", "key.pem"}, "--tls-cert and --tls-key go together"},
		{[]string{"--tls-self-signed", "--tls-cert", "c.pem", "--tls-key", "k.pem"}, "not both"},
	} {
		dataDir := filepath.Join(t.TempDir(), "data")
		root := newRootCommand()
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		root.SetArgs(append([]string{"serve", "--data-dir", dataDir}, tc.args...))
		err := root.ExecuteContext(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("serve %v = %v; want an error with %q", tc.args, err, tc.want)
		}
		if _, err := os.Stat(dataDir); err == nil {
			t.Errorf("serve %v created its data dir before refusing", tc.args)
		}
	}
}

// TestTLSServeSelfSigned runs the binary with --tls-self-signed: it serves
// HTTPS with the certificate it wrote to its data dir, without HSTS (a
// browser would keep it for every app on localhost), login sets a __Host-
// Secure cookie, and a restart reuses the certificate. Started again with
// that pair as --tls-cert and --tls-key, as a real certificate is given,
// every answer carries HSTS.
func TestTLSServeSelfSigned(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	n := runServe(t, bin, dir, nil, "--tls-self-signed")
	certFile := filepath.Join(dir, "chatpacket-data", "tls", "cert.pem")
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, "chatpacket-data", "tls", "key.pem")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key.pem: %v; want mode 0600", err)
	}
	fp := n.logValue(t, `msg="serving HTTPS with a self-signed certificate.*sha256=(\S+)`)
	if want := fingerprint(parseCertPEM(t, certPEM).Raw); fp != want {
		t.Errorf("logged fingerprint %s; want %s", fp, want)
	}
	n.waitLog(t, `msg=serving http=\S+ scheme=https`)

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	base := "https://" + n.addr
	resp := tlsDo(t, c, "GET", base+"/healthz", "", http.StatusOK)
	if got := resp.Header.Get("Strict-Transport-Security"); got != "" {
		t.Errorf("GET /healthz with the self-signed pair: Strict-Transport-Security = %q; want none", got)
	}
	if resp.TLS == nil || resp.ProtoMajor != 1 {
		t.Errorf("GET /healthz over %s, TLS %v; want HTTP/1.1 over TLS", resp.Proto, resp.TLS != nil)
	}

	// Without trusting the certificate, a client refuses the node; and a
	// plain HTTP request gets no answer it could mistake for the API.
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("GET /healthz without trusting the certificate succeeded")
	}
	if resp, err := http.Get("http://" + n.addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("GET http:// /healthz on the TLS port = 200")
		}
	}

	waitReadyTLS(t, c, n)
	var signup struct {
		WidgetKey string `json:"widget_key"`
	}
	resp = tlsDo(t, c, "POST", base+"/api/v1/signup", `{"organization":"Acme","name":"Ada","email":"ada@example.com","password":"correct horse battery"}`, http.StatusCreated, &signup)
	resp = tlsDo(t, c, "POST", base+"/api/v1/login", `{"email":"ada@example.com","password":"correct horse battery"}`, http.StatusOK)
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		if strings.Contains(ck.Name, "session") {
			session = ck
		}
	}
	if session == nil || session.Name != "__Host-chatpacket_session" || !session.Secure || !session.HttpOnly || session.Path != "/" || session.Domain != "" {
		t.Fatalf("login cookies %q; want __Host-chatpacket_session, Secure, HttpOnly, Path=/, no Domain", resp.Header.Values("Set-Cookie"))
	}

	// WSS: a visitor's socket opens over TLS on the same port.
	var visitor struct {
		Token string `json:"visitor_token"`
	}
	tlsDo(t, c, "POST", base+"/api/v1/widget/sessions", `{"widget_key":"`+signup.WidgetKey+`"}`, http.StatusOK, &visitor)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss://"+n.addr+"/ws/widget?token="+visitor.Token, &websocket.DialOptions{HTTPClient: c})
	if err != nil {
		t.Fatalf("dial wss /ws/widget: %v", err)
	}
	ws.Close(websocket.StatusNormalClosure, "")
	n.stop(t)

	// The next start reuses the pair.
	n = runServe(t, bin, dir, nil, "--tls-self-signed")
	n.waitLog(t, `msg="serving HTTPS with a self-signed certificate.*sha256=`+fp+`.*generated=false`)
	if again, _ := os.ReadFile(certFile); !bytes.Equal(again, certPEM) {
		t.Error("the certificate changed on restart")
	}
	waitReadyTLS(t, c, n)
	n.stop(t)

	// The same pair given as a real certificate would be: HSTS on every
	// answer, the WebSocket upgrade included.
	n = runServe(t, bin, dir, nil, "--tls-cert", certFile, "--tls-key", filepath.Join(dir, "chatpacket-data", "tls", "key.pem"))
	waitReadyTLS(t, c, n)
	resp = tlsDo(t, c, "GET", "https://"+n.addr+"/healthz", "", http.StatusOK)
	if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=31536000" {
		t.Errorf("GET /healthz with --tls-cert: Strict-Transport-Security = %q; want max-age=31536000", got)
	}
	tlsDo(t, c, "POST", "https://"+n.addr+"/api/v1/widget/sessions", `{"widget_key":"`+signup.WidgetKey+`"}`, http.StatusOK, &visitor)
	ws, wsResp, err := websocket.Dial(ctx, "wss://"+n.addr+"/ws/widget?token="+visitor.Token, &websocket.DialOptions{HTTPClient: c})
	if err != nil {
		t.Fatalf("dial wss /ws/widget with --tls-cert: %v", err)
	}
	if got := wsResp.Header.Get("Strict-Transport-Security"); got != "max-age=31536000" {
		t.Errorf("WebSocket upgrade Strict-Transport-Security = %q; want max-age=31536000", got)
	}
	ws.Close(websocket.StatusNormalClosure, "")
	n.stop(t)
}

// waitReadyTLS polls /readyz over HTTPS until it answers 200.
func waitReadyTLS(t *testing.T, c *http.Client, n *node) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for tlsDo(t, c, "GET", "https://"+n.addr+"/readyz", "", 0).StatusCode != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("/readyz not 200 within 20 s\n%s", n.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tlsDo sends a request and checks its status (want 0: any); it decodes a
// JSON answer into out, when given.
func tlsDo(t *testing.T, c *http.Client, method, url, body string, want int, out ...any) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want != 0 && resp.StatusCode != want {
		t.Fatalf("%s %s = %d %s; want %d", method, url, resp.StatusCode, b, want)
	}
	for _, o := range out {
		if err := json.Unmarshal(b, o); err != nil {
			t.Fatalf("%s %s answered %q: %v", method, url, b, err)
		}
	}
	return resp
}

func parseCertPEM(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("not a PEM certificate: %q", b)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
