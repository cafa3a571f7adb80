package main

// Helpers of the cluster process tests (cluster_test.go): a cluster of real
// `chatpacket serve` processes on loopback, an HTTP client that never
// waits unbounded, and a ledger of every acknowledged message to check the
// stored conversations against.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/cluster/admin"
	"github.com/chatpacket/chatpacket/storage"
)

// The binary is built once per test binary run, into a directory of its
// own. There is no TestMain to remove it at the end of the run, so each
// build removes those of runs that began over 15 minutes ago (a run of
// these tests takes about 2).
var clusterBin struct {
	once sync.Once
	path string
	err  error
}

const clusterBinPrefix = "chatpacket-cluster-test-"

func clusterBinary(t *testing.T) string {
	t.Helper()
	clusterBin.once.Do(func() {
		stale, _ := filepath.Glob(filepath.Join(os.TempDir(), clusterBinPrefix+"*"))
		for _, d := range stale {
			if fi, err := os.Stat(d); err == nil && time.Since(fi.ModTime()) > 15*time.Minute {
				os.RemoveAll(d)
			}
		}
		dir, err := os.MkdirTemp("", clusterBinPrefix)
		if err != nil {
			clusterBin.err = err
			return
		}
		clusterBin.path = filepath.Join(dir, "chatpacket")
		if out, err := exec.Command("go", "build", "-o", clusterBin.path, ".").CombinedOutput(); err != nil {
			clusterBin.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if clusterBin.err != nil {
		t.Fatal(clusterBin.err)
	}
	return clusterBin.path
}

// cnode is one node of a test cluster: its process (replaced on restart),
// data dir and flags.
type cnode struct {
	*node
	name    string
	dir     string
	args    []string
	history string // the logs of its earlier processes
}

// testCluster is a cluster of serve processes on 127.0.0.1, every listener
// on port 0, gossip preset local, one master key for all (as production
// would give them), each node its own data dir.
type testCluster struct {
	t     *testing.T
	bin   string
	env   []string
	key   string
	seed  string // node 1's gossip address
	nodes []*cnode
}

// startCluster starts node 1, then the others joining it, and waits until
// every node is ready and every shard has all its replicas as voters.
func startCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	key := storage.GenerateMasterKey()
	c := &testCluster{t: t, bin: clusterBinary(t), key: key, env: []string{"CHATPACKET_MASTER_KEY=" + key}}
	t.Cleanup(c.dumpLogs)
	first := c.start("node1", nil)
	c.waitReady(first, 30*time.Second)
	c.seed = first.logValue(t, `msg="cluster member" gossip=(\S+)`)
	for i := 2; i <= n; i++ {
		c.start(fmt.Sprint("node", i), []string{"--join", c.seed})
	}
	for _, nd := range c.nodes[1:] {
		c.waitReady(nd, 30*time.Second)
	}
	c.waitSettled(n-1, 60*time.Second)
	return c
}

// start runs a new node with extra flags.
func (c *testCluster) start(name string, extra []string) *cnode {
	c.t.Helper()
	dir := c.t.TempDir()
	// The tests load the cluster far faster than people write: no widget
	// message limits.
	args := append([]string{"--data-dir", filepath.Join(dir, "data"), "--gossip-preset", "local", "--widget-message-limits=false"}, extra...)
	nd := &cnode{name: name, dir: dir, args: args}
	nd.node = runServe(c.t, c.bin, dir, c.env, args...)
	c.nodes = append(c.nodes, nd)
	return nd
}

// restart runs nd again on its data dir with its flags; its ports change.
func (c *testCluster) restart(nd *cnode) {
	c.t.Helper()
	nd.history += nd.stderr.String() + "\n---- restarted ----\n"
	nd.node = runServe(c.t, c.bin, nd.dir, c.env, nd.args...)
}

// dumpLogs writes every node's log to $CLUSTER_TEST_LOG_DIR when set, and
// after a failure the last lines of each into the test log.
func (c *testCluster) dumpLogs() {
	dir := os.Getenv("CLUSTER_TEST_LOG_DIR")
	for _, nd := range c.nodes {
		s := nd.history + nd.stderr.String()
		if dir != "" {
			os.WriteFile(filepath.Join(dir, c.t.Name()+"-"+nd.name+".log"), []byte(s), 0o644)
		}
		if !c.t.Failed() {
			continue
		}
		lines := strings.Split(s, "\n")
		c.t.Logf("last lines of %s's log (CLUSTER_TEST_LOG_DIR=DIR keeps them whole):\n%s", nd.name, strings.Join(lines[max(0, len(lines)-40):], "\n"))
	}
}

// base is the node's HTTP base URL.
func (n *cnode) base() string { return "http://" + n.addr }

// signal sends sig to the node's process.
func (n *cnode) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := n.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to %s: %v", sig, n.name, err)
	}
}

