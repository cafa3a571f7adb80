package raftmux

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// drain accepts on l and closes each connection at once, until l closes.
func drain(t testing.TB, l *Layer) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = l.Close(); wg.Wait() })
}

// dialedTo counts the connections m's layers dialed to address and still
// hold.
func dialedTo(m *Mux, address string) int {
	m.mu.Lock()
	layers := make([]*Layer, 0, len(m.mu.layers))
	for _, l := range m.mu.layers {
		layers = append(layers, l)
	}
	m.mu.Unlock()
	n := 0
	for _, l := range layers {
		l.mu.Lock()
		for c := range l.mu.conns {
			if c.dialed == address {
				n++
			}
		}
		l.mu.Unlock()
	}
	return n
}

// refusedFast fails t unless Dial to address fails with ErrPartitioned
// without waiting on the network.
func refusedFast(t *testing.T, l *Layer, address raft.ServerAddress) {
	t.Helper()
	start := time.Now()
	c, err := l.Dial(address, time.Second)
	if err == nil {
		_ = c.Close()
		t.Fatalf("shard %d: Dial(%s) succeeded while partitioned", l.Shard(), address)
	}
	if !errors.Is(err, ErrPartitioned) {
		t.Errorf("shard %d: Dial(%s) = %v; want ErrPartitioned", l.Shard(), address, err)
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("shard %d: refused Dial took %v; want it at once", l.Shard(), d)
	}
}

