package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/storage"
	"github.com/chatpacket/chatpacket/transport/mail"
)

// runCLI runs `chatpacket ARGS...` in this process and returns what it
// printed on stdout and stderr.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err = root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// TestAccountExportAndPolicyCLI runs a real node and, against it, `account
// export` (the file arrives whole, with progress, and a bad token is
// explained) and `admin policy publish|show` (13 days refused, 14
// accepted, the owner emailed, the API announcing it).
func TestAccountExportAndPolicyCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a node")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	n := runServe(t, bin, dir, []string{"CHATPACKET_MASTER_KEY=" + storage.GenerateMasterKey()}, "--data-dir", data, "--gossip-preset", "local")
	n.waitReady(t)
	nd := &cnode{node: n, name: "a"}
	c := newClient(t, 10*time.Second)
	tn := signupTenant(t, c, nd, nd)
	visitor := visitorSession(t, c, nd, tn)
	ctx := context.Background()
	if st, out, _, err := c.do(ctx, "POST", nd.base()+"/api/v1/widget/messages", map[string]string{"Authorization": "Bearer " + visitor},
		map[string]string{"client_id": "c1", "body": "Where is my parcel?"}); err != nil || st != http.StatusCreated {
		t.Fatalf("POST /api/v1/widget/messages = %d %v %v", st, out, err)
	}

	// The export.
	file := filepath.Join(t.TempDir(), "acme.json")
	_, stderr, err := runCLI(t, "account", "export", "--server", nd.base(), "--token", tn.token, "--out", file)
	if err != nil {
		t.Fatalf("account export: %v\n%s", err, stderr)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var ex struct {
		Format        string
		Visitors      []any
		Conversations []struct{ Messages []struct{ Body string } }
	}
	if err := json.Unmarshal(b, &ex); err != nil || ex.Format != "chatpacket-tenant-export/1" || len(ex.Visitors) != 1 ||
		len(ex.Conversations) != 1 || len(ex.Conversations[0].Messages) != 1 || ex.Conversations[0].Messages[0].Body != "Where is my parcel?" {
		t.Fatalf("the exported file = %s (%v)", b, err)
	}
	if _, err := os.Stat(file + ".partial"); !os.IsNotExist(err) {
		t.Fatalf("%s.partial is left: %v", file, err)
	}
	if !strings.Contains(stderr, "100% 2/2 conversations and visitors") || !strings.Contains(stderr, "export: wrote "+file) {
		t.Fatalf("account export printed %q; want its progress and the file", stderr)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	if _, _, err := runCLI(t, "account", "export", "--server", nd.base(), "--token", "wrong", "--out", bad); err == nil ||
		!strings.Contains(err.Error(), "the server refused the token (401)") {
		t.Fatalf("export with a bad token = %v; want the 401 explained", err)
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Fatalf("a refused export left %s: %v", bad, err)
	}

	// The policy notice: dates count from today (UTC).
	y, m, d := time.Now().UTC().Date()
	day := func(n int) string { return time.Date(y, m, d+n, 0, 0, 0, 0, time.UTC).Format(time.DateOnly) }
	if out, _, err := runCLI(t, "admin", "policy", "publish", "--data-dir", data, "--effective", day(13), "--summary", "Shorter retention."); err == nil ||
		!strings.Contains(err.Error(), "at least 14 days") {
		t.Fatalf("publish 13 days out = %v\n%s; want refused", err, out)
	}
	out, _, err := runCLI(t, "admin", "policy", "publish", "--data-dir", data, "--effective", day(14), "--summary", "Shorter retention.", "--url", "https://chatpacket.test/privacy")
	if err != nil || !strings.Contains(out, "emailed 1 of 1 tenant owners") {
		t.Fatalf("publish 14 days out = %v\n%s; want the owner emailed", err, out)
	}
	files, err := (&mail.Outbox{Dir: filepath.Join(data, "outbox")}).List()
	if err != nil {
		t.Fatal(err)
	}
	mailed := false
	for _, f := range files {
		b, _ := os.ReadFile(f)
		mailed = mailed || bytes.Contains(b, []byte("To: "+tn.email)) && bytes.Contains(b, []byte("Subject: Our privacy policy changes on"))
	}
	if !mailed {
		t.Fatalf("no policy email to %s in the outbox (%d files)", tn.email, len(files))
	}
	if out, _, err := runCLI(t, "admin", "policy", "show", "--data-dir", data); err != nil || !strings.Contains(out, day(14)) || !strings.Contains(out, "upcoming") {
		t.Fatalf("policy show = %v\n%s", err, out)
	}
	if st, out, _, err := c.do(ctx, "GET", nd.base()+"/api/v1/policy", nil, nil); err != nil || st != http.StatusOK || out["notice"].(map[string]any)["effective_date"] != day(14) {
		t.Fatalf("GET /api/v1/policy = %d %v %v", st, out, err)
	}
}
