package load

// The per-second time series of a run: what was sent, acknowledged and
// delivered in each second since the load began, with the latency
// percentiles of that second. The charts and result.json are drawn from it,
// and the run's overall percentiles come from merging its seconds.

import (
	"sync"
	"time"
)

// Second is one second of a run, as result.json carries it. Latencies are
// in milliseconds; a percentile is 0 when nothing was measured that second.
type Second struct {
	T         int     `json:"t"` // seconds since the load began: this is [T, T+1)
	Sent      int     `json:"sent"`
	Acked     int     `json:"acked"`
	Delivered int     `json:"delivered"`
	Errors    int     `json:"errors"`
	AckP50    float64 `json:"ack_p50_ms"`
	AckP99    float64 `json:"ack_p99_ms"`
	DelivP50  float64 `json:"delivery_p50_ms"`
	DelivP99  float64 `json:"delivery_p99_ms"`
}

// series records events from many goroutines into one-second buckets.
type series struct {
	start time.Time
	mu    struct {
		sync.Mutex
		secs []*bucket
	}
}

type bucket struct {
	sent, acked, delivered, errs int
	ack, deliv                   histogram
}

func newSeries(start time.Time) *series { return &series{start: start} }

// at returns the bucket of time t, creating the seconds up to it; s.mu is
// held. Events before the start count in the first second.
func (s *series) at(t time.Time) *bucket {
	i := max(int(t.Sub(s.start)/time.Second), 0)
	for len(s.mu.secs) <= i {
		s.mu.secs = append(s.mu.secs, &bucket{})
	}
	return s.mu.secs[i]
}

func (s *series) sent(t time.Time) {
	s.mu.Lock()
	s.at(t).sent++
	s.mu.Unlock()
}

func (s *series) failed(t time.Time) {
	s.mu.Lock()
	s.at(t).errs++
	s.mu.Unlock()
}

// acked counts an ack received at t; lat < 0 when its send time is unknown.
func (s *series) acked(t time.Time, lat time.Duration) {
	s.mu.Lock()
	b := s.at(t)
	b.acked++
	if lat >= 0 {
		b.ack.add(lat)
	}
	s.mu.Unlock()
}

func (s *series) delivered(t time.Time, lat time.Duration) {
	s.mu.Lock()
	b := s.at(t)
	b.delivered++
	b.deliv.add(lat)
	s.mu.Unlock()
}

// seconds returns the series so far.
func (s *series) seconds() []Second {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Second, len(s.mu.secs))
	for i, b := range s.mu.secs {
		out[i] = Second{T: i, Sent: b.sent, Acked: b.acked, Delivered: b.delivered, Errors: b.errs,
			AckP50: ms(b.ack.quantile(0.50)), AckP99: ms(b.ack.quantile(0.99)),
			DelivP50: ms(b.deliv.quantile(0.50)), DelivP99: ms(b.deliv.quantile(0.99))}
	}
	return out
}

// totals merges every second's latencies.
func (s *series) totals() (ack, deliv histogram) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.mu.secs {
		ack.merge(&b.ack)
		deliv.merge(&b.deliv)
	}
	return ack, deliv
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
