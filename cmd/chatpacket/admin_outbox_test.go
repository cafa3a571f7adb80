package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/transport/mail"
)

// writeOutbox writes msgs into dataDir's outbox as a node does, a minute
// apart from 10:00 UTC.
func writeOutbox(t *testing.T, dataDir string, msgs ...mail.Message) {
	t.Helper()
	for i, m := range msgs {
		at := time.Date(2026, 11, 28, 10, i, 0, 0, time.UTC)
		o := &mail.Outbox{Dir: filepath.Join(dataDir, "outbox"), From: "ChatPacket <noreply@chatpacket.test>", Now: func() time.Time { return at }}
		if err := o.Send(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
}

func TestAdminOutbox(t *testing.T) {
	dataDir := t.TempDir()
	if out, err := adminRun(t, "outbox", "--data-dir", dataDir); err != nil || !strings.Contains(out, "is empty") {
		t.Fatalf("admin outbox of an empty data dir = %q, %v; want 'is empty'", out, err)
	}
	writeOutbox(t, dataDir,
		mail.Message{To: "ada@example.com", Subject: "Verify your email", Text: "Open https://chat.test/verify?t=one\n"},
		mail.Message{To: "bob@example.com", Subject: "Réinitialisez votre mot de passe", Text: "Bonjour Bob,\nhttps://chat.test/reset?t=two\n"},
		mail.Message{To: "cy@example.com", Subject: "New login", Text: "A new login.\n"},
	)

	out, err := adminRun(t, "outbox", "--data-dir", dataDir)
	if err != nil {
		t.Fatalf("admin outbox: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := [][]string{
		{"N", "TIME", "TO", "SUBJECT"},
		{"1", "2026-11-28 10:00:00", "ada@example.com", "Verify your email"},
		{"2", "2026-11-28 10:01:00", "bob@example.com", "Réinitialisez votre mot de passe"},
		{"3", "2026-11-28 10:02:00", "cy@example.com", "New login"},
	}
	if len(lines) != len(want) {
		t.Fatalf("admin outbox printed %d lines; want %d:\n%s", len(lines), len(want), out)
	}
	for i, fields := range want {
		for _, f := range fields {
			if !strings.Contains(lines[i], f) {
				t.Errorf("line %d %q lacks %q", i, lines[i], f)
			}
		}
	}
	if strings.Contains(out, "https://") {
		t.Errorf("the list shows message text (links):\n%s", out)
	}

	out, err = adminRun(t, "outbox", "--data-dir", dataDir, "--json")
	if err != nil {
		t.Fatalf("admin outbox --json: %v\n%s", err, out)
	}
	var entries []outboxEntry
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("admin outbox --json printed %q: %v", out, err)
	}
	if len(entries) != 3 || entries[1].N != 2 || entries[1].To != "bob@example.com" || entries[1].Subject != "Réinitialisez votre mot de passe" ||
		!entries[1].Time.Equal(time.Date(2026, 11, 28, 10, 1, 0, 0, time.UTC)) || !strings.HasSuffix(entries[1].File, ".eml") || entries[1].Text != "" {
		t.Fatalf("admin outbox --json = %+v; want 3 entries, the second to bob@example.com at 10:01 without its text", entries)
	}

	// One message in full, by number, from the newest, and by file name.
	for _, args := range [][]string{
		{"--show", "2"}, {"--show=-2"}, {"show", "2"}, {"show", entries[1].File},
		{"show", filepath.Join(dataDir, "outbox", entries[1].File)},
	} {
		out, err := adminRun(t, append([]string{"outbox", "--data-dir", dataDir}, args...)...)
		if args[0] == "show" {
			out, err = adminRun(t, append(append([]string{"outbox"}, args...), "--data-dir", dataDir)...)
		}
		if err != nil {
			t.Fatalf("admin outbox %v: %v\n%s", args, err, out)
		}
		for _, w := range []string{"To: bob@example.com\n", "Subject: Réinitialisez votre mot de passe\n", "From: ChatPacket <noreply@chatpacket.test>\n",
			"\n\nBonjour Bob,\nhttps://chat.test/reset?t=two\n", entries[1].File} {
			if !strings.Contains(out, w) {
				t.Errorf("admin outbox %v lacks %q:\n%s", args, w, out)
			}
		}
	}
	out, err = adminRun(t, "outbox", "show", "last", "--data-dir", dataDir, "--json")
	var e outboxEntry
	if err != nil || json.Unmarshal([]byte(out), &e) != nil || e.N != 3 || e.To != "cy@example.com" || e.Text != "A new login.\n" {
		t.Fatalf("admin outbox show last --json = %q, %v; want message 3 with its text", out, err)
	}

	for _, args := range [][]string{{"--show", "4"}, {"--show", "0"}, {"--show=-4"}, {"--show", "nope.eml"}} {
		if out, err := adminRun(t, append([]string{"outbox", "--data-dir", dataDir}, args...)...); err == nil {
			t.Errorf("admin outbox %v = %q; want an error", args, out)
		}
	}
	missing := filepath.Join(dataDir, "missing")
	if _, err := adminRun(t, "outbox", "--data-dir", missing); err == nil || !strings.Contains(err.Error(), "no data dir "+missing) {
		t.Errorf("admin outbox of a missing data dir = %v; want 'no data dir %s'", err, missing)
	}

	// A file that is not a message is listed as such, and hides nothing.
	if err := os.WriteFile(filepath.Join(dataDir, "outbox", "20261128T110000.000000000Z-00000000.eml"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = adminRun(t, "outbox", "--data-dir", dataDir)
	if err != nil || !strings.Contains(out, "4  ") || !strings.Contains(out, "(unreadable") || !strings.Contains(out, "cy@example.com") {
		t.Errorf("admin outbox with a bad file = %q, %v; want it listed as unreadable beside the others", out, err)
	}
}

// TestServeMailSender checks which mail a node's flags give: the outbox
// without --smtp-host, said once in the log, and SMTP with it.
func TestServeMailSender(t *testing.T) {
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	cfg := serveConfig{dataDir: "/srv/data", smtpPort: 587, smtpStartTLS: "required", mailFrom: "ChatPacket <noreply@chat.example.com>"}
	o, ok := mailSender(cfg, log).(*mail.Outbox)
	if !ok || o.Dir != "/srv/data/outbox" || o.From != cfg.mailFrom {
		t.Fatalf("mail without --smtp-host = %#v; want the outbox in /srv/data/outbox from %s", o, cfg.mailFrom)
	}
	if !strings.Contains(logs.String(), "mail goes to the outbox") || !strings.Contains(logs.String(), "chatpacket admin outbox") {
		t.Errorf("log %q does not say where mail goes and how to read it", logs.String())
	}

	logs.Reset()
	t.Setenv("CHATPACKET_SMTP_PASSWORD", "")
	cfg.smtpHost, cfg.smtpUser, cfg.smtpPassword = "smtp.example.com", "relay", "s3cret-pw"
	s, ok := mailSender(cfg, log).(*mail.SMTP)
	if !ok || s.Host != "smtp.example.com" || s.Port != 587 || s.Username != "relay" || s.Password != "s3cret-pw" || s.StartTLS != "required" || s.From != cfg.mailFrom {
		t.Fatalf("mail with --smtp-host = %#v; want SMTP to smtp.example.com:587 as relay", s)
	}
	if err := s.Check(); err != nil {
		t.Errorf("Check() = %v", err)
	}
	if l := logs.String(); !strings.Contains(l, "server=smtp.example.com:587") || !strings.Contains(l, "CHATPACKET_SMTP_PASSWORD") || strings.Contains(l, "s3cret-pw") {
		t.Errorf("log %q: want the server, a warning about the password on the command line, never the password", l)
	}
}
