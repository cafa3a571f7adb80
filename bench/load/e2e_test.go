package load

import (
	"context"
	"errors"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/gateway"
	"github.com/chatpacket/chatpacket/actors/nodetest"
	"github.com/chatpacket/chatpacket/transport"
	"github.com/chatpacket/chatpacket/transport/mail"
)

// node starts a real node in this process (Pebble in a temp dir, the
// cluster on loopback, the HTTP API on 127.0.0.1:0) without the widget
// message limits, and returns its base URL.
func node(t *testing.T) string {
	t.Helper()
	n := nodetest.Start(t)
	srv := transport.NewServer("127.0.0.1:0", nodetest.Quiet)
	gw := gateway.New(n.Cluster, nodetest.Quiet)
	api := &transport.API{Cluster: n.Cluster, Machine: n.Machine, Gateway: gw, Log: nodetest.Quiet, Now: time.Now,
		Mail: &mail.Outbox{Dir: t.TempDir(), From: "ChatPacket <noreply@chatpacket.test>"}, MessageLimits: transport.MessageLimits{Off: true}}
	api.Register(srv)
	srv.SetReady(true)
	ln, err := srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() { // before the node's cleanup
		api.CloseSockets()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
		api.WaitMail()
		gw.Close()
	})
	return "http://" + ln.Addr().String()
}

// The scenarios against a real node: every message acked and delivered,
// the closed loop paced by acks, idle sockets seen by the node.
func TestScenariosEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a node and loads it for a few seconds")
	}
	base := node(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("fanout", func(t *testing.T) {
		res, err := Run(ctx, Config{Target: base, Visitors: 4, Agents: 2, Rate: 100, Duration: time.Second, Grace: 10 * time.Second, SourceAddrs: 4})
		if err != nil {
			t.Fatal(err)
		}
		if res.Sent != 100 || res.Acked != 100 || res.Delivered != 200 || res.Undelivered != 0 || res.Unacked != 0 || res.Errors != 0 {
			t.Fatalf("Run = %v; want 100 sent and acked, 200 delivered, nothing missing", res)
		}
		if res.P50 <= 0 || res.P99 < res.P50 || res.AckP50 <= 0 || len(res.Series) == 0 {
			t.Errorf("latencies p50 %v p99 %v ack p50 %v, %d seconds of series; want measured", res.P50, res.P99, res.AckP50, len(res.Series))
		}
		var sent, acked, delivered int
		for _, s := range res.Series {
			sent, acked, delivered = sent+s.Sent, acked+s.Acked, delivered+s.Delivered
		}
		if sent != res.Sent || acked != res.Acked || delivered != res.Delivered {
			t.Errorf("series sum to %d sent, %d acked, %d delivered; want the totals %v", sent, acked, delivered, res)
		}
	})

	t.Run("closed loop", func(t *testing.T) {
		res, err := Run(ctx, Config{Target: base, Targets: []string{base, base}, Visitors: 4, Window: 2, Duration: time.Second, Grace: 10 * time.Second, SourceAddrs: 2})
		if err != nil {
			t.Fatal(err)
		}
		if res.Sent == 0 || res.Acked != res.Sent || res.Unacked != 0 || res.Errors != 0 || res.Delivered != 0 {
			t.Fatalf("Run = %v; want every message sent acked, none delivered (no agents)", res)
		}
		if res.AckP50 <= 0 {
			t.Errorf("ack p50 = %v; want measured", res.AckP50)
		}
	})

	t.Run("idle", func(t *testing.T) {
		res, err := Idle(ctx, IdleConfig{Target: base, Connections: 40, Processes: 1, SourceAddrs: 4})
		if err != nil {
			t.Fatal(err)
		}
		if res.ServerSockets != 40 || res.RSSAfter == 0 || res.RSSBefore == 0 || res.MaxFDs == 0 {
			t.Fatalf("Idle = %v; want the node to count 40 widget sockets, and its memory read", res)
		}
		if len(res.Series) > 0 && res.Series[len(res.Series)-1].Open != 40 {
			t.Errorf("last second of the series has %d open; want 40", res.Series[len(res.Series)-1].Open)
		}
	})

	t.Run("idle beyond the node's open files", func(t *testing.T) {
		var lim syscall.Rlimit
		if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil || lim.Cur > 500_000 {
			t.Skip("this process may open so many files that a million sockets would be tried")
		}
		_, err := Idle(ctx, IdleConfig{Target: base, Connections: 1_000_000, Processes: 1})
		if !errors.Is(err, ErrServerFiles) && !errors.Is(err, ErrGeneratorFiles) {
			t.Errorf("Idle(1,000,000 sockets) = %v; want the open-file limit's error", err)
		}
	})
}
