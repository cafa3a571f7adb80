package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// countingConn counts the writes that reach the real connection.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// tcpPair is a connected pair of TCP connections on 127.0.0.1.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestCorkSendsHeldBackWritesInOneWrite(t *testing.T) {
	client, server := tcpPair(t)
	inner := &countingConn{Conn: server}
	c := &coalescingConn{Conn: inner}

	c.Write([]byte("now;"))
	if got := inner.writes.Load(); got != 1 {
		t.Fatalf("uncorked write: %d writes reached the connection, want 1", got)
	}
	c.Cork()
	for i := range 3 {
		if n, err := c.Write(fmt.Appendf(nil, "held%d;", i)); n != 6 || err != nil {
			t.Fatalf("corked Write = %d, %v", n, err)
		}
	}
	if got := inner.writes.Load(); got != 1 {
		t.Fatalf("while corked: %d writes reached the connection, want still 1", got)
	}
	if err := c.Uncork(); err != nil {
		t.Fatalf("Uncork = %v", err)
	}
	if got := inner.writes.Load(); got != 2 {
		t.Fatalf("after Uncork: %d writes, want 2 (the three held back as one)", got)
	}
	if c.buf != nil {
		t.Fatal("an uncorked connection still holds a buffer")
	}
	want := "now;held0;held1;held2;"
	got := make([]byte, len(want))
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(client, got); err != nil || string(got) != want {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

func TestCorkWritesAnywayPastItsBound(t *testing.T) {
	client, server := tcpPair(t)
	go io.Copy(io.Discard, client)
	inner := &countingConn{Conn: server}
	c := &coalescingConn{Conn: inner}
	c.Cork()
	chunk := make([]byte, 16<<10)
	for range 8 { // 128 KiB: two full corks' worth
		c.Write(chunk)
	}
	if got := inner.writes.Load(); got != 2 {
		t.Fatalf("%d writes reached the connection while corked, want 2 of %d KiB", got, maxCorked>>10)
	}
	c.Uncork()
	if got := inner.writes.Load(); got != 2 {
		t.Fatalf("Uncork with nothing held wrote: %d writes", got)
	}
}

func TestCorkFailureIsSticky(t *testing.T) {
	_, server := tcpPair(t)
	c := &coalescingConn{Conn: server}
	c.Cork()
	c.Write([]byte("lost"))
	server.Close()
	if err := c.Uncork(); err == nil {
		t.Fatal("Uncork on a closed connection succeeded")
	}
	if _, err := c.Write([]byte("after")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after a failed flush = %v, want the flush's error", err)
	}
}

// TestBurstsAreCoalesced: a burst of frames queued at once reaches the
// client whole and in order, in fewer writes than frames.
func TestBurstsAreCoalesced(t *testing.T) {
	const frames = 500
	var conn atomic.Pointer[Conn]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := AcceptConn(w, r, nil)
		if err != nil {
			return
		}
		if c.cork == nil {
			t.Error("the connection has no cork")
		}
		// Count the writes under the cork from here on.
		counted := &countingConn{Conn: c.cork.Conn}
		c.cork.Conn = counted
		c.mu.Lock() // hold the writer back until the whole burst is queued
		for i := range frames {
			f := fmt.Appendf(nil, `{"i":%d}`, i)
			c.mu.queue = append(c.mu.queue, f)
			c.mu.bytes += len(f)
		}
		c.mu.writing = true
		c.tasks.Add(1)
		go func() { defer c.tasks.Done(); c.drain() }()
		c.mu.Unlock()
		conn.Store(c)
		c.Serve(r.Context(), func(context.Context, []byte) {})
		if n := counted.writes.Load(); n >= frames/10 {
			t.Errorf("%d frames took %d writes", frames, n)
		}
	}))
	defer srv.Close()
	ws := dial(t, "ws"+strings.TrimPrefix(srv.URL, "http"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range frames {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if want := fmt.Sprintf(`{"i":%d}`, i); string(b) != want {
			t.Fatalf("frame %d = %s, want %s", i, b, want)
		}
	}
	ws.Close(websocket.StatusNormalClosure, "")
}
