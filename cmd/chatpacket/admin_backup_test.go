package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chatpacket/chatpacket/storage"
)

func TestAdminBackupCommandsHelpAndErrors(t *testing.T) {
	for args, want := range map[string]string{
		"backup --help":        "DATA_DIR/backups/<UTC time>",
		"restore --help":       "a person erased after the backup was made does not\ncome back",
		"ledger export --help": "admin restore --ledger",
	} {
		out, err := adminRun(t, strings.Fields(args)...)
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("admin %s = %v:\n%s\nwant it to contain %q", args, err, out, want)
		}
	}
	dir := filepath.Join(t.TempDir(), "data")
	want := "no node running with data dir " + dir + " (admin socket missing)"
	for _, args := range [][]string{{"backup", "--data-dir", dir}, {"ledger", "export", "--data-dir", dir}} {
		if _, err := adminRun(t, args...); err == nil || err.Error() != want {
			t.Errorf("admin %q without a node = %v; want %q", args, err, want)
		}
	}
	t.Setenv("CHATPACKET_MASTER_KEY", "")
	if _, err := adminRun(t, "restore", "--from", dir); err == nil || !strings.Contains(err.Error(), "give --from") {
		t.Errorf("restore without --data-dir = %v; want a usage error", err)
	}
	if _, err := adminRun(t, "restore", "--from", dir, "--data-dir", t.TempDir()); err == nil || !strings.Contains(err.Error(), "master key the backup was made under") {
		t.Errorf("restore without a key = %v; want it to ask for the master key", err)
	}
	t.Setenv("CHATPACKET_MASTER_KEY", storage.GenerateMasterKey())
	if _, err := adminRun(t, "restore", "--from", dir, "--data-dir", t.TempDir()); err == nil || !strings.Contains(err.Error(), "is not a backup") {
		t.Errorf("restore from a non-backup = %v; want 'is not a backup'", err)
	}
}

// TestAdminBackupAndRestore: a visitor's message on a running node, a
// backup through its socket, the node stopped, the backup restored into a
// new data dir and served: the visitor reads their message back; no file
// of the backup holds it in clear.
func TestAdminBackupAndRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs two nodes")
	}
	bin := buildBinary(t)
	key := storage.GenerateMasterKey()
	env := []string{"CHATPACKET_MASTER_KEY=" + key}
	t.Setenv("CHATPACKET_MASTER_KEY", key) // for restore, in this process
	dir := t.TempDir()
	dataA := filepath.Join(dir, "a")
	a := runServe(t, bin, dir, env, "--data-dir", dataA, "--gossip-preset", "local")
	a.waitReady(t)

	const canary = "canary-backup-cli-5d1e"
	var signup struct {
		WidgetKey string `json:"widget_key"`
	}
	apiPost(t, a.addr, "/api/v1/signup", "", `{"organization":"Acme","name":"Ada","email":"ada@example.com","password":"correct horse battery"}`, &signup)
	var sess struct {
		VisitorToken string `json:"visitor_token"`
	}
	apiPost(t, a.addr, "/api/v1/widget/sessions", "", `{"widget_key":"`+signup.WidgetKey+`"}`, &sess)
	var sent struct {
		ConversationID string `json:"conversation_id"`
	}
	apiPost(t, a.addr, "/api/v1/widget/messages", sess.VisitorToken, `{"client_id":"c1","body":"`+canary+`"}`, &sent)

	backups := filepath.Join(dir, "backups")
	out, err := adminRun(t, "backup", "--data-dir", dataA, "--out", filepath.Join(backups, "one"))
	if err != nil || !strings.Contains(out, "backup "+filepath.Join(backups, "one")+": 64 shards") || !strings.Contains(out, "backup: shard 64/64") {
		t.Fatalf("admin backup = %v:\n%s", err, out)
	}
	if _, err := adminRun(t, "backup", "--data-dir", dataA, "--out", filepath.Join(backups, "one")); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("a backup into an existing dir = %v; want it refused", err)
	}
	ledger := filepath.Join(dir, "ledger-now.txt")
	if out, err := adminRun(t, "ledger", "export", "--data-dir", dataA, "--out", ledger); err != nil || !strings.Contains(out, "ledger of 0 entries") {
		t.Fatalf("admin ledger export = %v:\n%s", err, out)
	}
	a.stop(t)

	dataR := filepath.Join(dir, "restored")
	out, err = adminRun(t, "restore", "--from", filepath.Join(backups, "one"), "--ledger", ledger, "--data-dir", dataR)
	if err != nil || !strings.Contains(out, "restored ") || !strings.Contains(out, "start it with: chatpacket serve --data-dir "+dataR) {
		t.Fatalf("admin restore = %v:\n%s", err, out)
	}
	if hits := grepDir(t, backups, canary); len(hits) > 0 {
		t.Errorf("the canary is in clear in %q", hits)
	}
	r := runServe(t, bin, dir, env, "--data-dir", dataR, "--gossip-preset", "local")
	r.waitReady(t)
	var msgs struct {
		Messages []struct {
			Body string `json:"body"`
		} `json:"messages"`
	}
	apiGet(t, r.addr, "/api/v1/widget/conversations/"+sent.ConversationID+"/messages?after=0", sess.VisitorToken, &msgs)
	if len(msgs.Messages) != 1 || msgs.Messages[0].Body != canary {
		t.Fatalf("messages on the restored node = %+v; want the one sent before the backup", msgs.Messages)
	}
	r.stop(t)
}

func apiPost(t *testing.T, addr, path, bearer, body string, into any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	apiDo(t, req, bearer, into)
}

func apiGet(t *testing.T, addr, path, bearer string, into any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	apiDo(t, req, bearer, into)
}

func apiDo(t *testing.T, req *http.Request, bearer string, into any) {
	t.Helper()
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s = %d %s", req.Method, req.URL.Path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, into); err != nil {
		t.Fatalf("%s %s: %v in %s", req.Method, req.URL.Path, err, b)
	}
}

// grepDir lists the files under dir that contain s.
func grepDir(t *testing.T, dir, s string) []string {
	t.Helper()
	var hits []string
	filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			if b, err := os.ReadFile(path); err == nil && bytes.Contains(b, []byte(s)) {
				hits = append(hits, path)
			}
		}
		return nil
	})
	return hits
}
