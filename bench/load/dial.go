package load

// Dialing from several loopback source addresses. One (source address,
// destination address) pair has one ephemeral port range (about 28k ports
// on Linux), and sockets closed by the client linger in TIME_WAIT: a
// generator that opens tens of thousands of sockets to one node on one
// machine runs out of ports. Linux routes all of 127.0.0.0/8 to the
// loopback device, so binding the local end to 127.0.0.1, 127.0.0.2, …
// round-robin gives each address its own range.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// MaxSourceAddrs bounds --source-addrs: 127.0.0.1 to 127.0.0.254.
const MaxSourceAddrs = 254

// DefaultSourceAddrs is the number of source addresses for a target: 8 on
// loopback, where the generator and the node share one machine's ports;
// 1 (whatever the kernel picks) for any other host.
func DefaultSourceAddrs(target string) int {
	u, err := url.Parse(target)
	if err != nil {
		return 1
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil && ip.To4() != nil && ip.IsLoopback() {
		return 8
	}
	if u.Hostname() == "localhost" {
		return 8
	}
	return 1
}

// sources hands out local addresses round-robin; safe for concurrent use.
type sources struct {
	n    int // 0 or 1: no binding
	next atomic.Uint64
}

// addr is the next local address to dial from, nil to let the kernel
// choose.
func (s *sources) addr() *net.TCPAddr {
	if s.n <= 1 {
		return nil
	}
	i := s.next.Add(1) - 1
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%uint64(s.n)))}
}

func (s *sources) dialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d := net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	if a := s.addr(); a != nil {
		d.LocalAddr = a
	}
	c, err := d.DialContext(ctx, network, address)
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
		return nil, fmt.Errorf("%w: %w", ErrGeneratorFiles, err)
	}
	return c, err
}

// ErrGeneratorFiles is the generator's own open-file limit: each socket
// is a file, and a process here may hold at most its RLIMIT_NOFILE.
var ErrGeneratorFiles = errors.New("load: the generator ran out of file descriptors (its open-file limit); open fewer sockets per process (idle: --processes)")

// client is the HTTP client of a run: keep-alive connections from the
// source addresses, and a timeout per request.
func (s *sources) client(conns int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext:         s.dialContext,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     30 * time.Second,
		},
	}
}

// dialWS opens a WebSocket to url through hc (its dialer picks the source
// address). coder/websocket takes the connection over from the client: it
// never returns to hc's pool.
func dialWS(ctx context.Context, hc *http.Client, url string, hdr http.Header) (*websocket.Conn, error) {
	// The request timeout of hc applies to the handshake only.
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc, HTTPHeader: hdr})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(1 << 20)
	return c, nil
}
