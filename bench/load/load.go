// Package load is ChatPacket's load generator: it opens widget sockets for
// visitors and agent sockets for agents against running nodes, sends
// visitor messages, and measures what the nodes acknowledged and delivered,
// and how fast. It speaks only the public API (API.md), as a real client
// would, and dials from several loopback source addresses (dial.go) so that
// one address pair's ephemeral ports do not cap it.
//
// The scenarios of `chatpacket bench` are built from two runs: Run (this
// file: visitors send, in an open loop at a set rate or a closed loop of a
// window of messages in flight per socket, and agents receive), and Idle
// (idle.go: sockets that only stay open, to measure a node's memory per
// connection). Every run keeps a per-second series (series.go), which
// Report (report.go) writes as result.json and chart.svg.
package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Config is one run of visitors sending and agents receiving.
type Config struct {
	// Target is the base URL of a node, e.g. http://127.0.0.1:8080. The
	// tenant is signed up there.
	Target string `json:"target"`
	// Targets, when set, are the nodes the sockets are spread over,
	// round-robin (visitor i on Targets[i mod n], agent j likewise): a
	// cluster's clients arrive at every node. Empty: all on Target.
	Targets []string `json:"targets,omitempty"`
	// Visitors is the number of widget sockets, one conversation each.
	Visitors int `json:"visitors"`
	// Agents is the number of agent sockets of the tenant; each watches
	// every conversation and should receive every message. 0: nobody
	// receives, only acks are measured.
	Agents int `json:"agents"`
	// Rate is the open loop: visitor messages per second in total, sent on
	// schedule whether or not the node keeps up. 0 selects the closed
	// loop: each visitor socket keeps Window messages in flight, sending
	// the next as soon as one is acknowledged, so the node sets the pace.
	Rate   int `json:"rate"`
	Window int `json:"window,omitempty"`
	// Duration is how long to send.
	Duration time.Duration `json:"duration_ns"`
	// Grace is how long, after the last send, to wait for acks and
	// deliveries still on their way; what has not arrived by then counts as
	// unacknowledged or undelivered.
	Grace time.Duration `json:"grace_ns"`
	// SourceAddrs is the number of loopback addresses (127.0.0.1 …) the
	// sockets are dialled from, round-robin; 0 or 1: the kernel's choice.
	SourceAddrs int `json:"source_addrs"`
	// Progress gets a line per second while the run sets up and loads; nil
	// for none.
	Progress io.Writer `json:"-"`
}

// nodes are the base URLs the sockets go to.
func (c Config) nodes() []string {
	if len(c.Targets) > 0 {
		return c.Targets
	}
	return []string{c.Target}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	for _, t := range append([]string{c.Target}, c.Targets...) {
		if !strings.HasPrefix(t, "http://") && !strings.HasPrefix(t, "https://") {
			return fmt.Errorf("load: target %q must be an http:// or https:// URL", t)
		}
	}
	switch {
	case c.Visitors < 1 || c.Visitors > 100_000:
		return errors.New("load: visitors must be 1 to 100000")
	case c.Agents < 0 || c.Agents > 1000:
		return errors.New("load: agents must be 0 to 1000")
	case c.Rate < 0 || c.Rate > 1_000_000:
		return errors.New("load: rate must be 0 (closed loop) to 1000000 messages/s")
	case c.Rate == 0 && (c.Window < 1 || c.Window > 1000):
		return errors.New("load: without a rate (closed loop), window must be 1 to 1000 messages in flight per visitor socket")
	case c.Duration <= 0 || c.Duration > time.Hour:
		return errors.New("load: duration must be positive and at most an hour")
	case c.Grace < 0 || c.Grace > 10*time.Minute:
		return errors.New("load: grace must be 0 to 10 minutes")
	case c.SourceAddrs < 0 || c.SourceAddrs > MaxSourceAddrs:
		return fmt.Errorf("load: source addresses must be 0 to %d", MaxSourceAddrs)
	}
	return nil
}

