package raftmux

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// conn is a connection a Layer handed to raft. It lets the layer close it
// on shutdown, and it hides that close from raft's reader.
type conn struct {
	net.Conn
	layer *Layer
	// dialed is the raft address this layer dialed, so Mux.Partition can
	// find the connection; empty for an accepted one.
	dialed string

	// byLayer is set before the layer closes the socket, so a read that
	// fails because of it reports io.EOF: raft's connection handler ends
	// quietly on io.EOF but logs any other error at Error, which would put
	// one false alarm per connection into every shard shutdown.
	byLayer   atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && c.byLayer.Load() {
		err = io.EOF
	}
	return n, err
}

// Close closes the socket once and drops it from its layer.
func (c *conn) Close() error {
	c.closeOnce.Do(func() {
		c.layer.forget(c)
		c.closeErr = c.Conn.Close()
	})
	return c.closeErr
}

// closeByLayer is Close for a layer that has already dropped c.
func (c *conn) closeByLayer() {
	c.byLayer.Store(true)
	c.closeOnce.Do(func() { c.closeErr = c.Conn.Close() })
}
