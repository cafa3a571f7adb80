package transport

import (
	"bufio"
	"net"
	"net/http"
	"sync"
)

// Write coalescing for WebSocket connections.
//
// coder/websocket flushes its buffer at the end of every message, so each
// frame cost one write system call: 18 % of a node's CPU in a profile at
// 6,000 acked msgs/s, 22 % in a fan-out at 3,000 msg/s to 4 agents. A
// coalescingConn sits under the WebSocket (it is the connection the
// library writes to): while it is corked it collects the writes in
// memory, and Uncork sends them in one system call. Conn's writer corks
// around each batch of queued frames, so the frames that queued while a
// write was under way (a busy agent socket's, a slow client's backlog) go
// out together. Outside a cork it writes through at once, so control
// frames written by other goroutines (pongs, the close handshake) never
// wait for anyone but a running writer, which uncorks as soon as its
// batch is written.

// maxCorked bounds what a cork collects before it writes anyway, so that
// a long queue is sent in chunks of reasonable size.
const maxCorked = 64 << 10

// corkBuffers are the buffers of corked writes, shared: a connection holds
// one only while it is corked, so an idle connection holds none.
var corkBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// coalescingConn is a net.Conn whose writes can be held back and sent
// together (Cork, Uncork). Safe for concurrent use, like a net.Conn.
type coalescingConn struct {
	net.Conn

	mu     sync.Mutex
	corked bool
	buf    *[]byte // the held-back writes, while corked; from corkBuffers
	err    error   // a failed write: every later write fails with it
}

// Write sends p, or holds it back while the connection is corked.
func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if !c.corked {
		return c.Conn.Write(p)
	}
	if c.buf == nil {
		c.buf = corkBuffers.Get().(*[]byte)
	}
	*c.buf = append(*c.buf, p...)
	if len(*c.buf) >= maxCorked {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Cork holds back the writes that follow until Uncork.
func (c *coalescingConn) Cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// Uncork sends what the cork held back, in one write, and lets later
// writes through. It sets no deadline: the caller bounds it (Conn.write
// closes the connection when its batch's deadline passes), as the
// WebSocket library bounds the writes it makes while corked.
func (c *coalescingConn) Uncork() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	if c.err != nil {
		return c.err
	}
	return c.flushLocked()
}

// flushLocked writes the held-back bytes and gives the buffer back.
func (c *coalescingConn) flushLocked() error {
	if c.buf == nil {
		return nil
	}
	b := c.buf
	c.buf = nil
	defer func() {
		*b = (*b)[:0]
		if cap(*b) <= maxCorked+MaxFrameBytes {
			corkBuffers.Put(b)
		}
	}()
	if len(*b) == 0 {
		return nil
	}
	if _, err := c.Conn.Write(*b); err != nil {
		c.err = err
		return err
	}
	return nil
}

// coalescingWriter hands the WebSocket library a hijacked connection that
// is a coalescingConn, keeping net/http's buffers: the library finds
// Hijack through it.
type coalescingWriter struct {
	http.ResponseWriter
	conn *coalescingConn // set by Hijack
}

func (w *coalescingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil { // empty: net/http flushed the 101
		nc.Close()
		return nil, nil, err
	}
	w.conn = &coalescingConn{Conn: nc}
	// Smaller buffers than net/http's 4 KiB each: most sockets are idle
	// most of the time, and these stay with the socket for its life. The
	// writer's buffer carries only what a cork collects anyway (Conn
	// corks every write of its frames) and the control frames the
	// library writes itself (at most 131 bytes); the reader's carries
	// frame headers and small frames, a bigger payload is read straight
	// into the message. Bytes net/http read past the upgrade request (a
	// client that sent frames before the 101) keep its reader.
	rd := brw.Reader
	if rd.Buffered() == 0 {
		rd = bufio.NewReaderSize(w.conn, socketReadBuffer)
	}
	return w.conn, bufio.NewReadWriter(rd, bufio.NewWriterSize(w.conn, socketWriteBuffer)), nil
}

// The buffers of a WebSocket connection (see Hijack).
const (
	socketReadBuffer  = 1 << 10
	socketWriteBuffer = 256
)
