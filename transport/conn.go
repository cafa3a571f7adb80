package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// WebSocket limits (API.md): frames of at most 64 KiB; each connection's
// outbound queue is bounded in bytes, and a client that does not read fast
// enough to stay under it is disconnected rather than allowed to grow the
// server's memory.
const (
	MaxFrameBytes     = 64 << 10
	MaxQueueBytes     = 1 << 20
	FrameWriteTimeout = 10 * time.Second
	PingInterval      = 30 * time.Second
	PingTimeout       = 10 * time.Second
	closeSlowConsumer = websocket.StatusTryAgainLater // 1013: reconnect and resume
	// CoalesceWindow is the least time between two writes of one
	// connection: frames queued within it of the last write wait for its
	// end and go out together. An idle connection writes at once; a busy
	// one (an agent's, sent thousands of frames a second) makes at most
	// about one write system call per window, instead of one per frame.
	CoalesceWindow = time.Millisecond
)

// ErrSlowConsumer is why a connection whose outbound queue overflowed was
// closed.
var ErrSlowConsumer = errors.New("transport: slow consumer")

// Conn is one WebSocket connection: Send never blocks on the network, it
// queues (bounded in bytes) for a writer; Serve reads.
//
// Memory. Most connections are idle most of the time (a widget left open
// in a tab), so an idle connection keeps one goroutine, the reader, and
// nothing else: a writer goroutine runs only while the queue has frames
// (Send starts it, it ends when the queue is empty), and a ping is a timer
// whose callback runs only when it fires. One writer at a time keeps the
// frames in order.
//
// Send is safe for concurrent use; Serve runs the connection.
type Conn struct {
	ws *websocket.Conn
	// cork coalesces the writes of one drain into one system call; nil
	// when the server's ResponseWriter could not be hijacked through it.
	cork *coalescingConn

	mu struct {
		sync.Mutex
		queue   [][]byte
		bytes   int
		writing bool // a writer goroutine is draining the queue
		closed  bool
		err     error // why it closed
	}
	// lastWrite is when the last batch was written; only the writer,
	// one at a time (ordered by mu), uses it.
	lastWrite time.Time
	ping      *time.Timer    // the next ping; nil until Serve
	done      chan struct{}  // closed when the connection is closed
	tasks     sync.WaitGroup // writers, pings and the close handshake, which Serve waits for
}

// AcceptConn upgrades an HTTP request to a WebSocket connection. origins
// lists the host patterns (path.Match syntax, as in the Origin header's
// host) that may open it; nil allows only same-origin requests.
func AcceptConn(w http.ResponseWriter, r *http.Request, origins []string) (*Conn, error) {
	cw := &coalescingWriter{ResponseWriter: w}
	ws, err := websocket.Accept(cw, r, &websocket.AcceptOptions{OriginPatterns: origins})
	if err != nil {
		return nil, err // Accept has answered the request
	}
	ws.SetReadLimit(MaxFrameBytes) // a bigger frame closes with 1009
	return &Conn{ws: ws, cork: cw.conn, done: make(chan struct{})}, nil
}

// Send queues a frame. It fails once the connection is closed; a frame
// that would take the queue past MaxQueueBytes closes the connection with
// 1013 (try again later: the client reconnects and resumes).
func (c *Conn) Send(frame []byte) error {
	c.mu.Lock()
	if c.mu.closed {
		err := c.mu.err
		c.mu.Unlock()
		return err
	}
	if c.mu.bytes+len(frame) > MaxQueueBytes {
		c.mu.Unlock()
		c.close(closeSlowConsumer, "slow consumer", ErrSlowConsumer)
		return ErrSlowConsumer
	}
	c.mu.queue = append(c.mu.queue, frame)
	c.mu.bytes += len(frame)
	if !c.mu.writing {
		c.mu.writing = true
		c.tasks.Add(1) // under mu: never after Serve's Wait began (closed is set first)
		go func() {
			defer c.tasks.Done()
			c.drain()
		}()
	}
	c.mu.Unlock()
	return nil
}

// SendJSON queues v as a JSON text frame.
func (c *Conn) SendJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("transport: encode frame: %w", err)
	}
	return c.Send(b)
}

// ErrorFrame is the frame that answers a bad frame; the connection stays
// open.
type ErrorFrame struct {
	Type    string `json:"type"` // always "error"
	Code    string `json:"code"`
	Message string `json:"message"`
}

// SendError queues an error frame.
func (c *Conn) SendError(code, message string) error {
	return c.SendJSON(ErrorFrame{Type: "error", Code: code, Message: message})
}