// Result is what a run measured.
type Result struct {
	Sent      int `json:"sent"`      // send frames written
	Acked     int `json:"acked"`     // ack frames received
	Delivered int `json:"delivered"` // message frames agent sockets received, each socket counting
	// Errors are sends that failed to be written, and error frames.
	Errors int `json:"errors"`
	// Unacked messages were sent but neither acknowledged nor refused
	// before the grace period ended.
	Unacked int `json:"unacked"`
	// Undelivered counts, for every acknowledged message, the agent sockets
	// that had not received it when the grace period ended.
	Undelivered int           `json:"undelivered"`
	Elapsed     time.Duration `json:"elapsed_ns"` // the sending time
	// Visitor send → agent receive, over every delivery.
	P50  time.Duration `json:"delivery_p50_ns"`
	P99  time.Duration `json:"delivery_p99_ns"`
	P999 time.Duration `json:"delivery_p999_ns"`
	// Visitor send → its ack.
	AckP50  time.Duration `json:"ack_p50_ns"`
	AckP99  time.Duration `json:"ack_p99_ns"`
	AckP999 time.Duration `json:"ack_p999_ns"`
	// Duplicates are message frames an agent socket received again (the
	// same conversation and seq); Reordered, frames that came after a
	// higher seq of their conversation on the same socket. Both count in
	// Delivered. Live, each socket sees every message once, in order; but
	// the resume frames sent at setup ask for every message after seq 1,
	// and when the node handles one after the load began (seen on a
	// cluster), it replays the first few messages a summary-started watch
	// had delivered already: duplicates the client asked for.
	Duplicates int `json:"duplicates"`
	Reordered  int `json:"reordered"`
	// RateLimited counts the errors that were the node's widget message
	// limits (10 per visitor per 10 s): a load needs a node started with
	// --widget-message-limits=false.
	RateLimited int `json:"rate_limited"`
	// ErrorCodes counts the error frames by their code.
	ErrorCodes map[string]int `json:"error_codes,omitempty"`
	// Series is the run second by second (result.json has it apart).
	Series []Second `json:"-"`
}

// AckedPerSecond is the throughput of acknowledged messages.
func (r Result) AckedPerSecond() float64 { return perSecond(r.Acked, r.Elapsed) }

// DeliveredPerSecond is the rate of message frames into agent sockets.
func (r Result) DeliveredPerSecond() float64 { return perSecond(r.Delivered, r.Elapsed) }

// SentPerSecond is the rate of send frames written.
func (r Result) SentPerSecond() float64 { return perSecond(r.Sent, r.Elapsed) }

func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// String is the summary line. Its beginning is a format scripts parse
// (bench/cluster.sh, bench/compare): additions go at the end, and never
// as " p50 " or " p99 " words, which those scripts look for.
func (r Result) String() string {
	s := fmt.Sprintf("sent %d, acked %d (%.0f/s), delivered to agents %d (to each agent socket), errors %d in %v; delivery latency p50 %v p99 %v p999 %v",
		r.Sent, r.Acked, r.AckedPerSecond(), r.Delivered, r.Errors, r.Elapsed.Round(time.Millisecond),
		round(r.P50), round(r.P99), round(r.P999))
	s += fmt.Sprintf("; ack latency p50=%v p99=%v p999=%v", round(r.AckP50), round(r.AckP99), round(r.AckP999))
	if r.Unacked > 0 {
		s += fmt.Sprintf("; %d sent but not acknowledged", r.Unacked)
	}
	if r.Undelivered > 0 {
		s += fmt.Sprintf("; %d deliveries of acknowledged messages missing", r.Undelivered)
	}
	if r.Duplicates > 0 || r.Reordered > 0 {
		s += fmt.Sprintf("; agent sockets got %d duplicate and %d out-of-order message frames", r.Duplicates, r.Reordered)
	}
	if len(r.ErrorCodes) > 0 {
		codes := slices.Sorted(maps.Keys(r.ErrorCodes))
		for i, c := range codes {
			codes[i] = fmt.Sprintf("%s %d", c, r.ErrorCodes[c])
		}
		s += "; error frames by code: " + strings.Join(codes, ", ")
	}
	if r.RateLimited > 0 {
		s += fmt.Sprintf("; %d of the errors were the node's widget message limits: start it with --widget-message-limits=false for a load", r.RateLimited)
	}
	return s
}

func round(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }

// Run signs up a fresh tenant on the target, opens the sockets, sends for
// the configured time, waits up to the grace period for the last acks and
// deliveries, and reports.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	src := &sources{n: cfg.SourceAddrs}
	r := &run{cfg: cfg, http: src.client(64)}
	defer r.closeAll()
	if err := r.setup(ctx); err != nil {
		return Result{}, err
	}
	return r.load(ctx)
}

type run struct {
	cfg  Config
	http *http.Client
	ten  tenant

	visitors []*visitorConn
	agents   []*websocket.Conn
	series   *series

	sent, acked, delivered, errs atomic.Int64
	refused                      atomic.Int64 // error frames: sends the node refused
	limited                      atomic.Int64 // error frames rate_limited: the node limits widget messages
	duplicates, reordered        atomic.Int64
	codes                        struct {
		sync.Mutex
		m map[string]int // error frames by code
	}
	track struct {
		sync.Mutex
		msgs map[string]*tracked // acked or delivered messages not yet delivered to every agent socket
	}
	readers sync.WaitGroup
}

// tracked is one message on its way to the agent sockets.
type tracked struct {
	acked bool
	got   int // agent sockets that received it
}

type visitorConn struct {
	ws     *websocket.Conn
	conv   string
	window chan struct{} // closed loop: a token per message that may be sent
	mu     sync.Mutex    // one writer at a time; guards n
	n      int
	sends  struct {
		sync.Mutex
		at map[string]time.Time // client_id → send time, until acked
	}
}

// setup signs up the tenant and opens every socket; visitors open their
// conversations several at a time.
func (r *run) setup(ctx context.Context) error {
	var err error
	if r.ten, err = signup(ctx, r.http, r.cfg.Target); err != nil {
		return err
	}
	nodes := r.cfg.nodes()
	r.visitors = make([]*visitorConn, r.cfg.Visitors)
	var opened atomic.Int64
	stop := r.progressWhile(func() string {
		return fmt.Sprintf("setup: %d/%d visitor sockets open, each with a conversation", opened.Load(), r.cfg.Visitors)
	})
	err = parallel(ctx, r.cfg.Visitors, 32, func(ctx context.Context, i int) error {
		v, err := r.openVisitor(ctx, nodes[i%len(nodes)], i)
		if err != nil {
			return err
		}
		r.visitors[i] = v
		opened.Add(1)
		return nil
	})
	stop()
	if err != nil {
		return err
	}
	for i := range r.cfg.Agents {
		ws, err := dialWS(ctx, r.http, wsURL(nodes[i%len(nodes)], "/ws/agent"), http.Header{"Authorization": {"Bearer " + r.ten.token}})
		if err != nil {
			return fmt.Errorf("load: open agent socket %d: %w", i+1, err)
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
				return fmt.Errorf("load: resume on an agent socket: %w", err)
			}
		}
	}
	return nil
}

// openVisitor opens visitor i's session and socket on node, and its
// conversation with a first message, whose ack names it.
func (r *run) openVisitor(ctx context.Context, node string, i int) (*visitorConn, error) {
	token, err := widgetSession(ctx, r.http, node, r.ten.widgetKey)
	if err != nil {
		return nil, err
	}
	ws, err := dialWS(ctx, r.http, wsURL(node, "/ws/widget?token="+token), nil)
	if err != nil {
		return nil, fmt.Errorf("load: open widget socket %d: %w", i+1, err)
	}
	v := &visitorConn{ws: ws, window: make(chan struct{}, max(r.cfg.Window, 1))}
	v.sends.at = map[string]time.Time{}
	if err := writeJSON(ctx, ws, map[string]string{"type": "send", "client_id": fmt.Sprint("open-", i), "body": "hello"}); err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("load: first message of visitor %d: %w", i+1, err)
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	fr := &frameReader{ws: ws}
	for v.conv == "" {
		f, err := fr.read(actx)
		if err != nil {
			ws.CloseNow()
			return nil, fmt.Errorf("load: ack of visitor %d's first message: %w", i+1, err)
		}
		switch f.Type {
		case "ack":
			v.conv = f.ConversationID
		case "error":
			ws.CloseNow()
			return nil, fmt.Errorf("load: visitor %d's first message refused: %v %v", i+1, f.Code, f.Message)
		}
	}
	for range cap(v.window) {
		v.window <- struct{}{}
	}
	return v, nil
}

