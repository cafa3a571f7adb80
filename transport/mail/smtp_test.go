package mail

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them: a
// delivery that does not close its connection, say.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// received is one message a test server accepted.
type received struct {
	user, from string
	to         []string
	data       []byte
	tls        bool
}

// smtpServer is a real SMTP server on 127.0.0.1:0 that keeps what it
// receives; it logs in the user "relay" with the password "s3cret-pw".
type smtpServer struct {
	port int

	mu    sync.Mutex
	got   []received
	auths int // AUTH attempts, successful or not
}

// startSMTP runs a server until the test ends; tlsCfg, when not nil, makes
// it offer STARTTLS.
func startSMTP(t *testing.T, tlsCfg *tls.Config) *smtpServer {
	t.Helper()
	ts := &smtpServer{}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &smtpSession{srv: ts, conn: c}, nil
	}))
	srv.Domain = "smtp.test"
	srv.AllowInsecureAuth = true // loopback: net/smtp sends PLAIN to 127.0.0.1 in clear
	srv.TLSConfig = tlsCfg
	srv.ReadTimeout, srv.WriteTimeout = 5*time.Second, 5*time.Second
	srv.ErrorLog = testLogger{t}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.port = ln.Addr().(*net.TCPAddr).Port
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ts
}

func (ts *smtpServer) messages() []received {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]received(nil), ts.got...)
}

func (ts *smtpServer) authAttempts() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.auths
}

type smtpSession struct {
	srv  *smtpServer
	conn *smtp.Conn
	cur  received
}

func (s *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *smtpSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		s.srv.mu.Lock()
		s.srv.auths++
		s.srv.mu.Unlock()
		if user != "relay" || pass != "s3cret-pw" {
			return errors.New("invalid username or password")
		}
		s.cur.user = user
		return nil
	}), nil
}

func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	s.cur.from = from
	return nil
}

func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.cur.to = append(s.cur.to, to)
	return nil
}

func (s *smtpSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.data = b
	_, s.cur.tls = s.conn.TLSConnectionState()
	s.srv.mu.Lock()
	s.srv.got = append(s.srv.got, s.cur)
	s.srv.mu.Unlock()
	return nil
}

func (s *smtpSession) Reset()        { s.cur = received{user: s.cur.user} }
func (s *smtpSession) Logout() error { return nil }

type testLogger struct{ t *testing.T }

func (l testLogger) Printf(format string, v ...any) { l.t.Logf("smtp server: "+format, v...) }
func (l testLogger) Println(v ...any)               { l.t.Log(append([]any{"smtp server:"}, v...)...) }

var testNow = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

// testMessage has a line starting with a dot, which SMTP must stuff and
// unstuff, and non-ASCII in the subject and body.
var testMessage = Message{To: "ada@example.com", Subject: "Réinitialisez", Text: "Hello Ada,\n.a line with a leading dot\n.\nbye\n"}

func testSender(port int) *SMTP {
	return &SMTP{Host: "127.0.0.1", Port: port, From: "ChatPacket <noreply@chatpacket.test>",
		LocalName: "node.chatpacket.test", Now: func() time.Time { return testNow }, Timeout: 5 * time.Second}
}

func TestSMTPDeliversWithAuth(t *testing.T) {
	ts := startSMTP(t, nil)
	s := testSender(ts.port)
	s.Username, s.Password, s.StartTLS = "relay", "s3cret-pw", StartTLSOff
	if err := s.Send(context.Background(), testMessage); err != nil {
		t.Fatalf("Send = %v", err)
	}
	got := ts.messages()
	if len(got) != 1 {
		t.Fatalf("server received %d messages; want 1", len(got))
	}
	want := testMessage.Bytes(s.From, testNow)
	if !bytes.Equal(got[0].data, want) {
		t.Errorf("server received\n%q\nwant (the outbox's bytes)\n%q", got[0].data, want)
	}
	if got[0].user != "relay" || got[0].from != "noreply@chatpacket.test" || len(got[0].to) != 1 || got[0].to[0] != "ada@example.com" {
		t.Errorf("envelope: user %q, from %q, to %q; want relay, noreply@chatpacket.test, [ada@example.com]", got[0].user, got[0].from, got[0].to)
	}

	// Opportunistic sends in clear to a server without TLS.
	s.StartTLS = StartTLSOpportunistic
	if err := s.Send(context.Background(), testMessage); err != nil {
		t.Fatalf("Send (opportunistic, no TLS offered) = %v", err)
	}
	if n := len(ts.messages()); n != 2 {
		t.Fatalf("server received %d messages; want 2", n)
	}
}