// Serve reads frames and hands each text frame to handle, one at a time,
// until the connection closes or ctx ends (a read ends with ctx); it arms
// the pings, and returns once its writer and pings have ended. A binary frame is answered with an error frame. Serve returns why
// the connection ended.
func (c *Conn) Serve(ctx context.Context, handle func(ctx context.Context, frame []byte)) error {
	c.mu.Lock()
	c.ping = time.AfterFunc(PingInterval, c.pingOnce)
	c.mu.Unlock()
	defer c.tasks.Wait()
	for {
		typ, frame, err := c.ws.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				c.close(websocket.StatusGoingAway, "server shutting down", ctx.Err())
			} else {
				c.close(websocket.StatusNormalClosure, "", err)
			}
			return c.Err()
		}
		if typ != websocket.MessageText {
			c.SendError("bad_frame", "frames are JSON text")
			continue
		}
		handle(ctx, frame)
	}
}

// Done is closed when the connection has closed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the connection closed, or nil while it is open.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.err
}

// Close closes the connection with a code and a reason for the client.
func (c *Conn) Close(code websocket.StatusCode, reason string) {
	c.close(code, reason, fmt.Errorf("transport: closed: %s", reason))
}

func (c *Conn) close(code websocket.StatusCode, reason string, why error) {
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return
	}
	c.mu.closed, c.mu.err = true, why
	c.mu.queue, c.mu.bytes = nil, 0
	if c.ping != nil {
		c.ping.Stop()
	}
	// Under mu, so that Serve's Wait, which follows its own close, counts it.
	c.tasks.Add(1)
	c.mu.Unlock()
	close(c.done)
	// The close handshake waits up to 5 s for the client; do not hold up the
	// caller (a grain's event fan-out, say) for that. Serve waits for it.
	go func() {
		defer c.tasks.Done()
		c.ws.Close(code, reason)
	}()
}

// drain writes the queued frames, in order, until the queue is empty or
// the connection closed; Send starts it when it is not running. It takes
// the queued frames in batches of up to maxCorked bytes and writes each
// batch under one cork, at most one batch per CoalesceWindow, so a busy
// connection costs a system call per batch, not one per frame. A frame
// leaves the queue's byte count when its batch is taken, as a single
// frame did before batching.
func (c *Conn) drain() {
	var batch [][]byte
	for {
		if wait := CoalesceWindow - time.Since(c.lastWrite); wait > 0 {
			time.Sleep(wait) // let the frames of the window gather
		}
		c.mu.Lock()
		if len(c.mu.queue) == 0 || c.mu.closed {
			c.mu.writing = false
			c.mu.queue = nil // an idle connection keeps no slice
			c.mu.Unlock()
			return
		}
		batch = batch[:0]
		for n := 0; len(c.mu.queue) > 0 && (n == 0 || n+len(c.mu.queue[0]) <= maxCorked); {
			f := c.mu.queue[0]
			c.mu.queue[0] = nil
			c.mu.queue = c.mu.queue[1:]
			c.mu.bytes -= len(f)
			n += len(f)
			batch = append(batch, f)
		}
		c.mu.Unlock()

		err := c.write(batch)
		c.lastWrite = time.Now()
		clear(batch)
		if err != nil {
			c.close(websocket.StatusGoingAway, "write failed", fmt.Errorf("transport: write: %w", err))
		}
	}
}

// write writes frames under one cork, when the connection has one: one
// system call for them all (and for a frame longer than the small write
// buffer, one instead of several).
func (c *Conn) write(frames [][]byte) (err error) {
	if c.cork != nil {
		c.cork.Cork()
		defer func() {
			if uerr := c.cork.Uncork(time.Now().Add(FrameWriteTimeout)); err == nil {
				err = uerr
			}
		}()
	}
	for _, frame := range frames {
		ctx, cancel := context.WithTimeout(context.Background(), FrameWriteTimeout)
		err := c.ws.Write(ctx, websocket.MessageText, frame)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

// pingOnce pings the client, runs on the ping timer, and arms the next
// ping; a client that does not answer within PingTimeout is disconnected.
func (c *Conn) pingOnce() {
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return
	}
	c.tasks.Add(1)
	c.mu.Unlock()
	defer c.tasks.Done()
	ctx, cancel := context.WithTimeout(context.Background(), PingTimeout)
	err := c.ws.Ping(ctx)
	cancel()
	if err != nil {
		c.close(websocket.StatusGoingAway, "ping timeout", fmt.Errorf("transport: ping: %w", err))
		return
	}
	c.mu.Lock()
	if !c.mu.closed {
		c.ping.Reset(PingInterval)
	}
	c.mu.Unlock()
}
