package raftmux

import (
	"errors"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Config tunes a Mux. The zero value of a field means its default; start
// from DefaultConfig to see them.
type Config struct {
	// HandshakeTimeout bounds how long an accepted connection may take to
	// send its 4-byte header. A real peer sends it right after connecting,
	// so this only matters for silent or broken peers, whose goroutine and
	// socket it frees. Too short drops real peers on a congested WAN link;
	// they redial. Default 5 s.
	HandshakeTimeout time.Duration

	// HandoffTimeout bounds how long a connection with a valid header waits
	// for its shard's raft to Accept it. Raft's accept loop takes
	// connections as they come, so a wait means the shard's transport is
	// not running; the connection is then closed and the peer redials.
	// Default 5 s.
	HandoffTimeout time.Duration

	// MaxHandshakes caps the connections between Accept and handoff at any
	// moment (each holds a goroutine). Beyond it new connections are closed
	// at once, which bounds what a flood of idle sockets can cost. A node
	// reconnecting all its shards opens about shards*peers*2 connections in
	// a burst, well under the default of 1024.
	MaxHandshakes int

	// Advertise is the address raft gives its peers for this node. Nil
	// means the listener's own address, which must then not be unspecified
	// (0.0.0.0 or [::]): peers could not dial it.
	Advertise net.Addr

	// Logger receives the Mux's own rare events (dropped handshakes at
	// Debug, listener errors at Warn). Nil means no logging.
	Logger hclog.Logger
}

// DefaultConfig returns the defaults used by Listen.
func DefaultConfig() Config {
	return Config{
		HandshakeTimeout: 5 * time.Second,
		HandoffTimeout:   5 * time.Second,
		MaxHandshakes:    1024,
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = d.HandshakeTimeout
	}
	if c.HandoffTimeout == 0 {
		c.HandoffTimeout = d.HandoffTimeout
	}
	if c.MaxHandshakes == 0 {
		c.MaxHandshakes = d.MaxHandshakes
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	return c
}

// validate reports settings that cannot work.
func (c Config) validate() error {
	if c.HandshakeTimeout < 0 || c.HandoffTimeout < 0 {
		return errors.New("raftmux: negative timeout")
	}
	if c.MaxHandshakes < 0 {
		return errors.New("raftmux: negative MaxHandshakes")
	}
	return nil
}