func TestSMTPRefusedLogin(t *testing.T) {
	ts := startSMTP(t, nil)
	s := testSender(ts.port)
	s.Username, s.Password, s.StartTLS = "relay", "wrong-pw-123", StartTLSOff
	err := s.Send(context.Background(), testMessage)
	if err == nil {
		t.Fatal("Send with a wrong password = nil; want an error")
	}
	if msg := err.Error(); !strings.Contains(msg, s.Addr()) || !strings.Contains(msg, "auth") || strings.Contains(msg, s.Password) {
		t.Errorf("Send with a wrong password = %q; want it to name %s and auth, not the password", msg, s.Addr())
	}
	if n := len(ts.messages()); n != 0 {
		t.Errorf("server received %d messages after a refused login; want 0", n)
	}
}

func TestSMTPStartTLSRequiredWithoutTLSFails(t *testing.T) {
	ts := startSMTP(t, nil)
	for _, mode := range []string{StartTLSRequired, ""} {
		s := testSender(ts.port)
		s.Username, s.Password, s.StartTLS = "relay", "s3cret-pw", mode
		err := s.Send(context.Background(), testMessage)
		if err == nil || !strings.Contains(err.Error(), "STARTTLS") || !strings.Contains(err.Error(), s.Addr()) {
			t.Errorf("Send (StartTLS %q) to a server without TLS = %v; want an error naming the server and STARTTLS", mode, err)
		}
	}
	if n, a := len(ts.messages()), ts.authAttempts(); n != 0 || a != 0 {
		t.Errorf("server saw %d messages and %d logins; want none: nothing goes in clear", n, a)
	}
}

func TestSMTPStartTLS(t *testing.T) {
	cert, roots := testCertificate(t)
	ts := startSMTP(t, &tls.Config{Certificates: []tls.Certificate{cert}})
	for _, mode := range []string{StartTLSRequired, StartTLSOpportunistic} {
		s := testSender(ts.port)
		s.Username, s.Password, s.StartTLS = "relay", "s3cret-pw", mode
		s.TLSConfig = &tls.Config{RootCAs: roots}
		if err := s.Send(context.Background(), testMessage); err != nil {
			t.Fatalf("Send (StartTLS %s) = %v", mode, err)
		}
	}
	got := ts.messages()
	if len(got) != 2 {
		t.Fatalf("server received %d messages; want 2", len(got))
	}
	for _, r := range got {
		if !r.tls || r.user != "relay" || !bytes.Equal(r.data, testMessage.Bytes("ChatPacket <noreply@chatpacket.test>", testNow)) {
			t.Errorf("received tls=%v user=%q data %q; want the message over TLS, logged in", r.tls, r.user, r.data)
		}
	}

	// A certificate the client does not trust is refused, before the login.
	s := testSender(ts.port)
	s.Username, s.Password = "relay", "s3cret-pw"
	err := s.Send(context.Background(), testMessage)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("Send to an untrusted certificate = %v; want x509.UnknownAuthorityError", err)
	}
	if a := ts.authAttempts(); a != 2 {
		t.Errorf("server saw %d logins; want 2 (none over the untrusted connection)", a)
	}
}

func TestSMTPTimeout(t *testing.T) {
	// A server that accepts and never greets.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	s := testSender(ln.Addr().(*net.TCPAddr).Port)
	s.Timeout = 200 * time.Millisecond
	start := time.Now()
	err = s.Send(context.Background(), testMessage)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), s.Addr()) {
		t.Errorf("Send to a silent server = %v; want a deadline error naming the server", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Send to a silent server took %v; want about the 200ms timeout", d)
	}
}

func TestSMTPCheck(t *testing.T) {
	ok := SMTP{Host: "smtp.example.com", Port: 587, From: "ChatPacket <noreply@example.com>"}
	if err := ok.Check(); err != nil {
		t.Fatalf("Check(%+v) = %v", ok, err)
	}
	for _, bad := range []func(*SMTP){
		func(s *SMTP) { s.Host = "" },
		func(s *SMTP) { s.Port = 0 },
		func(s *SMTP) { s.Port = 70000 },
		func(s *SMTP) { s.StartTLS = "maybe" },
		func(s *SMTP) { s.From = "not an address" },
		func(s *SMTP) { s.Password = "pw" },
	} {
		s := ok
		bad(&s)
		if err := s.Check(); err == nil {
			t.Errorf("Check(%+v) = nil; want an error", s)
		}
	}
	if err := ok.Send(context.Background(), Message{To: "ada@example.com\r\nBcc: eve@example.com"}); err == nil || strings.Contains(err.Error(), "smtp.example.com") {
		t.Errorf("Send of an injected recipient = %v; want refused before dialling", err)
	}
}

// testCertificate makes a self-signed certificate for 127.0.0.1 and a pool
// that trusts it.
func testCertificate(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "smtp.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, roots
}
