package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/storage"
)

// TestClusterErasure is the privacy promise on a 3-node cluster of real
// processes: a visitor writes a canary, a backup is taken, the owner
// deletes the visitor. Then on every node every read of the visitor is
// erased, their token is refused, a backup taken now has nothing of them,
// and once the nodes are stopped nothing in any data dir or backup, raw or
// opened with the master key, holds the canary; restoring the backup taken
// before the deletion, with the newer ledger, does not bring it back.
func TestClusterErasure(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-process cluster: skipped with -short")
	}
	c := startCluster(t, 3)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	cl := newClient(t, 10*time.Second)
	ctx := context.Background()
	tn := signupTenant(t, cl, n1, n2)
	owner := map[string]string{"Authorization": "Bearer " + tn.token}

	canary := "canary-" + storage.NewID().String()
	st, sess, _, err := cl.do(ctx, "POST", n2.base()+"/api/v1/widget/sessions", nil, map[string]string{"widget_key": tn.widgetKey})
	if err != nil || st != http.StatusOK {
		t.Fatalf("widget session = %d %v %v", st, sess, err)
	}
	vid := sess["visitor_id"].(string)
	visitor := map[string]string{"Authorization": "Bearer " + sess["visitor_token"].(string)}
	st, out, _, err := cl.do(ctx, "POST", n2.base()+"/api/v1/widget/messages", visitor, map[string]string{"client_id": "c1", "body": "my secret is " + canary})
	if err != nil || st != http.StatusCreated {
		t.Fatalf("visitor message = %d %v %v", st, out, err)
	}
	conv := out["conversation_id"].(string)
	if st, out, _, err := cl.do(ctx, "POST", n3.base()+"/api/v1/widget/contact", visitor, map[string]string{"name": canary, "email": "eve@example.com"}); err != nil || st != http.StatusNoContent {
		t.Fatalf("contact = %d %v %v", st, out, err)
	}
	// Every node reads the canary: the checks below see data.
	for _, nd := range c.nodes {
		if err := poll(10*time.Second, 100*time.Millisecond, func() error {
			_, out, _, err := cl.do(ctx, "GET", nd.base()+"/api/v1/conversations/"+conv+"/messages", owner, nil)
			if err == nil && !strings.Contains(fmt.Sprint(out), canary) {
				err = fmt.Errorf("%s does not show the canary: %v", nd.name, out)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	backups := t.TempDir()
	before := filepath.Join(backups, "before")
	if out, err := adminRun(t, "backup", "--data-dir", n1.dataDir(), "--out", before); err != nil {
		t.Fatalf("backup before the deletion: %v\n%s", err, out)
	}

	st, out, _, err = cl.do(ctx, "DELETE", n3.base()+"/api/v1/visitors/"+vid, owner, nil)
	if err != nil || st != http.StatusNoContent {
		t.Fatalf("DELETE visitor = %d %v %v", st, out, err)
	}
	for _, nd := range c.nodes {
		if st, out, _, _ := cl.do(ctx, "GET", nd.base()+"/api/v1/visitors/"+vid, owner, nil); st != http.StatusOK || out["erased"] != true {
			t.Errorf("%s: visitor after deletion = %d %v; want erased", nd.name, st, out)
		}
		if st, out, _, _ := cl.do(ctx, "GET", nd.base()+"/api/v1/visitors/"+vid+"/export", owner, nil); st != http.StatusNotFound {
			t.Errorf("%s: export after deletion = %d %v; want 404", nd.name, st, out)
		}
		st, out, _, _ := cl.do(ctx, "GET", nd.base()+"/api/v1/conversations/"+conv+"/messages", owner, nil)
		if msgs, _ := out["messages"].([]any); st != http.StatusOK || len(msgs) != 1 || msgs[0].(map[string]any)["erased"] != true || strings.Contains(fmt.Sprint(out), canary) {
			t.Errorf("%s: messages after deletion = %d %v; want one, erased", nd.name, st, out)
		}
		if st, out, _, _ := cl.do(ctx, "GET", nd.base()+"/api/v1/widget/conversations", visitor, nil); st != http.StatusUnauthorized {
			t.Errorf("%s: the erased visitor's token = %d %v; want 401", nd.name, st, out)
		}
	}
	// Each node scrubs its raft state of the erased data.
	for _, nd := range c.nodes {
		if err := poll(30*time.Second, 100*time.Millisecond, func() error {
			if !strings.Contains(nd.stderr.String(), "erased data scrubbed from raft state") {
				return fmt.Errorf("%s has not scrubbed its raft state", nd.name)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	after := filepath.Join(backups, "after")
	if out, err := adminRun(t, "backup", "--data-dir", n2.dataDir(), "--out", after); err != nil {
		t.Fatalf("backup after the deletion: %v\n%s", err, out)
	}
	c.stopAll()

	restored := filepath.Join(t.TempDir(), "restored")
	keyFile := filepath.Join(t.TempDir(), "master.key")
	if err := os.WriteFile(keyFile, []byte(c.key), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := adminRun(t, "restore", "--from", before, "--ledger", filepath.Join(after, "ledger.txt"), "--data-dir", restored, "--master-key-file", keyFile); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}

	dirs := []string{backups, restored}
	for _, nd := range c.nodes {
		dirs = append(dirs, nd.dataDir())
	}
	needles := [][]byte{[]byte(canary), []byte(hex.EncodeToString([]byte(canary)))}
	for _, dir := range dirs {
		filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, n := range needles {
				if bytes.Contains(data, n) {
					t.Errorf("%s holds the canary in clear", path)
				}
			}
			return nil
		})
	}
	key, err := hex.DecodeString(c.key)
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range dirs[1:] {
		db, err := storage.Open(ctx, storage.Options{Dir: dir, MasterKey: key})
		if err != nil {
			t.Fatalf("open %s: %v", dir, err)
		}
		opened := 0
		err = db.ScanOpen(ctx, []byte{0}, []byte{0xff, 0xff, 0xff}, func(key, plaintext []byte, err error) error {
			if err == nil {
				opened++
			}
			if bytes.Contains(plaintext, []byte(canary)) {
				t.Errorf("%s: the record at %x still opens to the canary", dir, key)
			}
			return nil
		})
		db.Close()
		if err != nil || opened == 0 {
			t.Fatalf("scan of %s: %d records opened, %v", dir, opened, err)
		}
	}
}

// dataDir is the node's --data-dir.
func (n *cnode) dataDir() string { return filepath.Join(n.dir, "data") }
