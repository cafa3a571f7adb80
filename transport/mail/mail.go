// Package mail sends the service's emails: account verification, password
// resets, security alerts and invitations. A node sends through an SMTP
// server when one is configured, and otherwise writes each message to an
// outbox directory in its data dir, where an operator reads them
// (`chatpacket admin outbox`).
package mail

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mimeenc "mime"
	"net/mail"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Message is one plain-text email.
type Message struct {
	To      string
	Subject string
	Text    string
}

// Sender delivers messages. Send returns once the message is handed over
// (to the SMTP server, or on disk in the outbox).
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// Outbox writes each message as an RFC 5322 file (.eml) into a directory:
// the mail of a node with no SMTP server configured.
type Outbox struct {
	Dir  string
	From string
	Now  func() time.Time
}

var _ Sender = (*Outbox)(nil)

// Send writes m to a new file, atomically (a reader never sees half a
// message), readable by the node's user only: messages carry reset links.
func (o *Outbox) Send(_ context.Context, m Message) error {
	if err := m.check(); err != nil {
		return err
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return fmt.Errorf("mail: outbox: %w", err)
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	t := now().UTC()
	suffix := make([]byte, 4)
	rand.Read(suffix)
	name := t.Format("20060102T150405.000000000Z") + "-" + hex.EncodeToString(suffix) + ".eml"
	tmp, err := os.CreateTemp(o.Dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("mail: outbox: %w", err)
	}
	_, werr := tmp.Write(m.Bytes(o.From, t))
	if err := errors.Join(werr, tmp.Sync(), tmp.Close()); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("mail: outbox: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(o.Dir, name)); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("mail: outbox: %w", err)
	}
	return nil
}

// List returns the outbox's messages, oldest first, as file paths.
func (o *Outbox) List() ([]string, error) {
	entries, err := os.ReadDir(o.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mail: outbox: %w", err)
	}
	var out []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".eml") {
			out = append(out, filepath.Join(o.Dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

// check refuses what would make a malformed or injected message.
func (m Message) check() error {
	addr, err := mail.ParseAddress(m.To)
	switch {
	case err != nil || addr.Address != m.To:
		return fmt.Errorf("mail: bad recipient %q", m.To)
	case strings.ContainsAny(m.Subject, "\r\n"):
		return errors.New("mail: a subject is one line")
	}
	return nil
}

// Bytes is m as an RFC 5322 message from from, dated t.
func (m Message) Bytes(from string, t time.Time) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\n", from, m.To, mime(m.Subject), t.Format(time.RFC1123Z))
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString(strings.ReplaceAll(strings.ReplaceAll(m.Text, "\r\n", "\n"), "\n", "\r\n"))
	if !strings.HasSuffix(m.Text, "\n") {
		b.WriteString("\r\n")
	}
	return []byte(b.String())
}

// mime encodes a header value that is not plain ASCII (RFC 2047).
func mime(s string) string {
	for _, r := range s {
		if r > 126 {
			return mimeenc.QEncoding.Encode("utf-8", s)
		}
	}
	return s
}
