package main

// Process tests of a replicated cluster: three `chatpacket serve`
// processes on loopback under visitor load while one is killed with
// SIGKILL, or paused with SIGSTOP, or two are paused. Every acknowledged
// message must survive, once, at the seq it was acknowledged with, on
// every replica. Run them with
//
//	go test ./cmd/chatpacket -run Cluster -v
//
// They log the failover time (see measureFailover) as
// "cluster failover: …"; bench/cluster.sh collects it.

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/storage"
)

const (
	loadConversations = 12                    // one sending goroutine each
	loadPace          = 20 * time.Millisecond // between a conversation's messages
	attemptTimeout    = 12 * time.Second      // one HTTP attempt
	giveUpAfter       = 45 * time.Second      // one message, over all its attempts
)

// TestClusterKillNineLosesNothing kills one node of three with SIGKILL
// under load, keeps sending (a request to the dead node fails and is sent
// again to another with the same client_id), and checks every
// acknowledged message through both survivors; then restarts the dead
// node on its data dir, checks through it, and finally checks each node's
// own replica on disk.
//
// The node killed is node 3, not node 1: a node restarts with its own
// flags, and node 1's have no --join (it formed the cluster), so a
// restarted node 1 would form a cluster of one. Nodes 2 and 3 are alike;
// each leads about a third of the shards and hosts about a third of the
// grains, which is what a kill tests.
func TestClusterKillNineLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster of three processes")
	}
	c := startCluster(t, 3)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	cl := newClient(t, attemptTimeout)
	tn := signupTenant(t, cl, n1, n3)
	led := newLedger()
	s := &sender{c: cl, led: led, giveUp: giveUpAfter, resendN: 10}
	s.setPool(c.nodes...)
	convs := openConversations(t, s, tn, c.nodes, loadConversations, 3)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, cv := range convs {
		wg.Go(func() { s.run(ctx, stop, cv, loadPace) })
	}
	time.Sleep(3 * time.Second)
	victim := n3
	killedAt := time.Now()
	victim.kill(t)
	t.Logf("killed %s with SIGKILL at %s", victim.name, killedAt.Format("15:04:05.000"))
	// Past gossip's failure detection (~5 s) and raft's DeadTimeout (10 s),
	// after which the leaders drop the dead voter: both under load.
	time.Sleep(13 * time.Second)
	close(stop)
	wg.Wait()
	stoppedAt := time.Now()

	f := measureFailover(led, victim.name, killedAt, stoppedAt)
	t.Logf("cluster failover: kill=%s failover=%v failed_conversations=%d/%d longest_stall=%v acked=%d attempts=%d failed_attempts=%d",
		victim.name, f.failover.Round(time.Millisecond), f.failedConvs, len(convs), f.stall().Round(time.Millisecond), f.acked, f.attempts, f.failedAttempts)
	t.Logf("longest stall of each conversation after the kill: %s", f.stallList())
	t.Logf("failed attempts:%s", failureSummary(led, killedAt))
	if f.failover > 3*time.Second {
		t.Logf("failover %v is above the 3 s target", f.failover.Round(time.Millisecond))
	}
	c.checkNoPanic()
	reportProblems(t, led)
	checkAnswers(t, led, victim.name, killedAt)
	for _, nd := range []*cnode{n1, n2} {
		checkThroughAPI(t, cl, nd, tn, convs, led)
	}

	// The dead node comes back on its data dir, on new ports.
	offsets := c.logOffsets()
	c.restart(victim)
	c.waitReady(victim, 30*time.Second)
	checkThroughAPI(t, cl, victim, tn, convs, led)

	// Each replica on disk: wait until the leaders made the restarted
	// node a voter of every shard again and placement is quiet, so that
	// it has caught up, then stop every node cleanly and open each store.
	c.waitVoterEverywhere(offsets, 30*time.Second)
	c.waitQuiet(regexp.MustCompile(`msg="replica: `), 2*time.Second, time.Now().Add(30*time.Second))
	c.stopAll()
	c.checkNoPanic()
	for _, nd := range c.nodes {
		checkReplica(t, c, nd, tn, convs, led)
	}
}

