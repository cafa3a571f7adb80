package raftmux

import (
	"encoding/binary"
	"errors"
	"fmt"
)

const (
	// headerMagic opens every multiplexed connection. It lies outside raft's
	// RPC type bytes (0..4), so a plain raft transport pointed at a Mux by
	// mistake is refused at once rather than misrouted.
	headerMagic byte = 0xC4
	// headerVersion lets a later format be told apart from this one.
	headerVersion byte = 1
	// headerLen is magic, version and a big-endian uint16 shard.
	headerLen = 4
)

var (
	errBadMagic   = errors.New("raftmux: bad header magic")
	errBadVersion = errors.New("raftmux: unsupported header version")
)

// appendHeader appends the header that binds a connection to shard.
func appendHeader(b []byte, shard uint16) []byte {
	b = append(b, headerMagic, headerVersion)
	return binary.BigEndian.AppendUint16(b, shard)
}

// parseHeader returns the shard a header names.
func parseHeader(h [headerLen]byte) (uint16, error) {
	if h[0] != headerMagic {
		return 0, fmt.Errorf("%w: 0x%02x", errBadMagic, h[0])
	}
	if h[1] != headerVersion {
		return 0, fmt.Errorf("%w: %d", errBadVersion, h[1])
	}
	return binary.BigEndian.Uint16(h[2:]), nil
}
