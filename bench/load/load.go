// Package load is ChatPacket's load generator: it opens widget sockets for
// visitors and agent sockets for agents against a running node, sends
// visitor messages at a set rate for a set time, and measures acknowledged
// messages per second and visitor-to-agent delivery latency. It speaks only
// the public API (API.md), as a real client would.
package load

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Config is one run.
type Config struct {
	Target   string        // base URL of a node, e.g. http://127.0.0.1:8080
	Visitors int           // widget sockets, one conversation each
	Agents   int           // agent sockets of the tenant; each sees every conversation
	Rate     int           // visitor messages per second, in total
	Duration time.Duration // how long to send
	Progress io.Writer     // a line per second while it runs; nil for none
}

// Result is what a run measured.
type Result struct {
	Sent, Acked, Delivered, Errors int
	Elapsed                        time.Duration
	P50, P99, P999                 time.Duration // visitor send → agent receive
	// Duplicates are message frames an agent socket received again (the
	// same conversation and seq); Reordered, frames that came after a
	// higher seq of their conversation on the same socket. Both count in
	// Delivered. Live, each socket sees every message once, in order; but
	// the resume frames sent at setup ask for every message after seq 1,
	// and when the node handles one after the load began (seen on a
	// cluster), it replays the first few messages a summary-started watch
	// had delivered already: duplicates the client asked for.
	Duplicates, Reordered int
	// RateLimited counts the errors that were the node's widget message
	// limits (10 per visitor per 10 s): a load needs a node started with
	// --widget-message-limits=false.
	RateLimited int
}

// AckedPerSecond is the throughput of acknowledged messages.
func (r Result) AckedPerSecond() float64 { return float64(r.Acked) / r.Elapsed.Seconds() }

func (r Result) String() string {
	s := fmt.Sprintf("sent %d, acked %d (%.0f/s), delivered to agents %d (to each agent socket), errors %d in %v; delivery latency p50 %v p99 %v p999 %v",
		r.Sent, r.Acked, r.AckedPerSecond(), r.Delivered, r.Errors, r.Elapsed.Round(time.Millisecond),
		r.P50.Round(10*time.Microsecond), r.P99.Round(10*time.Microsecond), r.P999.Round(10*time.Microsecond))
	if r.Duplicates > 0 || r.Reordered > 0 {
		s += fmt.Sprintf("; agent sockets got %d duplicate and %d out-of-order message frames", r.Duplicates, r.Reordered)
	}
	if r.RateLimited > 0 {
		s += fmt.Sprintf("; %d of the errors were the node's widget message limits: start it with --widget-message-limits=false for a load", r.RateLimited)
	}
	return s
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case !strings.HasPrefix(c.Target, "http://") && !strings.HasPrefix(c.Target, "https://"):
		return errors.New("load: target must be an http:// or https:// URL")
	case c.Visitors < 1 || c.Visitors > 10000:
		return errors.New("load: visitors must be 1 to 10000")
	case c.Agents < 1 || c.Agents > 1000:
		return errors.New("load: agents must be 1 to 1000")
	case c.Rate < 1 || c.Rate > 1_000_000:
		return errors.New("load: rate must be 1 to 1000000 messages/s")
	case c.Duration <= 0 || c.Duration > time.Hour:
		return errors.New("load: duration must be positive and at most an hour")
	}
	return nil
}

// Run signs up a fresh tenant on the target, opens the sockets, sends for
// the configured time, waits briefly for the last deliveries, and reports.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	r := &run{cfg: cfg, http: &http.Client{Timeout: 30 * time.Second}}
	defer r.closeAll()
	if err := r.setup(ctx); err != nil {
		return Result{}, err
	}
	return r.load(ctx)
}

type run struct {
	cfg   Config
	http  *http.Client
	token string // API token of the tenant's owner

	visitors []*visitorConn
	agents   []*websocket.Conn

	sent, acked, delivered, errs atomic.Int64
	limited                      atomic.Int64 // error frames rate_limited: the node limits widget messages
	duplicates, reordered        atomic.Int64
	mu                           sync.Mutex
	latencies                    []time.Duration
	readers                      sync.WaitGroup
}

type visitorConn struct {
	ws   *websocket.Conn
	conv string
	mu   sync.Mutex // one writer at a time
	n    int
}