// TestClusterSigstop pauses one node of three with SIGSTOP for longer than
// gossip's failure detection while sending to the other two, then resumes
// it and sends to all three. No acknowledged message is lost or given a
// seq twice, and the paused node serves again within a bound. protoactor
// blocks for ever a member it once saw leave (../shared/PITFALLS.md): the
// paused node must learn it, rejoin under a new member id, and be listed
// under it by every node.
func TestClusterSigstop(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster of three processes")
	}
	c := startCluster(t, 3)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	cl := newClient(t, attemptTimeout)
	tn := signupTenant(t, cl, n1, n2)
	led := newLedger()
	s := &sender{c: cl, led: led, giveUp: giveUpAfter, resendN: 10}
	s.setPool(c.nodes...)
	convs := openConversations(t, s, tn, c.nodes, loadConversations, 3)
	// The probe is sent only through the paused node once it resumes.
	probe := &conv{idx: len(convs), visitor: visitorSession(t, cl, n1, tn)}
	convs = append(convs, probe)
	if a, ok := s.send(context.Background(), probe, "probe-open"); !ok {
		t.Fatalf("opening the probe conversation: %s", a.err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, cv := range convs[:loadConversations] {
		wg.Go(func() { s.run(ctx, stop, cv, loadPace) })
	}
	time.Sleep(2 * time.Second)

	// Node 1 this time: the node the others joined through, which a kill
	// test cannot restart with its own flags.
	paused := n1
	oldMember := paused.logValue(t, `msg="cluster member" .*member_id=(\S+)`)
	s.setPool(n2, n3)
	pausedAt := time.Now()
	paused.signal(t, syscall.SIGSTOP)
	t.Logf("paused %s with SIGSTOP at %s", paused.name, pausedAt.Format("15:04:05.000"))
	time.Sleep(8 * time.Second)
	paused.signal(t, syscall.SIGCONT)
	resumedAt := time.Now()
	s.setPool(c.nodes...)

	// The resumed node must take writes again, and serve reads.
	const serveWithin = 20 * time.Second
	var served time.Duration
	for i := 1; ; i++ {
		a := s.post(ctx, probe, paused, "probe-after-resume", false)
		if a.ok() {
			served = time.Since(resumedAt)
			break
		}
		if time.Since(resumedAt) > serveWithin {
			t.Errorf("%s does not take writes %v after SIGCONT: %d attempts, the last %s", paused.name, serveWithin, i, a.err)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if served > 0 {
		t.Logf("%s took a write again %v after SIGCONT", paused.name, served.Round(time.Millisecond))
	}
	if _, err := readConversation(cl, paused, tn, probe.id); err != nil {
		t.Errorf("%s does not serve reads after SIGCONT: %v", paused.name, err)
	}
	c.waitRejoined(paused, oldMember, 30*time.Second)
	t.Logf("%s rejoined under a new member id %v after SIGCONT", paused.name, time.Since(resumedAt).Round(time.Millisecond))
	if a := s.post(ctx, probe, paused, "probe-after-rejoin", false); !a.ok() {
		t.Errorf("%s does not take writes after rejoining: %s", paused.name, a.err)
	}
	time.Sleep(6 * time.Second)
	close(stop)
	wg.Wait()
	stoppedAt := time.Now()

	f := measureFailover(led, paused.name, pausedAt, stoppedAt)
	t.Logf("cluster failover: sigstop=%s failover=%v failed_conversations=%d/%d longest_stall=%v acked=%d attempts=%d failed_attempts=%d",
		paused.name, f.failover.Round(time.Millisecond), f.failedConvs, loadConversations, f.stall().Round(time.Millisecond), f.acked, f.attempts, f.failedAttempts)
	t.Logf("longest stall of each conversation after SIGSTOP: %s", f.stallList())
	t.Logf("failed attempts:%s", failureSummary(led, pausedAt))
	c.checkNoPanic()
	reportProblems(t, led)
	checkAnswers(t, led, paused.name, pausedAt)
	for _, nd := range c.nodes {
		checkThroughAPI(t, cl, nd, tn, convs, led)
	}
	c.waitQuiet(regexp.MustCompile(`msg="replica: `), 2*time.Second, time.Now().Add(30*time.Second))
	c.stopAll()
	for _, nd := range c.nodes {
		checkReplica(t, c, nd, tn, convs, led)
	}
}

// TestClusterMinorityRefusesWrites pauses two nodes of three: the third
// must not acknowledge a write it cannot replicate to a majority, and must
// say so (503) within a bound rather than hang; once the two resume, the
// same message (same client_id) is acknowledged, once.
func TestClusterMinorityRefusesWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster of three processes")
	}
	c := startCluster(t, 3)
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	// Long enough to tell a slow refusal from none.
	cl := newClient(t, 15*time.Second)
	tn := signupTenant(t, cl, n1, n2)
	led := newLedger()
	s := &sender{c: cl, led: led, giveUp: giveUpAfter}
	s.setPool(n1)
	convs := openConversations(t, s, tn, []*cnode{n1}, 1, 1)
	cv := convs[0]
	for i := range 5 {
		if a, ok := s.send(context.Background(), cv, fmt.Sprint("before-", i)); !ok {
			t.Fatalf("write before the pause: %s", a.err)
		}
	}

	n2.signal(t, syscall.SIGSTOP)
	n3.signal(t, syscall.SIGSTOP)
	pausedAt := time.Now()
	const refuseWithin = 10 * time.Second
	for _, id := range []string{"minority-1"} {
		a := s.post(context.Background(), cv, n1, id, false)
		took := a.end.Sub(a.start)
		switch {
		case a.ok():
			t.Errorf("POST %s/api/v1/widget/messages with two of three nodes paused = 201 seq %d; want a refusal: nothing can be durable on a majority", n1.name, a.seq)
		case a.status == 0:
			t.Errorf("POST %s/api/v1/widget/messages with two of three nodes paused: no answer within %v (%s); want a 503 within %v", n1.name, took.Round(time.Millisecond), a.err, refuseWithin)
		case a.status != http.StatusServiceUnavailable:
			t.Errorf("POST %s/api/v1/widget/messages with two of three nodes paused = %s after %v; want 503", n1.name, a.err, took.Round(time.Millisecond))
		case took > refuseWithin:
			t.Errorf("POST %s/api/v1/widget/messages with two of three nodes paused = 503 after %v; want it within %v", n1.name, took.Round(time.Millisecond), refuseWithin)
		default:
			t.Logf("with two of three nodes paused: %s answered %s in %v", n1.name, a.err, took.Round(time.Millisecond))
		}
	}
	n2.signal(t, syscall.SIGCONT)
	n3.signal(t, syscall.SIGCONT)
	resumedAt := time.Now()
	t.Logf("paused for %v", resumedAt.Sub(pausedAt).Round(time.Millisecond))

	// The refused messages may still have been committed (their outcome
	// was unknown): sent again, each gets one seq, whatever the node.
	s.setPool(c.nodes...)
	for _, id := range []string{"minority-1", "after-1"} {
		if a, ok := s.send(context.Background(), cv, id); !ok {
			t.Errorf("write %s %v after SIGCONT: not acknowledged: %s", id, giveUpAfter, a.err)
		}
	}
	t.Logf("writes acknowledged again %v after SIGCONT", time.Since(resumedAt).Round(time.Millisecond))
	c.checkNoPanic()
	reportProblems(t, led)
	for _, nd := range c.nodes {
		checkThroughAPI(t, cl, nd, tn, convs, led)
	}
}

// failoverStats is what measureFailover found.
type failoverStats struct {
	// failover is the longest time, over conversations that a live node
	// failed to write after the fault, from the fault to that
	// conversation's first 201 after its first such failure. Failures of
	// the faulted node itself (connection refused) are not counted: the
	// sender's next attempt goes to another node at once.
	failover    time.Duration
	failedConvs int
	// stalls are, per conversation, the longest time it went without a
	// 201 after the fault (from the fault, then between consecutive 201s,
	// then to the end of the load): writes that were slow count as well
	// as those that failed. Sorted.
	stalls                          []time.Duration
	acked, attempts, failedAttempts int
}

func (f failoverStats) stall() time.Duration {
	if len(f.stalls) == 0 {
		return 0
	}
	return f.stalls[len(f.stalls)-1]
}

// stallList formats the stalls, rounded.
func (f failoverStats) stallList() string {
	var out []string
	for _, d := range f.stalls {
		out = append(out, d.Round(10*time.Millisecond).String())
	}
	return strings.Join(out, " ")
}

// measureFailover measures the ledger's attempts between a fault of node
// faulted at from and the end of the load at until.
func measureFailover(led *ledger, faulted string, from, until time.Time) failoverStats {
	led.mu.Lock()
	defer led.mu.Unlock()
	var f failoverStats
	byConv := map[int][]attempt{}
	for _, a := range led.attempts {
		if a.end.Before(from) || a.start.After(until) {
			continue
		}
		f.attempts++
		if a.ok() {
			f.acked++
		} else {
			f.failedAttempts++
		}
		byConv[a.conv] = append(byConv[a.conv], a)
	}
	for _, as := range byConv {
		slices.SortFunc(as, func(a, b attempt) int { return a.end.Compare(b.end) })
		var firstFail time.Time
		counted := false
		prev, stall := from, time.Duration(0)
		for _, a := range as {
			if !a.ok() {
				if a.node != faulted && firstFail.IsZero() {
					firstFail = a.end
				}
				continue
			}
			stall = max(stall, a.end.Sub(prev))
			prev = a.end
			if !counted && !firstFail.IsZero() {
				counted = true
				f.failover = max(f.failover, a.end.Sub(from))
				f.failedConvs++
			}
		}
		if !firstFail.IsZero() && !counted {
			// Failed and never acknowledged again before the end.
			f.failover = max(f.failover, until.Sub(from))
			f.failedConvs++
		}
		f.stalls = append(f.stalls, max(stall, until.Sub(prev)))
	}
	slices.Sort(f.stalls)
	return f
}

// checkAnswers fails on every attempt that a node other than the faulted
// one answered with anything but 201 or 503, or did not answer within the
// client's timeout: a node that cannot take a write now must say so, as
// 503 ("try again"), for clients to retry.
func checkAnswers(t *testing.T, led *ledger, faulted string, from time.Time) {
	t.Helper()
	led.mu.Lock()
	defer led.mu.Unlock()
	bad := map[string][]time.Duration{}
	var keys []string
	for _, a := range led.attempts {
		if a.ok() || a.node == faulted || a.status == http.StatusServiceUnavailable {
			continue
		}
		k := a.node + " answered " + a.err
		if a.status == 0 {
			k = a.node + " did not answer: " + a.err
		}
		if bad[k] == nil {
			keys = append(keys, k)
		}
		bad[k] = append(bad[k], a.end.Sub(from).Round(10*time.Millisecond))
	}
	for _, k := range keys {
		t.Errorf("POST /api/v1/widget/messages: %s, ×%d, at %v after the fault; want 201 or 503", k, len(bad[k]), bad[k])
	}
}

// failureSummary groups the failed attempts after from by node and
// answer: when each kind of failure began and ended, relative to from.
func failureSummary(led *ledger, from time.Time) string {
	led.mu.Lock()
	defer led.mu.Unlock()
	type span struct {
		n           int
		first, last time.Duration
	}
	spans := map[string]*span{}
	var keys []string
	for _, a := range led.attempts {
		if a.ok() || a.end.Before(from) {
			continue
		}
		kind := a.err
		switch {
		case strings.Contains(kind, "connection refused"):
			kind = "connection refused"
		case strings.Contains(kind, "Timeout exceeded"), strings.Contains(kind, "deadline exceeded"):
			kind = "no answer within the client's timeout"
		case strings.Contains(kind, "EOF"), strings.Contains(kind, "connection reset"):
			kind = "connection lost"
		}
		k := a.node + ": " + kind
		sp, ok := spans[k]
		if !ok {
			sp = &span{first: a.end.Sub(from)}
			spans[k] = sp
			keys = append(keys, k)
		}
		sp.n++
		sp.last = a.end.Sub(from)
	}
	if len(keys) == 0 {
		return " none"
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		sp := spans[k]
		fmt.Fprintf(&b, "\n\t%s ×%d, from %v to %v after the fault", k, sp.n, sp.first.Round(10*time.Millisecond), sp.last.Round(10*time.Millisecond))
	}
	return b.String()
}

// reportProblems fails on every broken promise the senders saw.
func reportProblems(t *testing.T, led *ledger) {
	t.Helper()
	led.mu.Lock()
	defer led.mu.Unlock()
	for i, p := range led.problems {
		if i == 20 {
			t.Errorf("… and %d more", len(led.problems)-i)
			break
		}
		t.Error(p)
	}
}

// logOffsets marks where each node's log is now.
func (c *testCluster) logOffsets() map[*node]int {
	out := map[*node]int{}
	for _, nd := range c.nodes {
		out[nd.node] = len(strings.Split(nd.stderr.String(), "\n"))
	}
	return out
}

// waitVoterEverywhere waits until, in the log lines after offsets (a
// process started since counts whole), voters were added on every shard:
// a restarted node's re-adding.
func (c *testCluster) waitVoterEverywhere(offsets map[*node]int, within time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		shards := map[string]bool{}
		for _, nd := range c.nodes {
			lines := strings.Split(nd.stderr.String(), "\n")
			from := offsets[nd.node] // 0 for a process started since
			for _, m := range addVoterRE.FindAllStringSubmatch(strings.Join(lines[from:], "\n"), -1) {
				shards[m[1]] = true
			}
		}
		if len(shards) == storage.DefaultShards {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the restarted node is a voter again on %d of %d shards after %v", len(shards), storage.DefaultShards, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