// waitReady polls /readyz with a bounded client until it answers 200.
func (c *testCluster) waitReady(nd *cnode, within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get(nd.base() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: /readyz not 200 within %v (last: %v)", nd.name, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var (
	addVoterRE = regexp.MustCompile(`msg="replica: add voter" component=raft shard=(\d+) server=(\S+)`)
	transferRE = regexp.MustCompile(`msg="replica: transfer leadership"`)
)

// waitSettled waits until the leaders have made joiners voters of every
// shard (joiners distinct servers, each on all 64 shards), then until no
// leadership transfer for balance has happened for 2 s: measurements
// should not start in the middle of the placement converging.
func (c *testCluster) waitSettled(joiners int, within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		shardsOf := map[string]map[string]bool{}
		for _, nd := range c.nodes {
			for _, m := range addVoterRE.FindAllStringSubmatch(nd.stderr.String(), -1) {
				if shardsOf[m[2]] == nil {
					shardsOf[m[2]] = map[string]bool{}
				}
				shardsOf[m[2]][m[1]] = true
			}
		}
		full := 0
		for _, s := range shardsOf {
			if len(s) == storage.DefaultShards {
				full++
			}
		}
		if full >= joiners {
			break
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("replicas not settled within %v: voters added per server %v", within, counts(shardsOf))
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.waitQuiet(transferRE, 2*time.Second, deadline)
}

// waitRejoined waits until nd serves under a member id other than old and
// every node lists it under that id (and not under old), as
// `admin cluster status` shows them.
func (c *testCluster) waitRejoined(nd *cnode, old string, within time.Duration) {
	c.t.Helper()
	err := poll(within, 200*time.Millisecond, func() error {
		var now string
		for _, other := range c.nodes {
			out, err := adminRun(c.t, "cluster", "status", "--data-dir", filepath.Join(other.dir, "data"), "--json")
			if err != nil {
				return fmt.Errorf("%s: admin cluster status: %v", other.name, err)
			}
			var st admin.Status
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				return fmt.Errorf("%s: admin cluster status --json: %v", other.name, err)
			}
			if len(st.Members) != len(c.nodes) {
				return fmt.Errorf("%s lists %d members; want %d", other.name, len(st.Members), len(c.nodes))
			}
			for _, m := range st.Members {
				if m.MemberID == old {
					return fmt.Errorf("%s still lists %s under its old member id %s", other.name, nd.name, old)
				}
				if other == nd && m.Self {
					now = m.MemberID
				}
			}
		}
		if now == "" {
			return fmt.Errorf("%s does not list itself", nd.name)
		}
		return nil
	})
	if err != nil {
		c.t.Fatalf("%s did not rejoin under a new member id within %v: %v", nd.name, within, err)
	}
}

// waitQuiet waits until no log line of any node has matched re for quiet.
func (c *testCluster) waitQuiet(re *regexp.Regexp, quiet time.Duration, deadline time.Time) {
	c.t.Helper()
	last, since := -1, time.Now()
	for {
		n := 0
		for _, nd := range c.nodes {
			n += len(re.FindAllStringIndex(nd.stderr.String(), -1))
		}
		if n != last {
			last, since = n, time.Now()
		}
		if time.Since(since) >= quiet {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("log lines matching %s still appearing at the deadline", re)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func counts(m map[string]map[string]bool) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		out[k] = len(v)
	}
	return out
}

// checkNoPanic fails if a node's log shows a panic or a fatal error.
func (c *testCluster) checkNoPanic() {
	c.t.Helper()
	for _, nd := range c.nodes {
		s := nd.history + nd.stderr.String()
		for _, bad := range []string{"panic:", "fatal error:", "DATA RACE"} {
			if i := strings.Index(s, bad); i >= 0 {
				c.t.Errorf("%s's log shows %q:\n%s", nd.name, bad, s[i:min(len(s), i+3000)])
			}
		}
	}
}

// stopAll stops every node with SIGTERM, all at once, and waits for each to
// exit cleanly within the grace period. A node that does not is sent
// SIGQUIT, so that its log ends with every goroutine's stack, and the test
// fails with the frames of ours and raft's that it was stuck in.
func (c *testCluster) stopAll() {
	c.t.Helper()
	for _, nd := range c.nodes {
		nd.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.Now().Add(shutdownGrace + 5*time.Second)
	stuck := false
	for _, nd := range c.nodes {
		select {
		case err := <-nd.done:
			nd.done <- err
			if err != nil {
				c.t.Errorf("%s exited with %v after SIGTERM", nd.name, err)
			}
		case <-time.After(time.Until(deadline)):
			stuck = true
			nd.cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case err := <-nd.done:
				nd.done <- err
			case <-time.After(5 * time.Second):
			}
			time.Sleep(200 * time.Millisecond) // the last lines of its log
			c.t.Errorf("%s did not stop within %v of SIGTERM; where its goroutines were (SIGQUIT):\n%s", nd.name, shutdownGrace+5*time.Second, stuckFrames(nd.stderr.String()))
		}
	}
	if stuck {
		c.t.FailNow()
	}
}

// stuckFrames picks, from a Go goroutine dump, the goroutines blocked in
// our code or raft's, as their state and function names.
func stuckFrames(dump string) string {
	var out []string
	for _, g := range strings.Split(dump, "\n\n") {
		if !strings.HasPrefix(g, "goroutine ") || !strings.Contains(g, "chatpacket/chatpacket/") && !strings.Contains(g, "hashicorp/raft") {
			continue
		}
		lines := strings.Split(g, "\n")
		frames := []string{lines[0]}
		for _, l := range lines[1:] {
			if !strings.HasPrefix(l, "\t") && !strings.HasPrefix(l, "runtime.") && !strings.HasPrefix(l, "created by") {
				frames = append(frames, "  "+l[:strings.LastIndex(l, "(")+1]+")")
			}
		}
		out = append(out, strings.Join(frames, "\n"))
		if len(out) == 12 {
			out = append(out, "…")
			break
		}
	}
	return strings.Join(out, "\n")
}

// client is an HTTP client whose every request is bounded.
type client struct {
	http *http.Client
}

func newClient(t *testing.T, timeout time.Duration) *client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	t.Cleanup(tr.CloseIdleConnections)
	return &client{http: &http.Client{Timeout: timeout, Transport: tr}}
}

// do sends a JSON request and decodes a JSON answer; it never calls t.
func (c *client) do(ctx context.Context, method, url string, hdr map[string]string, body any) (int, map[string]any, http.Header, error) {
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil && resp.StatusCode != http.StatusNoContent {
		return resp.StatusCode, nil, resp.Header, fmt.Errorf("%s %s = %d with an undecodable body: %v", method, url, resp.StatusCode, err)
	}
	return resp.StatusCode, out, resp.Header, nil
}

// tenant is a signed-up account and its agent API token.
type tenant struct {
	id, widgetKey, email, password, token string
}

// poll calls f until it returns nil or within passes; it returns f's last
// error.
func poll(within, every time.Duration, f func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(every)
	}
}