// load sends for the configured time, waits for what is on its way, and
// sums up.
func (r *run) load(ctx context.Context) (Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	r.series = newSeries(start)
	r.track.msgs = map[string]*tracked{}
	for _, v := range r.visitors {
		r.readers.Go(func() { r.readVisitor(ctx, v) })
	}
	for _, a := range r.agents {
		r.readers.Go(func() { r.readAgent(ctx, a) })
	}
	var last [3]int64
	stop := r.progressWhile(func() string {
		now := [3]int64{r.sent.Load(), r.acked.Load(), r.delivered.Load()}
		s := fmt.Sprintf("%5.0fs  sent %d (%d/s)  acked %d (%d/s)  delivered %d (%d/s)  errors %d",
			time.Since(start).Seconds(), now[0], now[0]-last[0], now[1], now[1]-last[1], now[2], now[2]-last[2], r.errs.Load())
		last = now
		return s
	})
	defer stop()

	end := start.Add(r.cfg.Duration)
	if r.cfg.Rate > 0 {
		r.openLoop(ctx, start)
	} else {
		r.closedLoop(ctx, end)
	}
	sendTime := time.Since(start)
	r.awaitInFlight(r.cfg.Grace)
	stop()
	cancel()
	r.closeAll()
	r.readers.Wait()
	return r.result(sendTime), nil
}

// openLoop sends at the configured rate, round-robin over the visitors,
// each message from its own goroutine so a slow socket delays only itself.
func (r *run) openLoop(ctx context.Context, start time.Time) {
	interval := time.Second / time.Duration(r.cfg.Rate)
	total := int(r.cfg.Duration / interval)
	var senders sync.WaitGroup
	defer senders.Wait()
	for i := 0; i < total && ctx.Err() == nil; i++ {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		v := r.visitors[i%len(r.visitors)]
		senders.Go(func() { r.send(ctx, v) })
	}
}

// closedLoop has every visitor send whenever its window has room, until
// end.
func (r *run) closedLoop(ctx context.Context, end time.Time) {
	sendCtx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	var senders sync.WaitGroup
	defer senders.Wait()
	for _, v := range r.visitors {
		senders.Go(func() {
			for {
				select {
				case <-v.window:
				case <-sendCtx.Done():
					return
				}
				if sendCtx.Err() != nil {
					return
				}
				// The run's context, not sendCtx: a write cut short by a
				// deadline closes the socket.
				r.send(ctx, v)
			}
		})
	}
}

// awaitInFlight waits, up to grace, until every message sent was
// acknowledged or refused and every acknowledged one reached every agent
// socket.
func (r *run) awaitInFlight(grace time.Duration) {
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		r.track.Lock()
		pending := len(r.track.msgs)
		r.track.Unlock()
		if r.acked.Load()+r.refused.Load() >= r.sent.Load() && pending == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *run) result(sendTime time.Duration) Result {
	ack, deliv := r.series.totals()
	res := Result{
		Sent: int(r.sent.Load()), Acked: int(r.acked.Load()), Delivered: int(r.delivered.Load()), Errors: int(r.errs.Load()),
		RateLimited: int(r.limited.Load()),
		Elapsed:     sendTime,
		Duplicates:  int(r.duplicates.Load()), Reordered: int(r.reordered.Load()),
		P50: deliv.quantile(0.50), P99: deliv.quantile(0.99), P999: deliv.quantile(0.999),
		AckP50: ack.quantile(0.50), AckP99: ack.quantile(0.99), AckP999: ack.quantile(0.999),
		Series: r.series.seconds(),
	}
	r.codes.Lock()
	res.ErrorCodes = maps.Clone(r.codes.m)
	r.codes.Unlock()
	res.Unacked = max(res.Sent-res.Acked-int(r.refused.Load()), 0)
	r.track.Lock()
	for _, m := range r.track.msgs {
		if m.acked {
			res.Undelivered += len(r.agents) - m.got
		}
	}
	r.track.Unlock()
	return res
}

