// The load driver for Centrifugo: ChatPacket's fan-out shape (bench/load)
// on Centrifugo's channels. A visitor is a publisher connection with a
// channel of its own (its conversation), which it also subscribes to, as a
// chat widget on Centrifugo would to get the replies (ChatPacket's widget
// socket likewise receives its own conversation's messages). An agent is a
// subscriber connection subscribed to every visitor's channel. Publishers
// send at the set rate in total; the driver counts publish replies (acks),
// publications received by agents (deliveries), and publish → receipt
// latency, with bench/load's pacing, grace and percentiles.
//
// It speaks the protocol directly over github.com/coder/websocket, the
// client bench/load uses, so that both systems are driven by the same
// WebSocket code and a comparable JSON cost per frame; centrifuge-go would
// add its own reconnect and callback machinery to one side only.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// loadConfig is one run against Centrifugo.
type loadConfig struct {
	URL      string // ws://127.0.0.1:PORT/connection/websocket
	Secret   string // client.token.hmac_secret_key
	Visitors int
	Agents   int
	Rate     int
	Duration time.Duration
	Progress io.Writer // a line per second; nil for none
}

func (c loadConfig) validate() error {
	switch {
	case !strings.HasPrefix(c.URL, "ws://") && !strings.HasPrefix(c.URL, "wss://"):
		return errors.New("centrifugo: url must be a ws:// or wss:// URL")
	case c.Secret == "":
		return errors.New("centrifugo: the HMAC secret of the server's config is needed to make tokens")
	case c.Visitors < 1 || c.Visitors > 10000:
		return errors.New("centrifugo: visitors must be 1 to 10000")
	case c.Agents < 1 || c.Agents > 1000:
		return errors.New("centrifugo: agents must be 1 to 1000")
	case c.Rate < 1 || c.Rate > 1_000_000:
		return errors.New("centrifugo: rate must be 1 to 1000000 messages/s")
	case c.Duration <= 0 || c.Duration > time.Hour:
		return errors.New("centrifugo: duration must be positive and at most an hour")
	}
	return nil
}

// channelOf is visitor i's channel, in the namespace run.sh configures.
func channelOf(i int) string { return "conv:" + strconv.Itoa(i) }

// events counts something that happened during a run and keeps the first
// one's description: what Centrifugo refused (an error reply to a
// command, which fails the run, loudly), or connections it ended (a slow
// consumer is disconnected once its 1 MiB queue is full: an overload the
// figures show, not a refusal).
type events struct {
	n     atomic.Int64
	mu    sync.Mutex
	first string
}

func (r *events) add(what string) {
	if r.n.Add(1) == 1 {
		r.mu.Lock()
		r.first = what
		r.mu.Unlock()
	}
}

func (r *events) firstOne() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.first
}

func (r *events) err() error {
	if n := r.n.Load(); n > 0 {
		return fmt.Errorf("centrifugo refused %d commands; the first: %s", n, r.firstOne())
	}
	return nil
}

type driver struct {
	cfg      loadConfig
	visitors []*publisher
	agents   []*conn

	sent, acked, delivered, errs atomic.Int64
	duplicates, reordered        atomic.Int64
	refused                      events // error replies: fail the run
	dropped                      events // connections the server ended: reported
	mu                           sync.Mutex
	latencies                    []time.Duration
	readers                      sync.WaitGroup
}

// conn is one connection and what its connect reply said.
type conn struct {
	ws     *websocket.Conn
	pong   bool
	nextID atomic.Uint32
}

type publisher struct {
	*conn
	channel string
	mu      sync.Mutex // one sender at a time, as bench/load's visitors
	n       int
}

// runCentrifugo connects, subscribes, loads and reports. A refusal by the
// server (an error reply) is returned as an error after the figures, which
// are still returned; connections it dropped are in the figures.
func runCentrifugo(ctx context.Context, cfg loadConfig) (Result, error) {
	if err := cfg.validate(); err != nil {
		return Result{}, err
	}
	d := &driver{cfg: cfg}
	defer d.closeAll()
	if err := d.setup(ctx); err != nil {
		return Result{}, err
	}
	res := d.load(ctx)
	return res, d.refused.err()
}

func (d *driver) dial(ctx context.Context, user string) (*conn, error) {
	ws, _, err := websocket.Dial(ctx, d.cfg.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", d.cfg.URL, err)
	}
	ws.SetReadLimit(1 << 20)
	c := &conn{ws: ws}
	if err := c.write(ctx, command{ID: c.nextID.Add(1), Connect: &connectRequest{Token: connectionToken(d.cfg.Secret, user), Name: "chatpacket-compare"}}); err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("connect %s: %w", user, err)
	}
	var got *connectResult
	err = c.await(ctx, 1, func(r reply) error {
		if r.Error != nil {
			return r.Error
		}
		if r.Connect == nil {
			return errors.New("a reply without a connect result")
		}
		got = r.Connect
		return nil
	})
	if err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("connect %s: %w", user, err)
	}
	c.pong = got.Pong
	return c, nil
}

