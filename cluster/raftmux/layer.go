package raftmux

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

var _ raft.StreamLayer = (*Layer)(nil)

// acceptBacklog is how many handed-off connections may wait for Accept.
// Raft accepts continuously, so this only absorbs a reconnect burst.
const acceptBacklog = 16

// Layer is one shard's view of the Mux: a raft.StreamLayer whose Accept
// yields only connections whose header names its shard, and whose Dial
// writes that header. Give it to exactly one raft NetworkTransport.
type Layer struct {
	mux   *Mux
	shard uint16

	// accepted carries handed-off connections to Accept.
	accepted chan *conn
	// done is closed by Close.
	done      chan struct{}
	closeOnce sync.Once

	mu struct {
		sync.Mutex
		closed bool
		// conns are the live connections this layer accepted or dialed,
		// closed with the layer so no raft goroutine is left reading them.
		conns map[*conn]struct{}
	}
}

func newLayer(m *Mux, shard uint16) *Layer {
	l := &Layer{
		mux:      m,
		shard:    shard,
		accepted: make(chan *conn, acceptBacklog),
		done:     make(chan struct{}),
	}
	l.mu.conns = make(map[*conn]struct{})
	return l
}

// Shard is the shard this layer serves.
func (l *Layer) Shard() uint16 { return l.shard }

// Accept waits for the next connection addressed to this shard. After Close
// it returns an error wrapping net.ErrClosed.
func (l *Layer) Accept() (net.Conn, error) {
	select {
	case c := <-l.accepted:
		return c, nil
	case <-l.done:
		return nil, fmt.Errorf("raftmux: shard %d: %w", l.shard, ErrClosed)
	}
}

// Addr is the Mux's address, which raft advertises as this member's
// address; every shard on a node shares it.
func (l *Layer) Addr() net.Addr { return l.mux.Addr() }

// Dial connects to the Mux at address and binds the connection to this
// layer's shard by writing the header. timeout bounds the connect and the
// header write; zero means none, as for net.Dialer. It fails at once, with
// an error wrapping ErrPartitioned, for an address cut off by
// Mux.Partition.
func (l *Layer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	select {
	case <-l.done:
		return nil, fmt.Errorf("raftmux: dial %s for shard %d: %w", address, l.shard, ErrClosed)
	default:
	}
	if l.mux.part.has(string(address)) {
		return nil, fmt.Errorf("raftmux: dial %s for shard %d: %w", address, l.shard, ErrPartitioned)
	}
	d := net.Dialer{Timeout: timeout}
	raw, err := d.Dial("tcp", string(address))
	if err != nil {
		return nil, fmt.Errorf("raftmux: dial %s for shard %d: %w", address, l.shard, err)
	}
	if err := writeHeader(raw, l.shard, timeout); err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("raftmux: dial %s for shard %d: %w", address, l.shard, err)
	}
	c, ok := l.track(raw, string(address))
	if !ok {
		_ = raw.Close()
		return nil, fmt.Errorf("raftmux: dial %s for shard %d: %w", address, l.shard, ErrClosed)
	}
	// Partition may have swept this layer while we connected; it stored
	// the address before sweeping, so once c is tracked one of the two
	// sees the other.
	if l.mux.part.has(string(address)) {
		_ = c.Close()
		return nil, fmt.Errorf("raftmux: dial %s for shard %d: %w", address, l.shard, ErrPartitioned)
	}
	return c, nil
}

// Close unregisters the shard from the Mux, makes Accept return, and closes
// every connection this layer accepted or dialed. It is safe to call more
// than once.
func (l *Layer) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.mu.closed = true
		conns := l.mu.conns
		l.mu.conns = nil
		l.mu.Unlock()

		close(l.done)
		l.mux.unregister(l)
		for c := range conns {
			c.closeByLayer()
		}
	})
	return nil
}

// handoff queues raw for Accept, or closes it when the layer closes first
// or raft does not take it within timeout.
func (l *Layer) handoff(raw net.Conn, timeout time.Duration) {
	c, ok := l.track(raw, "")
	if !ok {
		_ = raw.Close()
		return
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case l.accepted <- c:
	case <-l.done:
		_ = c.Close()
	case <-t.C:
		l.mux.logger.Debug("raftmux: shard did not accept in time", "shard", l.shard)
		_ = c.Close()
	}
}

// track wraps raw so the layer can close it; false once the layer is
// closed. dialed is the address raw was dialed to, empty if accepted.
func (l *Layer) track(raw net.Conn, dialed string) (*conn, bool) {
	c := &conn{Conn: raw, layer: l, dialed: dialed}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.closed {
		return nil, false
	}
	l.mu.conns[c] = struct{}{}
	return c, true
}

// forget drops a connection closed by raft.
func (l *Layer) forget(c *conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.mu.conns, c)
}

// writeHeader sends the shard header, bounded by timeout when positive,
// and clears the deadline so raft sets its own.
func writeHeader(c net.Conn, shard uint16, timeout time.Duration) error {
	if timeout > 0 {
		if err := c.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
			return fmt.Errorf("set deadline: %w", err)
		}
	}
	if _, err := c.Write(appendHeader(make([]byte, 0, headerLen), shard)); err != nil {
		return fmt.Errorf("write header: %w", err)
	}
	if err := c.SetWriteDeadline(time.Time{}); err != nil {
		return fmt.Errorf("clear deadline: %w", err)
	}
	return nil
}