// progressWhile prints line() every second until the returned stop is
// called (stop may be called more than once).
func (r *run) progressWhile(line func() string) (stop func()) {
	if r.cfg.Progress == nil {
		return func() {}
	}
	return every(time.Second, func() { fmt.Fprintln(r.cfg.Progress, line()) })
}

// send writes one message whose body carries its send time.
func (r *run) send(ctx context.Context, v *visitorConn) {
	v.mu.Lock()
	v.n++
	id := "m-" + strconv.Itoa(v.n)
	now := time.Now()
	v.sends.Lock()
	v.sends.at[id] = now
	v.sends.Unlock()
	err := writeJSON(ctx, v.ws, map[string]string{"type": "send", "conversation_id": v.conv, "client_id": id,
		"body": "t=" + strconv.FormatInt(now.UnixNano(), 10)})
	v.mu.Unlock()
	if err != nil {
		v.sends.Lock()
		delete(v.sends.at, id)
		v.sends.Unlock()
		if ctx.Err() == nil {
			r.errs.Add(1)
			r.series.failed(time.Now())
		}
		return
	}
	r.sent.Add(1)
	r.series.sent(now)
}

func (r *run) readVisitor(ctx context.Context, v *visitorConn) {
	fr := &frameReader{ws: v.ws}
	for {
		f, err := fr.read(ctx)
		if err != nil {
			return
		}
		switch f.Type {
		case "ack":
			now := time.Now()
			id := f.ClientID
			v.sends.Lock()
			at, ok := v.sends.at[id]
			delete(v.sends.at, id)
			v.sends.Unlock()
			lat := time.Duration(-1)
			if ok {
				lat = now.Sub(at)
			}
			r.acked.Add(1)
			r.series.acked(now, lat)
			if len(r.agents) > 0 {
				r.mark(v.conv, id, true)
			}
		case "error":
			r.errs.Add(1)
			r.refused.Add(1)
			r.series.failed(time.Now())
			code := f.Code
			if code == "rate_limited" {
				r.limited.Add(1)
			}
			r.codes.Lock()
			if r.codes.m == nil {
				r.codes.m = map[string]int{}
			}
			r.codes.m[code]++
			r.codes.Unlock()
		default:
			continue
		}
		select { // room for the next message in a closed loop
		case v.window <- struct{}{}:
		default:
		}
	}
}

// mark records an ack (acked) or one agent socket's receipt of a message,
// and forgets the message once both are complete.
func (r *run) mark(conv, clientID string, acked bool) {
	key := conv + "\x00" + clientID
	r.track.Lock()
	defer r.track.Unlock()
	m := r.track.msgs[key]
	if m == nil {
		m = &tracked{}
		r.track.msgs[key] = m
	}
	if acked {
		m.acked = true
	} else {
		m.got++
	}
	if m.acked && m.got >= len(r.agents) {
		delete(r.track.msgs, key)
	}
}

func (r *run) readAgent(ctx context.Context, ws *websocket.Conn) {
	// What this socket saw of each conversation: every seq, and the highest.
	type seen struct {
		seqs map[uint64]bool
		max  uint64
	}
	convs := map[string]*seen{}
	fr := &frameReader{ws: ws}
	for {
		f, err := fr.read(ctx)
		if err != nil {
			return
		}
		if f.Type != "message" {
			continue
		}
		now := time.Now()
		conv, seq := f.ConversationID, f.Seq
		c := convs[conv]
		if c == nil {
			c = &seen{seqs: map[uint64]bool{}}
			convs[conv] = c
		}
		dup := c.seqs[seq]
		switch {
		case dup:
			r.duplicates.Add(1)
		case seq < c.max:
			r.reordered.Add(1)
		}
		c.seqs[seq], c.max = true, max(c.max, seq)
		ns, err := strconv.ParseInt(strings.TrimPrefix(f.Body, "t="), 10, 64)
		if err != nil {
			continue // not one of ours (the opening messages)
		}
		r.delivered.Add(1)
		r.series.delivered(now, now.Sub(time.Unix(0, ns)))
		if !dup {
			r.mark(conv, f.ClientID, false)
		}
	}
}

func (r *run) closeAll() {
	for _, v := range r.visitors {
		if v != nil {
			v.ws.CloseNow()
		}
	}
	for _, a := range r.agents {
		a.CloseNow()
	}
}
