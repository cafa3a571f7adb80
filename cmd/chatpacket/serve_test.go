package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/storage"
)

// buildBinary builds chatpacket once per test binary run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "chatpacket")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// node is a running `chatpacket serve` process.
type node struct {
	cmd    *exec.Cmd
	addr   string
	stderr *syncBuffer
	done   chan error
}

var servingRE = regexp.MustCompile(`msg=serving http=(\S+)`)

// runServe runs bin serve in dir with args and env, and waits until it
// reports its HTTP address.
func runServe(t *testing.T, bin, dir string, env []string, args ...string) *node {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "--http", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--remote", "127.0.0.1:0", "--raft", "127.0.0.1:0"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	n := &node{cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			n.stderr.WriteLine(sc.Text())
			if m := servingRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	go func() { n.done <- cmd.Wait(); pw.Close() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-n.done
	})
	select {
	case n.addr = <-found:
		return n
	case err := <-n.done:
		n.done <- err
		t.Fatalf("serve exited before serving: %v\n%s", err, n.stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not report its address within 30 s\n%s", n.stderr)
	}
	return nil
}

func (n *node) get(t *testing.T, path string) int {
	t.Helper()
	resp, err := http.Get("http://" + n.addr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// waitLog waits until a log line matches re.
func (n *node) waitLog(t *testing.T, re string) {
	t.Helper()
	n.logValue(t, re)
}

// logValue waits until a log line matches re and returns its first group.
func (n *node) logValue(t *testing.T, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, line := range strings.Split(n.stderr.String(), "\n") {
			if m := rx.FindStringSubmatch(line); m != nil {
				if len(m) > 1 {
					return m[1]
				}
				return m[0]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line matching %s within 20 s\n%s", re, n.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitReady polls /readyz until it answers 200: the node serves /healthz at
// once and becomes ready when it has joined its cluster.
func (n *node) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for n.get(t, "/readyz") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("/readyz not 200 within 20 s\n%s", n.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the process to die.
func (n *node) kill(t *testing.T) {
	t.Helper()
	n.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case err := <-n.done:
		n.done <- err // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("the process did not die within 10 s of SIGKILL")
	}
}

// stop sends SIGTERM and waits for a clean exit within the grace period.
func (n *node) stop(t *testing.T) {
	t.Helper()
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-n.done:
		n.done <- err
		if err != nil {
			t.Fatalf("serve exited with %v after SIGTERM\n%s", err, n.stderr)
		}
	case <-time.After(shutdownGrace + 5*time.Second):
		t.Fatalf("serve did not stop within %v of SIGTERM", shutdownGrace)
	}
}

func TestServeOnDefaults(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	n := runServe(t, bin, dir, nil)
	if got := n.get(t, "/healthz"); got != http.StatusOK {
		t.Fatalf("GET /healthz = %d; want 200", got)
	}
	n.waitReady(t)
	resp, err := http.Post("http://"+n.addr+"/api/v1/signup", "application/json",
		strings.NewReader(`{"organization":"Acme","name":"Ada","email":"ada@example.com","password":"correct horse battery"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /api/v1/signup = %d; want 201", resp.StatusCode)
	}
	if !strings.Contains(n.stderr.String(), "DEVELOPMENT MASTER KEY") {
		t.Errorf("no development key warning in the log:\n%s", n.stderr)
	}
	for _, p := range []string{"chatpacket-data/master.key", "chatpacket-data/store/KEYCHECK"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("defaults did not create %s: %v", p, err)
		}
	}
	n.stop(t)

	// The same data dir opens again with the same development key.
	n = runServe(t, bin, dir, nil)
	n.waitReady(t)
	n.stop(t)

	// A wrong master key is refused with a clear error, before serving.
	cmd := exec.Command(bin, "serve", "--http", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--remote", "127.0.0.1:0", "--raft", "127.0.0.1:0")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CHATPACKET_MASTER_KEY="+storage.GenerateMasterKey())
	out, err := cmd.CombinedOutput()
	if err == nil || !bytes.Contains(out, []byte("wrong master key")) {
		t.Fatalf("serve with a wrong key: %v\n%s; want exit 1 and 'wrong master key'", err, out)
	}
}

// TestTwoProcessesFormACluster starts two serve processes, the second
// joining the first: both become ready and the first sees two members.
func TestTwoProcessesFormACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary twice")
	}
	bin := buildBinary(t)
	a := runServe(t, bin, t.TempDir(), nil, "--gossip-preset", "local")
	a.waitReady(t)
	seed := a.logValue(t, `msg="cluster member" gossip=(\S+)`)
	b := runServe(t, bin, t.TempDir(), nil, "--gossip-preset", "local", "--join", seed)
	b.waitReady(t)
	a.waitLog(t, `msg="cluster members changed" component=gossip members=2 before=1`)
	b.stop(t)
	a.waitLog(t, `msg="cluster members changed" component=gossip members=1 before=2`)
	a.stop(t)
}

func TestFlagsFromEnvironment(t *testing.T) {
	t.Setenv("CHATPACKET_DATA_DIR", "/from/env")
	t.Setenv("CHATPACKET_HTTP", "127.0.0.1:1")
	cmd := newServeCommand()
	if err := cmd.Flags().Parse([]string{"--http", "127.0.0.1:2"}); err != nil {
		t.Fatal(err)
	}
	if err := flagsFromEnv(cmd.Flags()); err != nil {
		t.Fatal(err)
	}
	for flag, want := range map[string]string{"data-dir": "/from/env", "http": "127.0.0.1:2"} {
		if got := cmd.Flags().Lookup(flag).Value.String(); got != want {
			t.Errorf("--%s = %q; want %q", flag, got, want)
		}
	}
	t.Setenv("CHATPACKET_LOG_LEVEL", "loud")
	cmd = newServeCommand()
	if err := flagsFromEnv(cmd.Flags()); err == nil || !strings.Contains(err.Error(), "CHATPACKET_LOG_LEVEL") {
		t.Fatalf("flagsFromEnv with a bad level = %v; want an error naming the variable", err)
	}
}

func TestAdminKeyGenerate(t *testing.T) {
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"admin", "key", "generate"})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(out.String())
	if _, err := storage.LoadMasterKey(storage.MasterKeySource{Env: key}, t.TempDir()); err != nil {
		t.Fatalf("generated key %q does not load: %v", key, err)
	}
}

// syncBuffer collects a process's log lines for failure messages.
type syncBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *syncBuffer) WriteLine(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, s)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

// TestBenchAgainstANode runs `chatpacket bench` briefly against a node:
// every message sent is acknowledged and delivered to both agent sockets.
func TestBenchAgainstANode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	n := runServe(t, bin, t.TempDir(), nil, "--widget-message-limits=false") // a load, not people
	n.waitReady(t)
	out, err := exec.Command(bin, "bench", "--target", "http://"+n.addr, "--visitors", "5", "--agents", "2", "--rate", "100", "--duration", "2s").Output()
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`sent (\d+), acked (\d+) .*delivered to agents (\d+) \(to each agent socket\), errors (\d+)`).FindStringSubmatch(string(out))
	if m == nil || m[1] != "200" || m[2] != "200" || m[3] != "400" || m[4] != "0" {
		t.Fatalf("bench reported %q; want 200 sent and acked, 400 delivered (200 to each agent), no errors", out)
	}

	// A scenario writes its results; median reads them.
	dir := filepath.Join(t.TempDir(), "run")
	out, err = exec.Command(bin, "bench", "throughput", "--target", "http://"+n.addr, "--visitors", "4", "--window", "2", "--duration", "1s", "--out", dir).Output()
	if err != nil {
		t.Fatalf("bench throughput: %v\n%s", err, out)
	}
	for _, f := range []string{"result.json", "chart.svg"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("bench throughput --out: %v", err)
		}
	}
	out, err = exec.Command(bin, "bench", "median", dir, dir).Output()
	if err != nil || !regexp.MustCompile(`throughput, median of 2 runs[^\n]*\n\s+acked\s+\d`).Match(out) {
		t.Errorf("bench median = %v\n%s; want the acked median of 2 runs", err, out)
	}
	// fanout needs agents to deliver to.
	if out, err := exec.Command(bin, "bench", "fanout", "--target", "http://"+n.addr, "--agents", "0").CombinedOutput(); err == nil || !strings.Contains(string(out), "--agents must be at least 1") {
		t.Errorf("bench fanout --agents 0 = %v\n%s; want a refusal", err, out)
	}
}
