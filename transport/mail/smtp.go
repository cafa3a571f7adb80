package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/smtp"
	"os"
	"strconv"
	"time"
)

// StartTLS settings of an SMTP sender.
const (
	// StartTLSRequired upgrades every connection with STARTTLS and fails
	// when the server does not offer it: nothing, password or message,
	// crosses the network in clear.
	StartTLSRequired = "required"
	// StartTLSOpportunistic upgrades when the server offers STARTTLS and
	// sends in clear otherwise. An attacker on the path can strip the
	// offer; use it only for relays that cannot do TLS.
	StartTLSOpportunistic = "opportunistic"
	// StartTLSOff never upgrades: for a relay on the same machine. A
	// password is then refused unless the server is on loopback
	// (net/smtp will not send one in clear over a network).
	StartTLSOff = "off"
)

// DefaultSMTPTimeout bounds one delivery (dial, TLS, auth and data) when
// the context has no earlier deadline.
const DefaultSMTPTimeout = 30 * time.Second

// SMTP delivers messages to an SMTP server (a relay or submission
// service), one connection per message: the service sends few emails,
// and a fresh connection has no idle state to go stale. Its methods may
// be called concurrently.
type SMTP struct {
	// Host and Port of the server: submission is usually port 587 with
	// STARTTLS. Host is also the name its certificate must carry.
	Host string
	Port int
	// Username, when set, logs in with AUTH PLAIN as Username and
	// Password. It never appears in errors or logs.
	Username, Password string
	// StartTLS is StartTLSRequired (the default when empty),
	// StartTLSOpportunistic or StartTLSOff. The server's certificate is
	// always verified once STARTTLS is used.
	StartTLS string
	// From is the sender as it appears in the From header, with or
	// without a display name ("ChatPacket <noreply@example.com>"); its
	// address is also the envelope sender.
	From string
	// TLSConfig is the base of the STARTTLS configuration (RootCAs to
	// trust a private CA, say); nil means the system's roots. Its
	// ServerName defaults to Host.
	TLSConfig *tls.Config
	// LocalName is the name given in EHLO; empty means this machine's
	// host name. Some servers refuse "localhost".
	LocalName string
	// Timeout bounds one delivery when ctx has no earlier deadline; zero
	// means DefaultSMTPTimeout.
	Timeout time.Duration
	// Now dates messages; nil means time.Now.
	Now func() time.Time
}

var _ Sender = (*SMTP)(nil)

// Check reports a setting Send would fail on, so that a node refuses bad
// configuration at start rather than at its first email.
func (s *SMTP) Check() error {
	switch {
	case s.Host == "":
		return errors.New("mail: smtp: no host")
	case s.Port < 1 || s.Port > 65535:
		return fmt.Errorf("mail: smtp: port %d out of range 1-65535", s.Port)
	case s.Username == "" && s.Password != "":
		return errors.New("mail: smtp: a password without a username")
	}
	switch s.StartTLS {
	case "", StartTLSRequired, StartTLSOpportunistic, StartTLSOff:
	default:
		return fmt.Errorf("mail: smtp: starttls %q: want required, opportunistic or off", s.StartTLS)
	}
	if _, err := s.envelopeFrom(); err != nil {
		return err
	}
	return nil
}

// Addr is the server's host:port, as errors name it.
func (s *SMTP) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

func (s *SMTP) envelopeFrom() (string, error) {
	addr, err := mail.ParseAddress(s.From)
	if err != nil {
		return "", fmt.Errorf("mail: smtp: from %q: %w", s.From, err)
	}
	return addr.Address, nil
}

// Send delivers m in one SMTP transaction; it returns once the server has
// accepted the message (250 after DATA). Errors name the server, never the
// password.
func (s *SMTP) Send(ctx context.Context, m Message) error {
	if err := m.check(); err != nil {
		return err
	}
	if err := s.Check(); err != nil {
		return err
	}
	if err := s.send(ctx, m); err != nil {
		return fmt.Errorf("mail: smtp %s: %w", s.Addr(), err)
	}
	return nil
}

func (s *SMTP) send(ctx context.Context, m Message) error {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultSMTPTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.Addr())
	if err != nil {
		return ctxErr(ctx, err)
	}
	// net/smtp has no context: a deadline bounds every read and write, and
	// cancelling ctx unblocks them at once.
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	c, err := smtp.NewClient(conn, s.Host)
	if err != nil {
		conn.Close()
		return ctxErr(ctx, err)
	}
	defer c.Close()
	if err := s.converse(c, m); err != nil {
		return ctxErr(ctx, err)
	}
	return nil
}

// converse runs the transaction on a connected client.
func (s *SMTP) converse(c *smtp.Client, m Message) error {
	local := s.LocalName
	if local == "" {
		local, _ = os.Hostname()
	}
	if local != "" {
		if err := c.Hello(local); err != nil {
			return fmt.Errorf("ehlo: %w", err)
		}
	}
	offered, _ := c.Extension("STARTTLS")
	switch mode := s.StartTLS; {
	case mode == StartTLSOff:
	case offered:
		cfg := &tls.Config{}
		if s.TLSConfig != nil {
			cfg = s.TLSConfig.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = s.Host
		}
		if err := c.StartTLS(cfg); err != nil {
			return fmt.Errorf("starttls: %w", err)
		}
	case mode == StartTLSOpportunistic:
	default:
		return errors.New("the server does not offer STARTTLS, and StartTLS is required (make it offer TLS, or set StartTLS to opportunistic or off)")
	}
	if s.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", s.Username, s.Password, s.Host)); err != nil {
			return fmt.Errorf("auth: %w", err)
		}
	}
	from, _ := s.envelopeFrom() // checked by Send
	if err := c.Mail(from); err != nil {
		return fmt.Errorf("mail from: %w", err)
	}
	if err := c.Rcpt(m.To); err != nil {
		return fmt.Errorf("rcpt to: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	if _, err := w.Write(m.Bytes(s.From, now().UTC())); err != nil {
		w.Close()
		return fmt.Errorf("data: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	// The message is accepted; a failing QUIT does not unsend it.
	c.Quit()
	return nil
}

// ctxErr prefers the context's error to the i/o timeout it caused.
func ctxErr(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, ctx.Err()):
		return err
	case ctx.Err() != nil:
		return fmt.Errorf("%w (%w)", context.Cause(ctx), err)
	case errors.Is(err, os.ErrDeadlineExceeded):
		// The connection's deadline is ctx's, and may pass a moment before
		// ctx's own timer fires.
		return fmt.Errorf("%w (%w)", context.DeadlineExceeded, err)
	}
	return err
}
