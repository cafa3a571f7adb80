package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/cluster/admin"
	"github.com/chatpacket/chatpacket/storage"
)

// adminRun runs `chatpacket admin ARGS...` in this process and returns
// what it printed. The cluster commands are added here too, so the tests
// do not depend on where the command tree wires them.
func adminRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCommand()
	adminCmd, _, err := root.Find([]string{"admin"})
	if err != nil {
		t.Fatal(err)
	}
	addClusterCommands(adminCmd)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"admin"}, args...))
	err = root.ExecuteContext(context.Background())
	return out.String(), err
}

// adminStatusOf runs `admin cluster status --json` against dataDir.
func adminStatusOf(t *testing.T, dataDir string) *admin.Status {
	t.Helper()
	out, err := adminRun(t, "cluster", "status", "--data-dir", dataDir, "--json")
	if err != nil {
		t.Fatalf("admin cluster status --data-dir %s: %v\n%s", dataDir, err, out)
	}
	var st admin.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("admin cluster status --json printed %q: %v", out, err)
	}
	return &st
}

func TestAdminClusterStatusWithoutNode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	_, err := adminRun(t, "cluster", "status", "--data-dir", dir)
	want := "no node running with data dir " + dir + " (admin socket missing)"
	if err == nil || err.Error() != want {
		t.Fatalf("admin cluster status without a node = %v; want %q", err, want)
	}
	if _, err := adminRun(t, "node", "drain", "n-0123456789ab", "--data-dir", dir); err == nil || err.Error() != want {
		t.Fatalf("admin node drain without a node = %v; want %q", err, want)
	}
}