func (r *run) post(ctx context.Context, path string, body any, hdr map[string]string) (map[string]any, error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, "POST", r.cfg.Target+path, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode >= 300 {
		return nil, fmt.Errorf("POST %s: %d %v", path, resp.StatusCode, out["error"])
	}
	return out, nil
}

func (r *run) dial(ctx context.Context, path string, hdr http.Header) (*websocket.Conn, error) {
	url := "ws" + strings.TrimPrefix(r.cfg.Target, "http") + path
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: hdr})
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", path, err)
	}
	c.SetReadLimit(1 << 20)
	return c, nil
}

func (r *run) setup(ctx context.Context) error {
	suffix := make([]byte, 6)
	rand.Read(suffix)
	email := "load-" + hex.EncodeToString(suffix) + "@example.invalid"
	password := "load test password " + hex.EncodeToString(suffix)
	signup, err := r.post(ctx, "/api/v1/signup", map[string]string{"organization": "Load test", "name": "Load", "email": email, "password": password}, nil)
	if err != nil {
		return err
	}
	// A session with its CSRF token makes the API token the agents use.
	jar := &http.Client{Timeout: 30 * time.Second}
	b, _ := json.Marshal(map[string]string{"email": email, "password": password})
	resp, err := jar.Post(r.cfg.Target+"/api/v1/login", "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	var login map[string]any
	json.NewDecoder(resp.Body).Decode(&login)
	resp.Body.Close()
	var cookie string
	for _, c := range resp.Cookies() {
		cookie = c.Name + "=" + c.Value
	}
	csrf, _ := login["csrf_token"].(string)
	tok, err := r.post(ctx, "/api/v1/tokens", map[string]string{"name": "load"}, map[string]string{"Cookie": cookie, "X-CSRF-Token": csrf})
	if err != nil {
		return err
	}
	r.token, _ = tok["token"].(string)

	wk, _ := signup["widget_key"].(string)
	for i := range r.cfg.Visitors {
		sess, err := r.post(ctx, "/api/v1/widget/sessions", map[string]string{"widget_key": wk}, nil)
		if err != nil {
			return err
		}
		ws, err := r.dial(ctx, "/ws/widget?token="+sess["visitor_token"].(string), nil)
		if err != nil {
			return err
		}
		v := &visitorConn{ws: ws}
		r.visitors = append(r.visitors, v)
		// The first message starts the conversation; its ack names it.
		if err := writeJSON(ctx, ws, map[string]string{"type": "send", "client_id": fmt.Sprint("open-", i), "body": "hello"}); err != nil {
			return err
		}
		for v.conv == "" {
			f, err := readFrame(ctx, ws)
			if err != nil {
				return err
			}
			if f["type"] == "ack" {
				v.conv, _ = f["conversation_id"].(string)
			}
		}
	}
	for range r.cfg.Agents {
		ws, err := r.dial(ctx, "/ws/agent", http.Header{"Authorization": {"Bearer " + r.token}})
		if err != nil {
			return err
		}
		r.agents = append(r.agents, ws)
	}
	// Every agent socket sees every conversation of the tenant; resuming
	// them all up front makes the watches before the load starts, as a
	// dashboard that has its inbox open would, so no first message waits
	// for the tenant's summary.
	for _, agent := range r.agents {
		for _, v := range r.visitors {
			if err := writeJSON(ctx, agent, map[string]any{"type": "resume", "conversation_id": v.conv, "after": 1}); err != nil {
				return err
			}
		}
	}
	return nil
}

func writeJSON(ctx context.Context, ws *websocket.Conn, v any) error {
	b, _ := json.Marshal(v)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return ws.Write(wctx, websocket.MessageText, b)
}

func readFrame(ctx context.Context, ws *websocket.Conn) (map[string]any, error) {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, b, err := ws.Read(rctx)
	if err != nil {
		return nil, err
	}
	var f map[string]any
	return f, json.Unmarshal(b, &f)
}

// load sends at the configured rate and collects acks and deliveries.
func (r *run) load(ctx context.Context) (Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, v := range r.visitors {
		r.readers.Go(func() { r.readVisitor(ctx, v) })
	}
	for _, a := range r.agents {
		r.readers.Go(func() { r.readAgent(ctx, a) })
	}

	start := time.Now()
	interval := time.Second / time.Duration(r.cfg.Rate)
	total := int(r.cfg.Duration / interval)
	progress := time.NewTicker(time.Second)
	defer progress.Stop()
	var senders sync.WaitGroup
	for i := 0; i < total && ctx.Err() == nil; i++ {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		select {
		case <-progress.C:
			r.report(time.Since(start))
		default:
		}
		v := r.visitors[i%len(r.visitors)]
		senders.Go(func() { r.send(ctx, v) })
	}
	senders.Wait()
	sendTime := time.Since(start)
	// Let the last acks and deliveries arrive, up to 2 s.
	deadline := time.Now().Add(2 * time.Second)
	agents := int64(len(r.agents))
	for (r.acked.Load() < r.sent.Load() || r.delivered.Load() < r.acked.Load()*agents) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	r.closeAll()
	r.readers.Wait()

	r.mu.Lock()
	lat := slices.Clone(r.latencies)
	r.mu.Unlock()
	slices.Sort(lat)
	res := Result{
		Sent: int(r.sent.Load()), Acked: int(r.acked.Load()), Delivered: int(r.delivered.Load()), Errors: int(r.errs.Load()),
		RateLimited: int(r.limited.Load()),
		Elapsed:     sendTime,
		Duplicates:  int(r.duplicates.Load()), Reordered: int(r.reordered.Load()),
	}
	if len(lat) > 0 {
		res.P50, res.P99, res.P999 = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)*999/1000]
	}
	return res, nil
}

