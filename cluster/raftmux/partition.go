package raftmux

import (
	"errors"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
)

// ErrPartitioned is returned by Layer.Dial to an address the Mux was told
// to cut off by Partition.
var ErrPartitioned = errors.New("raftmux: address partitioned")

// partition is the set of raft addresses a Mux refuses to reach. The set
// is copy-on-write behind an atomic pointer so that Dial, which checks it
// on every connection raft opens, pays one atomic load and no lock; nil
// means no partition, the normal case.
type partition struct {
	addrs atomic.Pointer[map[string]struct{}]
	// mu orders Partition and Heal, which replace the set; it is a leaf,
	// never held while taking Mux.mu or Layer.mu.
	mu sync.Mutex
}

// has reports whether address is cut off.
func (p *partition) has(address string) bool {
	s := p.addrs.Load()
	if s == nil {
		return false
	}
	_, ok := (*s)[address]
	return ok
}

// update replaces the set with f applied to a copy of it.
func (p *partition) update(f func(map[string]struct{})) {
	p.mu.Lock()
	defer p.mu.Unlock()
	next := make(map[string]struct{})
	if s := p.addrs.Load(); s != nil {
		maps.Copy(next, *s)
	}
	f(next)
	if len(next) == 0 {
		p.addrs.Store(nil)
		return
	}
	p.addrs.Store(&next)
}

// Partition makes this node unable to reach the given raft addresses, on
// every shard: it closes every connection its layers dialed to them, and
// until Heal, Dial to them fails at once with ErrPartitioned. It is for
// tests and operators' fault drills (cutting a node off without touching
// the network), not for normal operation. Addresses are compared as raft
// names them (raft.ServerAddress, the peer's Mux.Addr().String()), not
// resolved.
//
// It cuts this node's dials only. Raft sends each RPC on a connection its
// sender dialed and reads the reply on the same one, so after
// a.Partition(b) node a can no longer send to b, but b can still send to a
// over the connections b dials; a full cut takes b.Partition(a) too, as
// raft's own test harness disconnects both transports. Connections the
// peer dialed to this node are not closed: their remote address is an
// ephemeral port that names no raft address.
//
// A Dial racing Partition either returns ErrPartitioned or returns a
// connection that Partition closes: none to a cut-off address survives.
// Partition adds to the set already cut off; it is safe for concurrent
// use, also with Heal.
func (m *Mux) Partition(addrs ...string) {
	if len(addrs) == 0 {
		return
	}
	m.part.update(func(s map[string]struct{}) {
		for _, a := range addrs {
			s[a] = struct{}{}
		}
	})
	// The set is stored before the sweep: a dial that registers its
	// connection after the sweep saw a layer then sees the new set (Dial
	// checks again after tracking), and one before is swept.
	m.mu.Lock()
	layers := slices.Collect(maps.Values(m.mu.layers))
	m.mu.Unlock()
	for _, l := range layers {
		l.closeDialed(m.part.has)
	}
}

// Heal lets this node reach the given addresses again, or every address
// when called without any. Raft redials on its next RPC; a leader's log
// replication to a peer waits out a back-off that doubles from 10 ms with
// each consecutive failure, to about 10 s, so after a long partition a
// follower's catch-up can lag the heal by that much (heartbeats back off
// to half the heartbeat timeout at most).
func (m *Mux) Heal(addrs ...string) {
	m.part.update(func(s map[string]struct{}) {
		if len(addrs) == 0 {
			clear(s)
			return
		}
		for _, a := range addrs {
			delete(s, a)
		}
	})
}

// Partitioned returns the addresses cut off by Partition, sorted; nil when
// none is.
func (m *Mux) Partitioned() []string {
	s := m.part.addrs.Load()
	if s == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(*s))
}

// closeDialed closes the connections this layer dialed to an address for
// which cut is true.
func (l *Layer) closeDialed(cut func(string) bool) {
	var doomed []*conn
	l.mu.Lock()
	for c := range l.mu.conns {
		if c.dialed != "" && cut(c.dialed) {
			doomed = append(doomed, c)
		}
	}
	l.mu.Unlock()
	for _, c := range doomed {
		_ = c.Close()
	}
}
