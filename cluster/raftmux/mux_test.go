package raftmux

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// testConfig keeps handshake waits short so tests of bad peers are quick.
func testConfig() Config {
	return Config{HandshakeTimeout: 300 * time.Millisecond, HandoffTimeout: time.Second}
}

func listen(t *testing.T, cfg Config) *Mux {
	t.Helper()
	m, err := ListenConfig("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatalf("ListenConfig = %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func layer(t *testing.T, m *Mux, shard uint16) *Layer {
	t.Helper()
	l, err := m.Layer(shard)
	if err != nil {
		t.Fatalf("Layer(%d) = %v", shard, err)
	}
	return l
}

// acceptWithin calls l.Accept, failing t if it takes longer than d. Accept
// has no deadline of its own; the layer is closed to end a stuck call.
func acceptWithin(t *testing.T, l *Layer, d time.Duration) net.Conn {
	t.Helper()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := l.Accept()
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("shard %d: Accept = %v", l.Shard(), r.err)
		}
		return r.c
	case <-time.After(d):
		_ = l.Close()
		<-ch
		t.Fatalf("shard %d: Accept took more than %v", l.Shard(), d)
		return nil
	}
}

// closedWithin fails t unless the peer closes c within d.
func closedWithin(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	var b [1]byte
	n, err := c.Read(b[:])
	if n != 0 || !(errors.Is(err, io.EOF) || isReset(err)) {
		t.Fatalf("Read = %d, %v; want the peer to close within %v", n, err, d)
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && !op.Timeout()
}

// rawDial opens a plain TCP connection to m and writes b.
func rawDial(t *testing.T, m *Mux, b []byte) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", m.Addr().String(), time.Second)
	if err != nil {
		t.Fatalf("Dial = %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if len(b) > 0 {
		if _, err := c.Write(b); err != nil {
			t.Fatalf("Write = %v", err)
		}
	}
	return c
}

// TestRoutesManyShardsOverOneListener dials 64 shards, three connections
// each, concurrently through one listener and checks that every layer gets
// exactly its own connections.
func TestRoutesManyShardsOverOneListener(t *testing.T) {
	checkLeaks(t)
	const shards, perShard = 64, 3
	server := listen(t, testConfig())
	client := listen(t, testConfig())

	var wg sync.WaitGroup
	errs := make(chan error, shards*perShard*2)
	for s := range uint16(shards) {
		in := layer(t, server, s*1000) // spread over the uint16 range
		out := layer(t, client, s*1000)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range perShard {
				c, err := in.Accept()
				if err != nil {
					errs <- fmt.Errorf("shard %d: Accept = %w", in.Shard(), err)
					return
				}
				var b [2]byte
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.ReadFull(c, b[:]); err != nil {
					errs <- fmt.Errorf("shard %d: read = %w", in.Shard(), err)
				} else if got := uint16(b[0])<<8 | uint16(b[1]); got != in.Shard() {
					errs <- fmt.Errorf("shard %d got a connection for shard %d", in.Shard(), got)
				}
				_ = c.Close()
			}
		}()
		go func() {
			defer wg.Done()
			for range perShard {
				c, err := out.Dial(addrOf(server), time.Second)
				if err != nil {
					errs <- fmt.Errorf("shard %d: Dial = %w", out.Shard(), err)
					return
				}
				if _, err := c.Write([]byte{byte(out.Shard() >> 8), byte(out.Shard())}); err != nil {
					errs <- fmt.Errorf("shard %d: write = %w", out.Shard(), err)
				}
				// The server closes after reading; wait for it so the
				// layer's Close does not race the payload.
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, _ = c.Read(make([]byte, 1))
				_ = c.Close()
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = server.Close() // ends stuck Accepts
		<-done
		t.Fatal("routing 192 connections took more than 10s")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestBadPeersDoNotStallHandshakes opens silent and garbage connections
// before a good one: the good one must be routed while the silent ones are
// still waiting, garbage is closed at once, and silence is closed after
// HandshakeTimeout.
func TestBadPeersDoNotStallHandshakes(t *testing.T) {
	checkLeaks(t)
	cfg := testConfig()
	server := listen(t, cfg)
	client := listen(t, cfg)
	in := layer(t, server, 7)
	out := layer(t, client, 7)

	var silent, garbage []net.Conn
	for range 20 {
		silent = append(silent, rawDial(t, server, nil))
		garbage = append(garbage, rawDial(t, server, []byte("GET / HTTP/1.1\r\n\r\n")))
	}
	// Half a header, then nothing: as silent as no header.
	silent = append(silent, rawDial(t, server, []byte{headerMagic, headerVersion}))
	// A plain raft transport's first byte is an RPC type.
	garbage = append(garbage, rawDial(t, server, []byte{0, 0x80, 0, 7}))

	start := time.Now()
	c, err := out.Dial(addrOf(server), time.Second)
	if err != nil {
		t.Fatalf("Dial = %v", err)
	}
	defer c.Close()
	got := acceptWithin(t, in, cfg.HandshakeTimeout/2)
	defer got.Close()
	t.Logf("good connection routed in %v behind 21 silent and 21 garbage ones", time.Since(start))

	for i, g := range garbage {
		t.Run(fmt.Sprintf("garbage-%d", i), func(t *testing.T) { closedWithin(t, g, time.Second) })
	}
	for i, s := range silent {
		t.Run(fmt.Sprintf("silent-%d", i), func(t *testing.T) {
			closedWithin(t, s, cfg.HandshakeTimeout+2*time.Second)
		})
	}
	if waited := time.Since(start); waited < cfg.HandshakeTimeout/2 {
		t.Errorf("silent peers dropped after %v; want about HandshakeTimeout %v", waited, cfg.HandshakeTimeout)
	}
}

// TestHandshakeLimitRefusesExcess fills every handshake slot with silent
// peers: the next connection is closed at once instead of queued.
func TestHandshakeLimitRefusesExcess(t *testing.T) {
	checkLeaks(t)
	cfg := testConfig()
	cfg.MaxHandshakes = 4
	cfg.HandshakeTimeout = 5 * time.Second
	server := listen(t, cfg)
	for range cfg.MaxHandshakes {
		rawDial(t, server, nil)
	}
	extra := rawDial(t, server, appendHeader(nil, 1))
	closedWithin(t, extra, time.Second)
}

// TestUnknownShardIsClosed dials a shard nobody registered.
func TestUnknownShardIsClosed(t *testing.T) {
	checkLeaks(t)
	server := listen(t, testConfig())
	client := listen(t, testConfig())
	layer(t, server, 1)

	out := layer(t, client, 2)
	c, err := out.Dial(addrOf(server), time.Second)
	if err != nil {
		t.Fatalf("Dial = %v; want success (the header has no reply)", err)
	}
	defer c.Close()
	closedWithin(t, c, time.Second)

	raw := rawDial(t, server, appendHeader(nil, 65535))
	closedWithin(t, raw, time.Second)
}

// TestClosingLayerEndsAccept checks a layer's whole lifetime: Accept
// returns net.ErrClosed, its connections are closed, and the shard can be
// registered again.
func TestClosingLayerEndsAccept(t *testing.T) {
	checkLeaks(t)
	server := listen(t, testConfig())
	client := listen(t, testConfig())
	in := layer(t, server, 3)
	out := layer(t, client, 3)

	if _, err := server.Layer(3); !errors.Is(err, ErrShardInUse) {
		t.Errorf("second Layer(3) = %v; want ErrShardInUse", err)
	}

	c, err := out.Dial(addrOf(server), time.Second)
	if err != nil {
		t.Fatalf("Dial = %v", err)
	}
	defer c.Close()
	accepted := acceptWithin(t, in, time.Second)

	acceptErr := make(chan error, 1)
	go func() {
		_, err := in.Accept()
		acceptErr <- err
	}()
	if err := in.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	select {
	case err := <-acceptErr:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close = %v; want net.ErrClosed", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Accept still blocked 1s after Close")
	}
	// The layer closed the connection it had handed out: the dialer sees
	// the end, and raft's reader on our side sees a clean io.EOF.
	closedWithin(t, c, time.Second)
	if n, err := accepted.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("Read on a connection closed by its layer = %d, %v; want 0, io.EOF", n, err)
	}

	if _, err := server.Layer(3); err != nil {
		t.Errorf("Layer(3) after Close = %v; want the shard free again", err)
	}
}

// TestClosingMuxClosesEverything checks that Mux.Close ends Accept on every
// layer, refuses new layers and dials, and is safe to repeat.
func TestClosingMuxClosesEverything(t *testing.T) {
	checkLeaks(t)
	m := listen(t, testConfig())
	silent := rawDial(t, m, nil) // a handshake in progress
	var layers []*Layer
	for s := range uint16(5) {
		layers = append(layers, layer(t, m, s))
	}
	errs := make(chan error, len(layers))
	for _, l := range layers {
		go func() {
			_, err := l.Accept()
			errs <- err
		}()
	}

	start := time.Now()
	if err := m.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close = %v; want nil", err)
	}
	// Close waited for the handshake goroutine, so it did not sit out the
	// handshake deadline.
	if d := time.Since(start); d > testConfig().HandshakeTimeout {
		t.Errorf("Close took %v; want it to end handshakes in progress at once", d)
	}
	for range layers {
		select {
		case err := <-errs:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("Accept after Mux.Close = %v; want net.ErrClosed", err)
			}
		case <-time.After(time.Second):
			t.Fatal("Accept still blocked 1s after Mux.Close")
		}
	}
	closedWithin(t, silent, time.Second)
	if _, err := m.Layer(9); !errors.Is(err, ErrClosed) {
		t.Errorf("Layer after Close = %v; want ErrClosed", err)
	}
	if _, err := layers[0].Dial(addrOf(m), time.Second); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Dial on a closed layer = %v; want net.ErrClosed", err)
	}
	if _, err := net.DialTimeout("tcp", m.Addr().String(), time.Second); err == nil {
		t.Error("Dial to a closed Mux succeeded; want the listener gone")
	}
}

// addrOf is m's address as raft names it.
func addrOf(m *Mux) raft.ServerAddress { return raft.ServerAddress(m.Addr().String()) }