// signupTenant signs up on one node and makes an API token through
// another: the login there polls until the account has replicated.
func signupTenant(t *testing.T, c *client, on, via *cnode) *tenant {
	t.Helper()
	ctx := context.Background()
	tn := &tenant{email: fmt.Sprintf("ada-%d@example.com", rand.Int64()), password: "correct horse battery"}
	var out map[string]any
	err := poll(20*time.Second, 200*time.Millisecond, func() error {
		st, o, _, err := c.do(ctx, "POST", on.base()+"/api/v1/signup", nil, map[string]string{"organization": "Acme", "name": "Ada", "email": tn.email, "password": tn.password})
		if err == nil && st != http.StatusCreated {
			err = fmt.Errorf("POST %s/api/v1/signup = %d %v; want 201", on.name, st, o)
		}
		out = o
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	tn.id, tn.widgetKey = out["tenant_id"].(string), out["widget_key"].(string)
	var login map[string]any
	var hdr http.Header
	err = poll(20*time.Second, 200*time.Millisecond, func() error {
		st, o, h, err := c.do(ctx, "POST", via.base()+"/api/v1/login", nil, map[string]string{"email": tn.email, "password": tn.password})
		if err == nil && st != http.StatusOK {
			err = fmt.Errorf("POST %s/api/v1/login = %d %v; want 200", via.name, st, o)
		}
		login, hdr = o, h
		return err
	})
	if err != nil {
		t.Fatalf("the account signed up on %s does not log in on %s: %v", on.name, via.name, err)
	}
	var cookie string
	for _, ck := range (&http.Response{Header: hdr}).Cookies() {
		cookie = ck.Name + "=" + ck.Value
	}
	st, tok, _, err := c.do(ctx, "POST", via.base()+"/api/v1/tokens", map[string]string{"Cookie": cookie, "X-CSRF-Token": login["csrf_token"].(string)}, map[string]string{"name": "cluster test"})
	if err != nil || st != http.StatusCreated {
		t.Fatalf("POST %s/api/v1/tokens = %d %v %v; want 201", via.name, st, tok, err)
	}
	tn.token = tok["token"].(string)
	return tn
}

// visitorSession makes a widget session on a node.
func visitorSession(t *testing.T, c *client, on *cnode, tn *tenant) string {
	t.Helper()
	var token string
	err := poll(20*time.Second, 200*time.Millisecond, func() error {
		st, o, _, err := c.do(context.Background(), "POST", on.base()+"/api/v1/widget/sessions", nil, map[string]string{"widget_key": tn.widgetKey})
		if err == nil && st != http.StatusOK {
			err = fmt.Errorf("POST %s/api/v1/widget/sessions = %d %v; want 200", on.name, st, o)
		}
		if err == nil {
			token = o["visitor_token"].(string)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// conv is a conversation under load; its id is known once its first
// message is acknowledged.
type conv struct {
	idx     int
	visitor string // the visitor's bearer token
	id      string
}

// attempt is one POST of a message.
type attempt struct {
	conv       int
	node       string
	clientID   string
	start, end time.Time
	status     int // 0: no answer
	seq        uint64
	err        string
	resend     bool // a deliberate repeat of an acknowledged message
}

func (a attempt) ok() bool { return a.status == http.StatusCreated }

// ledger records every attempt and every acknowledged client_id. Workers
// write it; the test goroutine reads it after they stopped.
type ledger struct {
	mu       sync.Mutex
	attempts []attempt
	acked    map[string]uint64 // client_id → seq
	tried    map[string]int    // client_id → conversation index
	problems []string          // broken promises seen while sending
}

func newLedger() *ledger {
	return &ledger{acked: map[string]uint64{}, tried: map[string]int{}}
}

func (l *ledger) record(a attempt) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.attempts = append(l.attempts, a)
	l.tried[a.clientID] = a.conv
	if !a.ok() {
		return
	}
	if prev, ok := l.acked[a.clientID]; ok && prev != a.seq {
		l.problems = append(l.problems, fmt.Sprintf("client_id %s acknowledged with seq %d, then with seq %d by %s (resend=%v)", a.clientID, prev, a.seq, a.node, a.resend))
		return
	}
	l.acked[a.clientID] = a.seq
}

func (l *ledger) problem(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.problems = append(l.problems, fmt.Sprintf(format, args...))
}

// sender posts visitor messages to random nodes of a pool, retrying each
// on another node with the same client_id until it is acknowledged.
type sender struct {
	c       *client
	led     *ledger
	mu      sync.Mutex
	pool    []*cnode
	giveUp  time.Duration // per message, over all its attempts
	resendN int           // every resendN-th acknowledged message is sent again to another node
}

func (s *sender) setPool(nodes ...*cnode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pool = slices.Clone(nodes)
}

// pick returns a random node of the pool other than not (when it can).
func (s *sender) pick(not *cnode) *cnode {
	s.mu.Lock()
	defer s.mu.Unlock()
	var from []*cnode
	for _, n := range s.pool {
		if n != not {
			from = append(from, n)
		}
	}
	if len(from) == 0 {
		from = s.pool
	}
	return from[rand.IntN(len(from))]
}

// post sends one attempt and records it.
func (s *sender) post(ctx context.Context, cv *conv, nd *cnode, clientID string, resend bool) attempt {
	body := map[string]string{"client_id": clientID, "body": "hello " + clientID}
	if cv.id != "" {
		body["conversation_id"] = cv.id
	}
	a := attempt{conv: cv.idx, node: nd.name, clientID: clientID, start: time.Now(), resend: resend}
	st, out, _, err := s.c.do(ctx, "POST", nd.base()+"/api/v1/widget/messages", map[string]string{"Authorization": "Bearer " + cv.visitor}, body)
	a.end, a.status = time.Now(), st
	switch {
	case err != nil:
		a.err = err.Error()
	case st == http.StatusCreated:
		seq, _ := out["seq"].(float64)
		a.seq = uint64(seq)
		if id, _ := out["conversation_id"].(string); cv.id == "" {
			cv.id = id
		} else if id != cv.id {
			s.led.problem("client_id %s acknowledged in conversation %s; it was sent to %s", clientID, id, cv.id)
		}
	default:
		a.err = fmt.Sprintf("%d %v", st, out["error"])
	}
	s.led.record(a)
	return a
}

// send posts a message until it is acknowledged, or giveUp passes, or ctx
// ends; each retry goes to another node with the same client_id.
func (s *sender) send(ctx context.Context, cv *conv, clientID string) (attempt, bool) {
	deadline := time.Now().Add(s.giveUp)
	var last *cnode
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		nd := s.pick(last)
		a := s.post(ctx, cv, nd, clientID, false)
		if a.ok() {
			return a, true
		}
		last = nd
		if time.Now().After(deadline) || ctx.Err() != nil {
			return a, false
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
	}
}

// run sends messages to cv every pace until stop closes, each acked or
// given up before the next; every resendN-th acked one is sent again
// through another node, which must answer the same seq.
func (s *sender) run(ctx context.Context, stop <-chan struct{}, cv *conv, pace time.Duration) {
	for i := 1; ; i++ {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-time.After(pace):
		}
		id := fmt.Sprintf("c%d-m%d", cv.idx, i)
		a, ok := s.send(ctx, cv, id)
		if !ok {
			s.led.problem("client_id %s of conversation %d not acknowledged within %v: last attempt on %s: %s", id, cv.idx, s.giveUp, a.node, a.err)
			continue
		}
		if s.resendN > 0 && i%s.resendN == 0 {
			if r := s.post(ctx, cv, s.pick(s.nodeNamed(a.node)), id, true); r.ok() && r.seq != a.seq {
				s.led.problem("client_id %s: first acknowledged with seq %d by %s, sent again to %s: seq %d", id, a.seq, a.node, r.node, r.seq)
			}
		}
	}
}

func (s *sender) nodeNamed(name string) *cnode {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.pool {
		if n.name == name {
			return n
		}
	}
	return nil
}

// openConversations starts n conversations, visitors made on random
// nodes, each by an acknowledged first message.
func openConversations(t *testing.T, s *sender, tn *tenant, nodes []*cnode, n, perVisitor int) []*conv {
	t.Helper()
	var convs []*conv
	var visitor string
	for i := range n {
		if i%perVisitor == 0 {
			visitor = visitorSession(t, s.c, nodes[rand.IntN(len(nodes))], tn)
		}
		cv := &conv{idx: i, visitor: visitor}
		if a, ok := s.send(context.Background(), cv, fmt.Sprintf("c%d-open", i)); !ok {
			t.Fatalf("opening conversation %d: last attempt on %s: %s", i, a.node, a.err)
		}
		convs = append(convs, cv)
	}
	return convs
}

// message is one message as the agent API returns it.
type message struct {
	Seq      uint64 `json:"seq"`
	ClientID string `json:"client_id"`
	Author   struct {
		Kind string `json:"kind"`
	} `json:"author"`
}

// readConversation reads every message of a conversation through a node,
// paging by 500, each page retried within a bound.
func readConversation(c *client, nd *cnode, tn *tenant, convID string) ([]message, error) {
	var all []message
	for after := uint64(0); ; {
		var page struct {
			Messages []message `json:"messages"`
		}
		err := poll(20*time.Second, 200*time.Millisecond, func() error {
			url := fmt.Sprintf("%s/api/v1/conversations/%s/messages?after=%d&limit=500", nd.base(), convID, after)
			req, _ := http.NewRequest("GET", url, nil)
			req.Header.Set("Authorization", "Bearer "+tn.token)
			resp, err := c.http.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET %s on %s = %d; want 200", url, nd.name, resp.StatusCode)
			}
			page.Messages = nil
			return json.NewDecoder(resp.Body).Decode(&page)
		})
		if err != nil {
			return nil, err
		}
		all = append(all, page.Messages...)
		if len(page.Messages) < 500 {
			return all, nil
		}
		after = page.Messages[len(page.Messages)-1].Seq
	}
}

// checkMessages compares what a replica or a read returned for conversation
// cv with the ledger: seqs 1..n without gap or repeat, every client_id once,
// every acknowledged client_id present with its acknowledged seq, and no
// client_id the test never sent. It returns how many were present without
// an acknowledgement (outcome unknown to the sender: allowed).
func checkMessages(t *testing.T, where string, cv *conv, msgs []message, led *ledger) (unacked int) {
	t.Helper()
	led.mu.Lock()
	defer led.mu.Unlock()
	seen := map[string]uint64{}
	for i, m := range msgs {
		if m.Seq != uint64(i+1) {
			t.Errorf("%s: conversation %d: message %d has seq %d; want %d (a gap or a repeat)", where, cv.idx, i, m.Seq, i+1)
			return
		}
		if prev, ok := seen[m.ClientID]; ok {
			t.Errorf("%s: conversation %d: client_id %s stored twice, at seq %d and %d", where, cv.idx, m.ClientID, prev, m.Seq)
		}
		seen[m.ClientID] = m.Seq
		if idx, ok := led.tried[m.ClientID]; !ok || idx != cv.idx {
			t.Errorf("%s: conversation %d: seq %d holds client_id %q, never sent to it", where, cv.idx, m.Seq, m.ClientID)
		}
		if _, ok := led.acked[m.ClientID]; !ok {
			unacked++
		}
	}
	missing := 0
	for id, seq := range led.acked {
		if led.tried[id] != cv.idx {
			continue
		}
		got, ok := seen[id]
		switch {
		case !ok:
			if missing++; missing <= 5 {
				t.Errorf("%s: conversation %d: acknowledged client_id %s (seq %d) is missing", where, cv.idx, id, seq)
			}
		case got != seq:
			t.Errorf("%s: conversation %d: client_id %s is at seq %d; it was acknowledged with seq %d", where, cv.idx, id, got, seq)
		}
	}
	if missing > 5 {
		t.Errorf("%s: conversation %d: %d acknowledged messages missing in all", where, cv.idx, missing)
	}
	return unacked
}

// checkThroughAPI reads every conversation through nd and checks it.
func checkThroughAPI(t *testing.T, c *client, nd *cnode, tn *tenant, convs []*conv, led *ledger) {
	t.Helper()
	total, unacked := 0, 0
	for _, cv := range convs {
		msgs, err := readConversation(c, nd, tn, cv.id)
		if err != nil {
			t.Errorf("reading conversation %d through %s: %v", cv.idx, nd.name, err)
			continue
		}
		total += len(msgs)
		unacked += checkMessages(t, "read through "+nd.name, cv, msgs, led)
	}
	t.Logf("through %s: %d messages in %d conversations, %d of them never acknowledged to the sender", nd.name, total, len(convs), unacked)
}

// checkReplica opens a stopped node's store and checks every conversation
// as its own replica holds it: API reads all go through each
// conversation's one grain, so only this shows what each node stored.
func checkReplica(t *testing.T, c *testCluster, nd *cnode, tn *tenant, convs []*conv, led *ledger) {
	t.Helper()
	ctx := context.Background()
	storeDir := filepath.Join(nd.dir, "data", "store")
	mk, err := storage.LoadMasterKey(storage.MasterKeySource{Env: c.key}, storeDir)
	if err != nil {
		t.Fatalf("%s: master key: %v", nd.name, err)
	}
	db, err := storage.Open(ctx, storage.Options{Dir: storeDir, MasterKey: mk.Key})
	if err != nil {
		t.Fatalf("%s: open the store: %v", nd.name, err)
	}
	defer db.Close()
	m, err := shard.New(db)
	if err != nil {
		t.Fatalf("%s: open the shards: %v", nd.name, err)
	}
	defer m.Close()
	tid, err := storage.ParseID(tn.id)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, cv := range convs {
		cid, err := storage.ParseID(cv.id)
		if err != nil {
			t.Fatal(err)
		}
		var msgs []message
		for after := uint64(0); ; {
			page, err := m.Messages(ctx, tid, cid, after, 500)
			if err != nil {
				t.Fatalf("%s's replica: conversation %d: %v", nd.name, cv.idx, err)
			}
			for _, p := range page {
				msg := message{Seq: p.Seq}
				if p.Record != nil {
					msg.ClientID = p.Record.ClientId
				}
				msgs = append(msgs, msg)
			}
			if len(page) < 500 {
				break
			}
			after = page[len(page)-1].Seq
		}
		total += len(msgs)
		checkMessages(t, nd.name+"'s replica", cv, msgs, led)
	}
	t.Logf("%s's replica: %d messages in %d conversations", nd.name, total, len(convs))
}
