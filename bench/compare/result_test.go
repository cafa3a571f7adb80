// Tests of the aggregation: percentiles as bench/load picks them, the
// summary line both ways, the ratio.
package main

import (
	"strings"
	"testing"
	"time"
)

func TestPercentiles(t *testing.T) {
	// 1000 samples of 1..1000 ms, shuffled: bench/load's indexing picks
	// the element at n·q, rounded down, of the sorted samples.
	lat := make([]time.Duration, 1000)
	for i := range lat {
		lat[i] = time.Duration((i*7919)%1000+1) * time.Millisecond
	}
	p50, p99, p999 := percentiles(lat)
	if p50 != 501*time.Millisecond || p99 != 991*time.Millisecond || p999 != 1000*time.Millisecond {
		t.Errorf("percentiles(1..1000 ms) = %v, %v, %v; want 501ms, 991ms, 1s", p50, p99, p999)
	}
	if a, b, c := percentiles(nil); a != 0 || b != 0 || c != 0 {
		t.Errorf("percentiles(nil) = %v, %v, %v; want zeros", a, b, c)
	}
	if a, b, c := percentiles([]time.Duration{3 * time.Millisecond}); a != 3*time.Millisecond || b != a || c != a {
		t.Errorf("percentiles(3ms) = %v, %v, %v; want 3ms thrice", a, b, c)
	}
}

func TestSummaryRoundTrip(t *testing.T) {
	r := Result{System: "centrifugo", Sent: 20000, Acked: 19990, Delivered: 79960, Errors: 1,
		Duplicates: 2, Reordered: 3, Elapsed: 10001 * time.Millisecond,
		P50: 1180 * time.Microsecond, P99: 11300 * time.Microsecond, P999: 2500 * time.Millisecond}
	got, err := parseSummary("centrifugo", r.String())
	if err != nil {
		t.Fatalf("parseSummary(%q): %v", r.String(), err)
	}
	if got != r {
		t.Errorf("parseSummary(String()) = %+v; want %+v", got, r)
	}
}

func TestParseChatPacketSummary(t *testing.T) {
	// A line as `chatpacket bench` printed it (bench/RESULTS.md's
	// 6,000 msg/s run), with the rate-limit note at its end.
	line := "sent 60000, acked 55400 (5540/s), delivered to agents 200000 (to each agent socket), errors 3 in 10.002s; delivery latency p50 1.5s p99 3.7s p999 3.9s; 3 of the errors were the node's widget message limits: start it with --widget-message-limits=false for a load"
	r, err := parseSummary("chatpacket", line)
	if err != nil {
		t.Fatal(err)
	}
	want := Result{System: "chatpacket", Sent: 60000, Acked: 55400, Delivered: 200000, Errors: 3,
		Elapsed: 10002 * time.Millisecond, P50: 1500 * time.Millisecond, P99: 3700 * time.Millisecond, P999: 3900 * time.Millisecond}
	if r != want {
		t.Errorf("parseSummary = %+v; want %+v", r, want)
	}
	if got := r.DeliveredPerSecond(); got < 19996 || got > 19997 {
		t.Errorf("DeliveredPerSecond = %.1f; want 200000/10.002 s", got)
	}
	if _, err := parseSummary("chatpacket", "load: target must be an http:// or https:// URL"); err == nil {
		t.Error("parseSummary of an error line succeeded; want an error")
	}
}

func TestComparisonTable(t *testing.T) {
	cp := Result{System: "chatpacket", Sent: 100, Acked: 100, Delivered: 300, Elapsed: time.Second}
	cf := Result{System: "centrifugo", Sent: 100, Acked: 100, Delivered: 400, Elapsed: time.Second}
	c := newComparison(shape{Visitors: 10, Agents: 4, Rate: 100, Duration: "1s"}, nil, cp, cf)
	if c.DeliveredRatio != 0.75 || c.AckedRatio != 1 {
		t.Errorf("ratios = %v delivered, %v acked; want 0.75, 1", c.DeliveredRatio, c.AckedRatio)
	}
	var b strings.Builder
	if err := c.writeTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"0.75× the delivered msgs/s", "chatpacket delivered 300 of the 400 frames"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "centrifugo delivered") {
		t.Errorf("table says centrifugo fell behind, which delivered all:\n%s", b.String())
	}
}

func TestLines(t *testing.T) {
	var got []string
	for l := range lines([]byte("{\"id\":1}\n\n{}\n{\"push\":{}}")) {
		got = append(got, string(l))
	}
	if strings.Join(got, "|") != `{"id":1}|{}|{"push":{}}` {
		t.Errorf("lines = %q", got)
	}
}
