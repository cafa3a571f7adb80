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
	ping  *time.Timer    // the next ping; nil until Serve
	done  chan struct{}  // closed when the connection is closed
	tasks sync.WaitGroup // writers, pings and the close handshake, which Serve waits for
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
// batch under one cork, so the frames queued while a write was under way
// (a busy agent socket's) cost one system call, not one each. It never
// waits for more frames: an idle connection's frame goes out at once (a
// 1 ms window to gather them added a millisecond to the median delivery
// at 1,000 msg/s and was dropped). A frame leaves the queue's byte count
// when its batch is taken, as a single frame did before batching.
func (c *Conn) drain() {
	var batch [][]byte
	for {
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
		clear(batch)
		if err != nil {
			c.close(websocket.StatusGoingAway, "write failed", fmt.Errorf("transport: write: %w", err))
		}
	}
}

// write writes frames under one cork, when the connection has one: one
// system call for them all (and for a frame longer than the small write
// buffer, one instead of several). One deadline bounds the whole batch:
// a client that stops reading is disconnected, not waited for.
func (c *Conn) write(frames [][]byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), FrameWriteTimeout)
	defer cancel()
	if c.cork == nil {
		for _, frame := range frames {
			if err := c.ws.Write(ctx, websocket.MessageText, frame); err != nil {
				return err
			}
		}
		return nil
	}
	c.cork.Cork()
	for _, frame := range frames {
		if err := c.ws.Write(ctx, websocket.MessageText, frame); err != nil {
			c.cork.Uncork()
			return err
		}
	}
	// A flush stuck past the deadline ends with the connection.
	stop := context.AfterFunc(ctx, func() { c.cork.Conn.Close() })
	defer stop()
	return c.cork.Uncork()
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