func (c *conn) write(ctx context.Context, cmds ...command) error {
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return c.ws.Write(wctx, websocket.MessageText, encodeCommands(cmds...))
}

// await reads the setup replies until those of n commands arrived, handing
// each to check; it answers pings on the way. Only for setup: the load's
// readers take over after it.
func (c *conn) await(ctx context.Context, n int, check func(reply) error) error {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for n > 0 {
		_, b, err := c.ws.Read(rctx)
		if err != nil {
			return fmt.Errorf("read a reply: %w", err)
		}
		for line := range lines(b) {
			if isPing(line) {
				c.answerPing(ctx)
				continue
			}
			var r reply
			if err := json.Unmarshal(line, &r); err != nil {
				return fmt.Errorf("decode a reply %q: %w", line, err)
			}
			if r.ID == 0 {
				continue // a push before the load: not one of ours
			}
			if err := check(r); err != nil {
				return err
			}
			n--
		}
	}
	return nil
}

func (c *conn) answerPing(ctx context.Context) {
	if c.pong {
		c.write(ctx, command{}) // a failed pong shows as the disconnect that follows
	}
}

// lines yields the non-empty lines of a server frame.
func lines(b []byte) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for line := range bytes.SplitSeq(b, []byte("\n")) {
			if len(bytes.TrimSpace(line)) > 0 && !yield(line) {
				return
			}
		}
	}
}

// subscribeBatch is how many subscribe commands share a frame.
const subscribeBatch = 100

