package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// postJSON posts body and decodes the answer.
func postJSON(t *testing.T, url, bearer string, body any) (int, map[string]any) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", url, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// TestKillNineLosesNothingAndLeaksNothing posts messages through a running
// node, kills it with SIGKILL right after the last acknowledgement,
// restarts it on the same data dir, and finds every acknowledged message.
// No file of the data dir and no log line holds a message body.
func TestKillNineLosesNothingAndLeaksNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	n := runServe(t, bin, dir, nil, "--widget-message-limits=false") // one visitor sends 50 at once
	n.waitReady(t)
	base := "http://" + n.addr

	status, signup := postJSON(t, base+"/api/v1/signup", "", map[string]string{"organization": "Acme", "name": "Ada", "email": "ada@example.com", "password": "correct horse battery"})
	if status != http.StatusCreated {
		t.Fatalf("signup = %d %v", status, signup)
	}
	status, sess := postJSON(t, base+"/api/v1/widget/sessions", "", map[string]string{"widget_key": signup["widget_key"].(string)})
	if status != http.StatusOK {
		t.Fatalf("session = %d %v", status, sess)
	}
	token := sess["visitor_token"].(string)
	marker := "canary-body-" + fmt.Sprint(os.Getpid()) + "-do-not-store-in-clear"
	const messages = 50
	var conv string
	for i := range messages {
		body := map[string]string{"client_id": fmt.Sprint("c", i), "body": fmt.Sprint(marker, " ", i)}
		if conv != "" {
			body["conversation_id"] = conv
		}
		status, out := postJSON(t, base+"/api/v1/widget/messages", token, body)
		if status != http.StatusCreated || out["seq"] != float64(i+1) {
			t.Fatalf("message %d = %d %v", i, status, out)
		}
		conv = out["conversation_id"].(string)
	}
	n.kill(t)
	first := n

	n = runServe(t, bin, dir, nil)
	n.waitReady(t)
	req, _ := http.NewRequest("GET", "http://"+n.addr+"/api/v1/widget/conversations/"+conv+"/messages?after=0&limit=500", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Messages []struct {
			Seq  uint64 `json:"seq"`
			Body string `json:"body"`
		} `json:"messages"`
	}
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if len(got.Messages) != messages {
		t.Fatalf("after kill -9 and restart: %d messages; want all %d acknowledged", len(got.Messages), messages)
	}
	for i, m := range got.Messages {
		if m.Seq != uint64(i+1) || m.Body != fmt.Sprint(marker, " ", i) {
			t.Fatalf("message %d = %+v", i, m)
		}
	}
	n.stop(t)

	for _, p := range []*node{first, n} {
		if strings.Contains(p.stderr.String(), marker) {
			t.Fatal("a message body is in the log")
		}
	}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		b, err := io.ReadAll(f)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(marker)) {
			t.Errorf("a message body is in %s", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
