package mail

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func TestOutboxWritesWholeMessages(t *testing.T) {
	o := &Outbox{Dir: t.TempDir() + "/outbox", From: "ChatPacket <noreply@chatpacket.test>",
		Now: func() time.Time { return time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC) }}
	if err := o.Send(context.Background(), Message{To: "ada@example.com", Subject: "Vérifiez", Text: "line one\nline two"}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Message{
		{To: "Ada <ada@example.com>", Subject: "x"},
		{To: "ada@example.com\r\nBcc: eve@example.com", Subject: "x"},
		{To: "ada@example.com", Subject: "x\r\nBcc: eve@example.com"},
	} {
		if err := o.Send(context.Background(), bad); err == nil {
			t.Errorf("Send(%q, %q) = nil; want refused", bad.To, bad.Subject)
		}
	}
	files, err := o.List()
	if err != nil || len(files) != 1 {
		t.Fatalf("List = %v, %v; want one message", files, err)
	}
	st, _ := os.Stat(files[0])
	if st.Mode().Perm() != 0o600 {
		t.Errorf("message file mode %v; want 0600", st.Mode().Perm())
	}
	b, _ := os.ReadFile(files[0])
	msg := string(b)
	for _, want := range []string{"To: ada@example.com\r\n", "Subject: =?utf-8?q?V=C3=A9rifiez?=\r\n", "Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n", "\r\n\r\nline one\r\nline two\r\n"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
}