func (d *driver) subscribe(ctx context.Context, c *conn, channels []string) error {
	for batch := range slices.Chunk(channels, subscribeBatch) {
		cmds := make([]command, len(batch))
		for i, ch := range batch {
			cmds[i] = command{ID: c.nextID.Add(1), Subscribe: &subscribeRequest{Channel: ch}}
		}
		if err := c.write(ctx, cmds...); err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
		err := c.await(ctx, len(cmds), func(r reply) error {
			if r.Error != nil {
				return fmt.Errorf("subscribe: %w", r.Error)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (d *driver) setup(ctx context.Context) error {
	channels := make([]string, d.cfg.Visitors)
	for i := range d.cfg.Visitors {
		channels[i] = channelOf(i)
		c, err := d.dial(ctx, "visitor-"+strconv.Itoa(i))
		if err != nil {
			return err
		}
		p := &publisher{conn: c, channel: channels[i]}
		d.visitors = append(d.visitors, p)
		if err := d.subscribe(ctx, c, channels[i:i+1]); err != nil {
			return fmt.Errorf("visitor %d: %w", i, err)
		}
	}
	for i := range d.cfg.Agents {
		c, err := d.dial(ctx, "agent-"+strconv.Itoa(i))
		if err != nil {
			return err
		}
		d.agents = append(d.agents, c)
		if err := d.subscribe(ctx, c, channels); err != nil {
			return fmt.Errorf("agent %d: %w", i, err)
		}
	}
	return nil
}

// load sends at the configured rate and collects acks and deliveries, as
// bench/load's run.load does: a goroutine per send at its slot of a fixed
// schedule, then up to 2 s of grace for the last acks and deliveries.
func (d *driver) load(ctx context.Context) Result {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, v := range d.visitors {
		d.readers.Go(func() { d.readVisitor(ctx, v) })
	}
	for _, a := range d.agents {
		d.readers.Go(func() { d.readAgent(ctx, a) })
	}

	start := time.Now()
	interval := time.Second / time.Duration(d.cfg.Rate)
	total := int(d.cfg.Duration / interval)
	progress := time.NewTicker(time.Second)
	defer progress.Stop()
	var senders sync.WaitGroup
	for i := 0; i < total && ctx.Err() == nil; i++ {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
		}
		select {
		case <-progress.C:
			d.report(time.Since(start))
		default:
		}
		v := d.visitors[i%len(d.visitors)]
		senders.Go(func() { d.send(ctx, v) })
	}
	senders.Wait()
	sendTime := time.Since(start)
	deadline := time.Now().Add(2 * time.Second)
	agents := int64(len(d.agents))
	for (d.acked.Load() < d.sent.Load() || d.delivered.Load() < d.acked.Load()*agents) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	d.closeAll()
	d.readers.Wait()

	d.mu.Lock()
	lat := d.latencies
	d.latencies = nil
	d.mu.Unlock()
	res := Result{
		System: "centrifugo",
		Sent:   int(d.sent.Load()), Acked: int(d.acked.Load()), Delivered: int(d.delivered.Load()), Errors: int(d.errs.Load()),
		Duplicates: int(d.duplicates.Load()), Reordered: int(d.reordered.Load()),
		Elapsed: sendTime,
		Dropped: int(d.dropped.n.Load()), FirstDrop: d.dropped.firstOne(),
	}
	res.P50, res.P99, res.P999 = percentiles(lat)
	return res
}

func (d *driver) report(elapsed time.Duration) {
	if d.cfg.Progress == nil {
		return
	}
	fmt.Fprintf(d.cfg.Progress, "%5.1fs  sent %d  acked %d  delivered %d  errors %d\n",
		elapsed.Seconds(), d.sent.Load(), d.acked.Load(), d.delivered.Load(), d.errs.Load())
}

// send publishes one message whose body carries its send time.
func (d *driver) send(ctx context.Context, v *publisher) {
	v.mu.Lock()
	v.n++
	data, _ := json.Marshal(message{ClientID: "m-" + strconv.Itoa(v.n), Body: "t=" + strconv.FormatInt(time.Now().UnixNano(), 10)}) // strings: cannot fail
	err := v.write(ctx, command{ID: v.nextID.Add(1), Publish: &publishRequest{Channel: v.channel, Data: data}})
	v.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			d.errs.Add(1)
		}
		return
	}
	d.sent.Add(1)
}

// readLoop reads frames until the connection ends, answering pings and
// handing every other line, decoded, to handle. A close that the driver
// did not start (its ctx still live) is a refusal.
func (d *driver) readLoop(ctx context.Context, c *conn, who string, handle func(reply)) {
	for {
		_, b, err := c.ws.Read(ctx)
		if err != nil {
			if ctx.Err() == nil {
				d.dropped.add(fmt.Sprintf("%s's connection ended (close status %d): %v", who, websocket.CloseStatus(err), err))
			}
			return
		}
		for line := range lines(b) {
			if isPing(line) {
				c.answerPing(ctx)
				continue
			}
			var r reply
			if err := json.Unmarshal(line, &r); err != nil {
				d.errs.Add(1)
				d.refused.add(fmt.Sprintf("%s got an undecodable frame %q: %v", who, line, err))
				continue
			}
			if r.Push != nil && r.Push.Disconnect != nil {
				d.dropped.add(fmt.Sprintf("%s disconnected: code %d %s", who, r.Push.Disconnect.Code, r.Push.Disconnect.Reason))
				continue
			}
			handle(r)
		}
	}
}

func (d *driver) readVisitor(ctx context.Context, v *publisher) {
	d.readLoop(ctx, v.conn, v.channel, func(r reply) {
		switch {
		case r.Error != nil:
			d.errs.Add(1)
			d.refused.add(fmt.Sprintf("a publish to %s: %v", v.channel, r.Error))
		case r.Publish != nil:
			d.acked.Add(1)
		}
		// Pushes are the visitor's own messages coming back: not counted,
		// as bench/load does not count them on widget sockets.
	})
}

func (d *driver) readAgent(ctx context.Context, a *conn) {
	// What this socket saw of each channel: every message number, and the
	// highest.
	type seen struct {
		ns  map[int]bool
		max int
	}
	channels := map[string]*seen{}
	d.readLoop(ctx, a, "an agent", func(r reply) {
		if r.Error != nil {
			d.errs.Add(1)
			d.refused.add(fmt.Sprintf("an agent's command: %v", r.Error))
			return
		}
		if r.Push == nil || r.Push.Pub == nil {
			return
		}
		m := r.Push.Pub.Data
		ns, err := strconv.ParseInt(strings.TrimPrefix(m.Body, "t="), 10, 64)
		if err != nil {
			return // not one of ours
		}
		lat := time.Since(time.Unix(0, ns))
		n, _ := strconv.Atoi(strings.TrimPrefix(m.ClientID, "m-"))
		c := channels[r.Push.Channel]
		if c == nil {
			c = &seen{ns: map[int]bool{}}
			channels[r.Push.Channel] = c
		}
		switch {
		case c.ns[n]:
			d.duplicates.Add(1)
		case n < c.max:
			d.reordered.Add(1)
		}
		c.ns[n], c.max = true, max(c.max, n)
		d.delivered.Add(1)
		d.mu.Lock()
		d.latencies = append(d.latencies, lat)
		d.mu.Unlock()
	})
}

func (d *driver) closeAll() {
	for _, v := range d.visitors {
		v.ws.CloseNow()
	}
	for _, a := range d.agents {
		a.ws.CloseNow()
	}
}