// TestPartitionClosesAndRefusesDials cuts a node off from one of two
// peers: its connections to that peer close on every shard, new dials to
// it fail at once (also on a shard registered after the cut), the other
// peer is untouched, and Heal restores dialing.
func TestPartitionClosesAndRefusesDials(t *testing.T) {
	checkLeaks(t)
	client := listen(t, testConfig())
	far := listen(t, testConfig())
	near := listen(t, testConfig())
	farAddr, nearAddr := addrOf(far), addrOf(near)

	out1, out2 := layer(t, client, 1), layer(t, client, 2)
	far1, far2, near1 := layer(t, far, 1), layer(t, far, 2), layer(t, near, 1)
	dial := func(l *Layer, a raft.ServerAddress) net.Conn {
		t.Helper()
		c, err := l.Dial(a, time.Second)
		if err != nil {
			t.Fatalf("shard %d: Dial(%s) = %v", l.Shard(), a, err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	toFar1, toFar2, toNear := dial(out1, farAddr), dial(out2, farAddr), dial(out1, nearAddr)
	atFar1, atFar2 := acceptWithin(t, far1, time.Second), acceptWithin(t, far2, time.Second)
	atNear := acceptWithin(t, near1, time.Second)

	client.Partition(string(farAddr))
	if got := client.Partitioned(); !slices.Equal(got, []string{string(farAddr)}) {
		t.Errorf("Partitioned() = %v; want [%s]", got, farAddr)
	}

	// Both shards' connections to far are closed at our end (raft's
	// pending RPCs on them fail) and so at far's (its handlers end).
	for i, c := range []net.Conn{toFar1, toFar2} {
		if _, err := c.Write([]byte{1}); !errors.Is(err, net.ErrClosed) {
			t.Errorf("conn %d to far: Write after Partition = %v; want net.ErrClosed", i+1, err)
		}
	}
	closedWithin(t, atFar1, time.Second)
	closedWithin(t, atFar2, time.Second)
	if n := dialedTo(client, string(farAddr)); n != 0 {
		t.Errorf("client still holds %d connections to far", n)
	}

	refusedFast(t, out1, farAddr)
	refusedFast(t, out2, farAddr)
	out3 := layer(t, client, 3)
	layer(t, far, 3)
	refusedFast(t, out3, farAddr)

	// near is not partitioned: the old connection carries bytes and new
	// dials work.
	if _, err := toNear.Write([]byte{42}); err != nil {
		t.Fatalf("Write to near = %v", err)
	}
	_ = atNear.SetReadDeadline(time.Now().Add(time.Second))
	var b [1]byte
	if _, err := atNear.Read(b[:]); err != nil || b[0] != 42 {
		t.Errorf("near Read = %v, %v; want 42", b[0], err)
	}
	dial(out1, nearAddr)
	acceptWithin(t, near1, time.Second)

	client.Heal(string(farAddr))
	if got := client.Partitioned(); got != nil {
		t.Errorf("Partitioned() after Heal = %v; want nil", got)
	}
	dial(out1, farAddr)
	acceptWithin(t, far1, time.Second)

	// Heal without arguments heals everything.
	client.Partition(string(farAddr), string(nearAddr))
	refusedFast(t, out1, nearAddr)
	client.Heal()
	if got := client.Partitioned(); got != nil {
		t.Errorf("Partitioned() after Heal() = %v; want nil", got)
	}
	dial(out1, nearAddr)
	dial(out2, farAddr)
	acceptWithin(t, near1, time.Second)
	acceptWithin(t, far2, time.Second)
}

// TestPartitionRacesDials dials from many goroutines while the partition
// is switched on and off: after the last Partition returns and the dials
// in flight end, no connection to the cut-off address is left, and every
// dial that started after it was refused. Run it under -race.
func TestPartitionRacesDials(t *testing.T) {
	checkLeaks(t)
	const dialers = 8
	client := listen(t, testConfig())
	server := listen(t, testConfig())
	addr := addrOf(server)
	var outs []*Layer
	for s := range uint16(4) {
		outs = append(outs, layer(t, client, s))
		drain(t, layer(t, server, s))
	}

	var (
		cut      atomic.Bool // set once the last Partition has returned
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		mu       sync.Mutex
		dialed   []net.Conn
		ok, lost atomic.Int64
		errs     = make(chan error, dialers)
	)
	for i := range dialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := outs[i%len(outs)]
			for {
				select {
				case <-stop:
					return
				default:
				}
				after := cut.Load()
				c, err := l.Dial(addr, time.Second)
				switch {
				case err == nil && after:
					_ = c.Close()
					errs <- fmt.Errorf("shard %d: Dial succeeded after the partition", l.Shard())
					return
				case err == nil:
					ok.Add(1)
					mu.Lock()
					dialed = append(dialed, c)
					mu.Unlock()
				case errors.Is(err, ErrPartitioned):
					lost.Add(1)
				default:
					errs <- fmt.Errorf("shard %d: Dial = %w", l.Shard(), err)
					return
				}
				time.Sleep(time.Millisecond) // a few hundred sockets, not thousands
			}
		}()
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range dialed {
			_ = c.Close()
		}
	})

	for range 50 {
		client.Partition(string(addr))
		time.Sleep(time.Millisecond)
		client.Heal(string(addr))
		time.Sleep(time.Millisecond)
	}
	client.Partition(string(addr))
	cut.Store(true)
	time.Sleep(20 * time.Millisecond) // let dials started after the cut be refused
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	if n := dialedTo(client, string(addr)); n != 0 {
		t.Errorf("%d connections to the partitioned address survived", n)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, c := range dialed {
		if _, err := c.Write([]byte{1}); err == nil {
			t.Errorf("connection %d of %d still writable after Partition", i, len(dialed))
			break
		}
	}
	t.Logf("%d dials connected, %d refused across 50 partition/heal cycles", ok.Load(), lost.Load())
	if ok.Load() == 0 || lost.Load() == 0 {
		t.Errorf("dials connected %d, refused %d; want some of each for the test to mean anything", ok.Load(), lost.Load())
	}
}

// TestPartitionIsolatesRaftLeader runs one raft group on three Muxes and
// cuts its leader off from both peers, both directions: the other two
// elect a leader and commit without it, and after Heal it catches up.
func TestPartitionIsolatesRaftLeader(t *testing.T) {
	checkLeaks(t)
	muxes := make([]*Mux, 3)
	transports := make([]raft.Transport, 3)
	for i := range muxes {
		muxes[i] = listen(t, testConfig())
		tr, err := muxes[i].Transport(1, 2, time.Second, quiet)
		if err != nil {
			t.Fatalf("node %d: Transport = %v", i, err)
		}
		transports[i] = tr
	}
	g := startGroup(t, transports)
	old := g.leader(t, g.members, 10*time.Second)
	g.apply(t, g.members, 0, 50, 10*time.Second)
	g.waitApplied(t, g.members, 50, 10*time.Second)

	var isolated *Mux
	var others []string
	for i, m := range g.members {
		if m == old {
			isolated = muxes[i]
		} else {
			others = append(others, string(addrOf(muxes[i])))
		}
	}
	start := time.Now()
	isolated.Partition(others...)
	for _, m := range muxes {
		if m != isolated {
			m.Partition(string(addrOf(isolated)))
		}
	}
	// Whatever the isolated leader appends now cannot commit.
	f := old.raft.Apply([]byte("12345678"), 500*time.Millisecond)
	rest := without(g.members, old.id)
	lead := g.leader(t, rest, 10*time.Second)
	g.apply(t, rest, 50, 100, 10*time.Second)
	t.Logf("%s cut off: %s leads and committed 50 more on the other two %v later",
		old.id, lead.id, time.Since(start).Round(time.Millisecond))
	if err := f.Error(); err == nil {
		t.Errorf("Apply on the isolated leader succeeded")
	}
	if err := old.fsm.has(100); err == nil {
		t.Errorf("%s applied commands committed while it was cut off", old.id)
	}

	start = time.Now()
	for _, m := range muxes {
		m.Heal()
	}
	g.waitApplied(t, g.members, 100, 15*time.Second)
	t.Logf("healed: %s applied all 100 commands %v later", old.id, time.Since(start).Round(time.Millisecond))
}

// BenchmarkPartitionCheck is what Partition adds to every Dial: one
// atomic load when nothing is partitioned, and a map lookup when
// something is; "dial" is a whole Dial over loopback, for scale.
func BenchmarkPartitionCheck(b *testing.B) {
	b.Run("dial", func(b *testing.B) {
		client, err := ListenConfig("127.0.0.1:0", Config{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = client.Close() })
		server, err := ListenConfig("127.0.0.1:0", Config{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = server.Close() })
		out, err := client.Layer(1)
		if err != nil {
			b.Fatal(err)
		}
		in, err := server.Layer(1)
		if err != nil {
			b.Fatal(err)
		}
		drain(b, in)
		for b.Loop() {
			c, err := out.Dial(addrOf(server), time.Second)
			if err != nil {
				b.Fatalf("Dial = %v", err)
			}
			_ = c.Close()
		}
	})
	var p partition
	b.Run("none", func(b *testing.B) {
		for b.Loop() {
			if p.has("127.0.0.1:7001") {
				b.Fatal("partitioned")
			}
		}
	})
	p.update(func(s map[string]struct{}) { s["127.0.0.1:7002"] = struct{}{} })
	b.Run("other", func(b *testing.B) {
		for b.Loop() {
			if p.has("127.0.0.1:7001") {
				b.Fatal("partitioned")
			}
		}
	})
}