// TestAdminClusterCommands runs real nodes: status of one node, then of
// two once placement settles, a drain of the second, and writes through
// the first afterwards.
func TestAdminClusterCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs two nodes")
	}
	bin := buildBinary(t)
	env := []string{"CHATPACKET_MASTER_KEY=" + storage.GenerateMasterKey()}
	dirA, dirB := t.TempDir(), t.TempDir()
	dataA, dataB := filepath.Join(dirA, "data"), filepath.Join(dirB, "data")

	// One node: it leads every shard, alone.
	a := runServe(t, bin, dirA, env, "--data-dir", dataA, "--gossip-preset", "local")
	a.waitReady(t)
	if fi, err := os.Lstat(admin.SocketPath(dataA)); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("admin socket: %v, %v; want a socket with mode 0600", fi, err)
	}
	st := adminStatusOf(t, dataA)
	idA := st.NodeID
	if idA == "" || len(st.Members) != 1 || st.Members[0].NodeID != idA || !st.Members[0].Self {
		t.Fatalf("status of one node: id %q, members %+v; want itself alone", idA, st.Members)
	}
	if len(st.Shards) != storage.DefaultShards {
		t.Fatalf("status shows %d shards; want %d", len(st.Shards), storage.DefaultShards)
	}
	for _, sh := range st.Shards {
		if sh.Leader != idA || sh.Role != "leader" || !slices.Equal(sh.Voters, []string{idA}) {
			t.Errorf("shard %d: %+v; want led by %s, its only voter", sh.Shard, sh, idA)
		}
	}
	out, err := adminRun(t, "cluster", "status", "--data-dir", dataA)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"node " + idA + " (data dir " + dataA + "): leads 64 of 64 shards, voter of 64",
		"this node",
		"summary: 64 shards; 0 without a leader; 0 under-replicated (fewer than 1 live voter)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("admin cluster status printed:\n%s\nwant it to contain %q", out, want)
		}
	}

	// Two nodes: once the leaders have promoted the second everywhere,
	// every shard has both as voters.
	seed := a.logValue(t, `msg="cluster member" gossip=(\S+)`)
	b := runServe(t, bin, dirB, env, "--data-dir", dataB, "--gossip-preset", "local", "--join", seed)
	b.waitReady(t)
	idB := adminStatusOf(t, dataB).NodeID
	if idB == "" || idB == idA {
		t.Fatalf("second node's id %q; want its own, not %q", idB, idA)
	}
	start := time.Now()
	err = adminPoll(60*time.Second, func() error {
		st = adminStatusOf(t, dataA)
		if len(st.Members) != 2 {
			return fmt.Errorf("%d members", len(st.Members))
		}
		if s := st.Summary; len(s.Leaderless)+len(s.UnderReplicated) > 0 || s.WantVoters != 2 {
			return fmt.Errorf("summary %+v", s)
		}
		for _, sh := range st.Shards {
			if len(sh.Voters) != 2 || sh.Leader == "" {
				return fmt.Errorf("shard %d: leader %q, voters %v", sh.Shard, sh.Leader, sh.Voters)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("two nodes: status not settled within 60 s: %v", err)
	}
	t.Logf("two nodes: every shard has 2 voters %v after the second was ready", time.Since(start).Round(time.Millisecond))
	if ids := []string{st.Members[0].NodeID, st.Members[1].NodeID}; !slices.Contains(ids, idA) || !slices.Contains(ids, idB) {
		t.Errorf("members %v; want %s and %s", ids, idA, idB)
	}

	// Balancing hands the second node leaderships: the drain must hand
	// them back.
	err = adminPoll(30*time.Second, func() error {
		if n := adminStatusOf(t, dataB).Summary.Leading; n == 0 {
			return errors.New("the second node leads no shard")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("two nodes: %v within 30 s", err)
	}

	// A drain names the node of the data dir, or is refused.
	if _, err := adminRun(t, "node", "drain", idA, "--data-dir", dataB); err == nil ||
		!strings.Contains(err.Error(), "data dir "+dataB+" belongs to node "+idB+", not "+idA) {
		t.Fatalf("drain of %s with the data dir of %s = %v; want a refusal naming both", idA, idB, err)
	}

	start = time.Now()
	out, err = adminRun(t, "node", "drain", idB, "--data-dir", dataB, "--timeout", "90s")
	if err != nil {
		t.Fatalf("admin node drain %s: %v\n%s", idB, err, out)
	}
	t.Logf("drain took %v:\n%s", time.Since(start).Round(time.Millisecond), out)
	for _, want := range []string{"leading 0 shards, voter of 0 shards", "It can now be stopped (SIGTERM) with nothing lost"} {
		if !strings.Contains(out, want) {
			t.Errorf("drain printed:\n%s\nwant it to contain %q", out, want)
		}
	}
	st = adminStatusOf(t, dataA)
	for _, sh := range st.Shards {
		if sh.Leader == idB || slices.Contains(sh.Voters, idB) {
			t.Errorf("after the drain, as %s sees it: shard %d: leader %s, voters %v; want %s in neither", idA, sh.Shard, sh.Leader, sh.Voters, idB)
		}
	}
	if i := slices.IndexFunc(st.Members, func(m admin.Member) bool { return m.NodeID == idB }); i < 0 || !st.Members[i].Draining {
		t.Errorf("after the drain, members %+v; want %s there, draining", st.Members, idB)
	}
	if s := adminStatusOf(t, dataB).Summary; s.Leading != 0 || s.Voter != 0 {
		t.Errorf("after the drain, %s leads %d shards and is voter of %d; want none", idB, s.Leading, s.Voter)
	}

	// The first node takes writes alone.
	adminWriteThrough(t, a.addr)

	b.stop(t)
	if _, err := os.Lstat(admin.SocketPath(dataB)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("admin socket after the node stopped: %v; want it removed", err)
	}
	want := "no node running with data dir " + dataB + " (admin socket missing)"
	help, _ := exec.Command(bin, "admin", "--help").CombinedOutput()
	cmd := exec.Command(bin, "admin", "cluster", "status", "--data-dir", dataB)
	cmdOut, _ := cmd.CombinedOutput()
	switch {
	case !bytes.Contains(help, []byte("\n  cluster ")):
		t.Logf("the binary has no 'admin cluster' yet (admin.go must call addClusterCommands); checked in process only")
	case cmd.ProcessState.ExitCode() != 1 || !bytes.Contains(cmdOut, []byte(want)):
		t.Errorf("chatpacket admin cluster status on a stopped node: exit %d, %q; want exit 1 and %q", cmd.ProcessState.ExitCode(), cmdOut, want)
	}
	adminWriteThrough(t, a.addr)
	a.stop(t)
}

// adminWriteThrough signs up a tenant, opens a widget session and posts a
// visitor message through the node at addr, each retried for a bounded
// time.
func adminWriteThrough(t *testing.T, addr string) {
	t.Helper()
	email := fmt.Sprintf("ada-%d@example.com", time.Now().UnixNano())
	var signup, session, msg map[string]any
	adminPostJSON(t, addr, "/api/v1/signup", "", map[string]string{"organization": "Acme", "name": "Ada", "email": email, "password": "correct horse battery"}, &signup, http.StatusCreated)
	adminPostJSON(t, addr, "/api/v1/widget/sessions", "", map[string]any{"widget_key": signup["widget_key"]}, &session, http.StatusOK)
	token, _ := session["visitor_token"].(string)
	adminPostJSON(t, addr, "/api/v1/widget/messages", token, map[string]string{"client_id": "c1", "body": "hello"}, &msg, http.StatusCreated)
	if msg["seq"] != float64(1) {
		t.Errorf("POST /api/v1/widget/messages answered %v; want seq 1", msg)
	}
}

// adminPostJSON posts body to addr+path until it answers want (within 20 s)
// and decodes the answer into out.
func adminPostJSON(t *testing.T, addr, path, bearer string, body, out any, want int) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	err = adminPoll(20*time.Second, func() error {
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+path, bytes.NewReader(b))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != want {
			var e map[string]any
			json.NewDecoder(resp.Body).Decode(&e)
			return fmt.Errorf("POST %s = %d %v; want %d", path, resp.StatusCode, e, want)
		}
		return json.NewDecoder(resp.Body).Decode(out)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// adminPoll calls f every 200 ms until it returns nil or within passes,
// and returns its last error.
func adminPoll(within time.Duration, f func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}