func (r *run) report(elapsed time.Duration) {
	if r.cfg.Progress == nil {
		return
	}
	fmt.Fprintf(r.cfg.Progress, "%5.1fs  sent %d  acked %d  delivered %d  errors %d\n",
		elapsed.Seconds(), r.sent.Load(), r.acked.Load(), r.delivered.Load(), r.errs.Load())
}

// send writes one message whose body carries its send time.
func (r *run) send(ctx context.Context, v *visitorConn) {
	v.mu.Lock()
	v.n++
	id := fmt.Sprint("m-", v.n)
	err := writeJSON(ctx, v.ws, map[string]string{"type": "send", "conversation_id": v.conv, "client_id": id,
		"body": "t=" + strconv.FormatInt(time.Now().UnixNano(), 10)})
	v.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			r.errs.Add(1)
		}
		return
	}
	r.sent.Add(1)
}

func (r *run) readVisitor(ctx context.Context, v *visitorConn) {
	for {
		f, err := readFrame(ctx, v.ws)
		if err != nil {
			return
		}
		switch f["type"] {
		case "ack":
			r.acked.Add(1)
		case "error":
			r.errs.Add(1)
			if f["code"] == "rate_limited" {
				r.limited.Add(1)
			}
		}
	}
}

func (r *run) readAgent(ctx context.Context, ws *websocket.Conn) {
	// What this socket saw of each conversation: every seq, and the highest.
	type seen struct {
		seqs map[float64]bool
		max  float64
	}
	convs := map[string]*seen{}
	for {
		f, err := readFrame(ctx, ws)
		if err != nil {
			return
		}
		if f["type"] != "message" {
			continue
		}
		conv, _ := f["conversation_id"].(string)
		seq, _ := f["seq"].(float64)
		c := convs[conv]
		if c == nil {
			c = &seen{seqs: map[float64]bool{}}
			convs[conv] = c
		}
		switch {
		case c.seqs[seq]:
			r.duplicates.Add(1)
		case seq < c.max:
			r.reordered.Add(1)
		}
		c.seqs[seq], c.max = true, max(c.max, seq)
		body, _ := f["body"].(string)
		ns, err := strconv.ParseInt(strings.TrimPrefix(body, "t="), 10, 64)
		if err != nil {
			continue // not one of ours (the opening messages)
		}
		lat := time.Since(time.Unix(0, ns))
		r.delivered.Add(1)
		r.mu.Lock()
		r.latencies = append(r.latencies, lat)
		r.mu.Unlock()
	}
}

func (r *run) closeAll() {
	for _, v := range r.visitors {
		v.ws.CloseNow()
	}
	for _, a := range r.agents {
		a.CloseNow()
	}
}
