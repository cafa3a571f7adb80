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

// Conn is one WebSocket connection with its own writer: Send never blocks
// on the network, it queues (bounded in bytes) for the writer goroutine.
// Send is safe for concurrent use; Serve runs the connection.
type Conn struct {
	ws *websocket.Conn

	mu struct {
		sync.Mutex
		queue  [][]byte
		bytes  int
		closed bool
		err    error // why it closed
	}
	wake    chan struct{}  // buffered 1: the queue has frames
	done    chan struct{}  // closed when the connection is closed
	closing sync.WaitGroup // the close handshake, which Serve waits for
}

// AcceptConn upgrades an HTTP request to a WebSocket connection. origins
// lists the host patterns (path.Match syntax, as in the Origin header's
// host) that may open it; nil allows only same-origin requests.
func AcceptConn(w http.ResponseWriter, r *http.Request, origins []string) (*Conn, error) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: origins})
	if err != nil {
		return nil, err // Accept has answered the request
	}
	ws.SetReadLimit(MaxFrameBytes) // a bigger frame closes with 1009
	return &Conn{ws: ws, wake: make(chan struct{}, 1), done: make(chan struct{})}, nil
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
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
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
// until the connection closes or ctx ends; it also runs the writer and the
// pings. A binary frame is answered with an error frame. Serve returns why
// the connection ended.
func (c *Conn) Serve(ctx context.Context, handle func(ctx context.Context, frame []byte)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { c.writeLoop(ctx) })
	wg.Go(func() { c.pingLoop(ctx) })
	defer c.closing.Wait()
	defer wg.Wait()
	defer cancel()

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
	c.mu.Unlock()
	close(c.done)
	// The close handshake waits up to 5 s for the client; do not hold up the
	// caller (a grain's event fan-out, say) for that. Serve waits for it.
	c.closing.Go(func() { c.ws.Close(code, reason) })
}

func (c *Conn) writeLoop(ctx context.Context) {
	for {
		select {
		case <-c.wake:
		case <-c.done:
			return
		case <-ctx.Done():
			return
		}
		for {
			c.mu.Lock()
			if len(c.mu.queue) == 0 || c.mu.closed {
				c.mu.Unlock()
				break
			}
			frame := c.mu.queue[0]
			c.mu.queue[0] = nil
			c.mu.queue = c.mu.queue[1:]
			c.mu.bytes -= len(frame)
			c.mu.Unlock()

			wctx, cancel := context.WithTimeout(ctx, FrameWriteTimeout)
			err := c.ws.Write(wctx, websocket.MessageText, frame)
			cancel()
			if err != nil {
				c.close(websocket.StatusGoingAway, "write failed", fmt.Errorf("transport: write: %w", err))
				return
			}
		}
	}
}

func (c *Conn) pingLoop(ctx context.Context) {
	t := time.NewTicker(PingInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, PingTimeout)
			err := c.ws.Ping(pctx)
			cancel()
			if err != nil {
				c.close(websocket.StatusGoingAway, "ping timeout", fmt.Errorf("transport: ping: %w", err))
				return
			}
		case <-c.done:
			return
		case <-ctx.Done():
			return
		}
	}
}
