package raftmux

import (
	"errors"
	"testing"
)

func TestHeaderRoundTrip(t *testing.T) {
	for _, shard := range []uint16{0, 1, 63, 256, 65535} {
		var h [headerLen]byte
		copy(h[:], appendHeader(nil, shard))
		got, err := parseHeader(h)
		if err != nil || got != shard {
			t.Errorf("parseHeader(appendHeader(%d)) = %d, %v; want %d, nil", shard, got, err, shard)
		}
	}
}

func TestHeaderRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    [headerLen]byte
		want error
	}{
		{"raft rpc byte", [headerLen]byte{0, 0, 0, 1}, errBadMagic},
		{"http", [headerLen]byte{'G', 'E', 'T', ' '}, errBadMagic},
		{"future version", [headerLen]byte{headerMagic, headerVersion + 1, 0, 1}, errBadVersion},
	} {
		if _, err := parseHeader(tc.h); !errors.Is(err, tc.want) {
			t.Errorf("%s: parseHeader(% x) = %v; want %v", tc.name, tc.h, err, tc.want)
		}
	}
}
