package load

import (
	"testing"
	"time"
)

func TestSeriesBucketsBySecond(t *testing.T) {
	start := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	s := newSeries(start)
	at := func(d time.Duration) time.Time { return start.Add(d) }
	s.sent(at(-time.Millisecond)) // before the start: the first second
	s.sent(at(100 * time.Millisecond))
	s.acked(at(900*time.Millisecond), 2*time.Millisecond)
	s.acked(at(999*time.Millisecond), -1) // send time unknown: counted, no latency
	s.sent(at(1 * time.Second))
	s.failed(at(1500 * time.Millisecond))
	s.delivered(at(2500*time.Millisecond), 10*time.Millisecond)
	s.delivered(at(2600*time.Millisecond), 30*time.Millisecond)

	got := s.seconds()
	want := []Second{
		{T: 0, Sent: 2, Acked: 2, AckP50: 2, AckP99: 2},
		{T: 1, Sent: 1, Errors: 1},
		{T: 2, Delivered: 2, DelivP50: 10, DelivP99: 30},
	}
	if len(got) != len(want) {
		t.Fatalf("seconds() = %+v; want %d seconds", got, len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		// Percentiles are a histogram's: within 1/32.
		for _, p := range [][2]float64{{g.AckP50, w.AckP50}, {g.AckP99, w.AckP99}, {g.DelivP50, w.DelivP50}, {g.DelivP99, w.DelivP99}} {
			if p[0] < p[1]*31/32 || p[0] > p[1]*33/32 {
				t.Errorf("second %d = %+v; want %+v", i, g, w)
			}
		}
		g.AckP50, g.AckP99, g.DelivP50, g.DelivP99 = 0, 0, 0, 0
		w.AckP50, w.AckP99, w.DelivP50, w.DelivP99 = 0, 0, 0, 0
		if g != w {
			t.Errorf("second %d = %+v; want %+v", i, got[i], want[i])
		}
	}
	ack, deliv := s.totals()
	if ack.n != 1 || deliv.n != 2 {
		t.Errorf("totals count %d ack and %d delivery latencies; want 1 and 2", ack.n, deliv.n)
	}
}
