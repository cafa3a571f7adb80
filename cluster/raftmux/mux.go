package raftmux

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

var (
	// ErrClosed is returned by a closed Mux or Layer. It wraps net.ErrClosed,
	// the error a closed net.Listener returns.
	ErrClosed = fmt.Errorf("raftmux: %w", net.ErrClosed)

	// ErrShardInUse is returned by Mux.Layer for a shard that already has a
	// layer: two raft transports on one shard would each get half of its
	// connections.
	ErrShardInUse = errors.New("raftmux: shard already has a layer")
)

// Mux owns a node's one raft listener and routes each incoming connection
// to its shard's Layer by the header the dialer wrote.
type Mux struct {
	ln     net.Listener
	addr   net.Addr
	cfg    Config
	logger hclog.Logger

	// slots is a semaphore: one token per connection between Accept and
	// handoff, at most cfg.MaxHandshakes.
	slots chan struct{}
	// done is closed by Close; goroutines waiting on channels watch it.
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
	// wg counts the accept loop and every handshake goroutine.
	wg sync.WaitGroup
	// part is the set of addresses Partition cut off.
	part partition

	mu struct {
		sync.Mutex
		closed bool
		layers map[uint16]*Layer
		// pending holds connections whose header is being read, so Close
		// can end their blocked reads without waiting for the deadline.
		pending map[net.Conn]struct{}
	}
}

// Listen opens the node's raft listener on addr (host:port) with
// DefaultConfig.
func Listen(addr string) (*Mux, error) {
	return ListenConfig(addr, DefaultConfig())
}

// ListenConfig opens the node's raft listener on addr with cfg.
func ListenConfig(addr string, cfg Config) (*Mux, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("raftmux: listen %s: %w", addr, err)
	}
	adv := cfg.Advertise
	if adv == nil {
		adv = ln.Addr()
		if tcp, ok := adv.(*net.TCPAddr); !ok || tcp.IP == nil || tcp.IP.IsUnspecified() {
			_ = ln.Close()
			return nil, fmt.Errorf("raftmux: listen address %s is not advertisable; set Config.Advertise", adv)
		}
	}
	m := &Mux{
		ln:     ln,
		addr:   adv,
		cfg:    cfg,
		logger: cfg.Logger,
		slots:  make(chan struct{}, cfg.MaxHandshakes),
		done:   make(chan struct{}),
	}
	m.mu.layers = make(map[uint16]*Layer)
	m.mu.pending = make(map[net.Conn]struct{})
	m.wg.Add(1)
	go m.acceptLoop()
	return m, nil
}

// Addr is the address peers dial to reach any shard on this node.
func (m *Mux) Addr() net.Addr { return m.addr }

// Layer registers shard and returns its stream layer. It fails with
// ErrShardInUse while another layer for shard is open, and with ErrClosed
// after Close.
func (m *Mux) Layer(shard uint16) (*Layer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.closed {
		return nil, ErrClosed
	}
	if _, ok := m.mu.layers[shard]; ok {
		return nil, fmt.Errorf("%w: %d", ErrShardInUse, shard)
	}
	l := newLayer(m, shard)
	m.mu.layers[shard] = l
	return l, nil
}

// Close closes the listener, every handshake in progress and every layer,
// then waits for the Mux's goroutines. It is safe to call more than once;
// later calls return nil.
func (m *Mux) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.mu.closed = true
		layers := m.mu.layers
		pending := m.mu.pending
		m.mu.layers = nil
		m.mu.pending = nil
		m.mu.Unlock()

		close(m.done)
		if err := m.ln.Close(); err != nil {
			m.closeErr = fmt.Errorf("raftmux: close listener: %w", err)
		}
		for c := range pending {
			_ = c.Close()
		}
		for _, l := range layers {
			_ = l.Close()
		}
		m.wg.Wait()
	})
	return m.closeErr
}

// lookup returns shard's open layer, or nil.
func (m *Mux) lookup(shard uint16) *Layer {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.layers[shard]
}

// unregister forgets l if it is still shard's layer; a newer layer for the
// same shard stays.
func (m *Mux) unregister(l *Layer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.layers[l.shard] == l {
		delete(m.mu.layers, l.shard)
	}
}

// acceptLoop takes connections off the listener and starts a handshake for
// each. It never reads from a connection itself, so one slow peer cannot
// hold up the others.
func (m *Mux) acceptLoop() {
	defer m.wg.Done()
	var delay time.Duration
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			// Out of descriptors and the like: back off as raft's own
			// accept loop does (hashicorp/raft#301) instead of spinning.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			m.logger.Warn("raftmux: accept failed", "error", err, "retry_in", delay)
			t := time.NewTimer(delay)
			select {
			case <-m.done:
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		delay = 0

		select {
		case m.slots <- struct{}{}:
		default:
			m.logger.Debug("raftmux: too many handshakes, dropping connection", "remote", c.RemoteAddr())
			_ = c.Close()
			continue
		}
		if !m.trackPending(c) {
			_ = c.Close()
			<-m.slots
			return
		}
		m.wg.Add(1)
		go m.handshake(c)
	}
}

// trackPending records c as in handshake; false once the Mux is closed.
func (m *Mux) trackPending(c net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.closed {
		return false
	}
	m.mu.pending[c] = struct{}{}
	return true
}

func (m *Mux) untrackPending(c net.Conn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.mu.pending, c)
}

// handshake reads c's header under a deadline and hands c to its shard's
// layer; on any failure c is closed.
func (m *Mux) handshake(c net.Conn) {
	defer m.wg.Done()
	defer func() { <-m.slots }()

	shard, err := readHeader(c, m.cfg.HandshakeTimeout)
	m.untrackPending(c)
	if err != nil {
		m.logger.Debug("raftmux: dropping connection", "remote", c.RemoteAddr(), "error", err)
		_ = c.Close()
		return
	}
	l := m.lookup(shard)
	if l == nil {
		m.logger.Debug("raftmux: no layer for shard", "shard", shard, "remote", c.RemoteAddr())
		_ = c.Close()
		return
	}
	l.handoff(c, m.cfg.HandoffTimeout)
}

// readHeader reads and checks the header, then clears the deadline so raft
// sets its own.
func readHeader(c net.Conn, timeout time.Duration) (uint16, error) {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return 0, fmt.Errorf("set deadline: %w", err)
	}
	var h [headerLen]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return 0, fmt.Errorf("read header: %w", err)
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		return 0, fmt.Errorf("clear deadline: %w", err)
	}
	return parseHeader(h)
}
