// The side-by-side report: both systems' results as a table, the ratio of
// delivered msgs/s ChatPacket / Centrifugo (issue 8's target is ≥ 1.0),
// and a JSON of the whole run for RESULTS.md and later comparisons.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// comparison is one side-by-side run.
type comparison struct {
	Shape      shape             `json:"shape"`
	Meta       map[string]string `json:"meta,omitempty"`
	ChatPacket resultJSON        `json:"chatpacket"`
	Centrifugo resultJSON        `json:"centrifugo"`
	// DeliveredRatio and AckedRatio are ChatPacket's throughput over
	// Centrifugo's; 0 when Centrifugo's was 0.
	DeliveredRatio float64 `json:"delivered_ratio"`
	AckedRatio     float64 `json:"acked_ratio"`
}

type shape struct {
	Visitors int    `json:"visitors"`
	Agents   int    `json:"agents"`
	Rate     int    `json:"rate"`
	Duration string `json:"duration"`
}

// resultJSON is a Result with its rates worked out, for readers of the
// JSON who do not want to divide.
type resultJSON struct {
	Result
	AckedPerSecond     float64 `json:"acked_per_s"`
	DeliveredPerSecond float64 `json:"delivered_per_s"`
}

func newComparison(s shape, meta map[string]string, cp, cf Result) comparison {
	return comparison{
		Shape: s, Meta: meta,
		ChatPacket:     resultJSON{cp, cp.AckedPerSecond(), cp.DeliveredPerSecond()},
		Centrifugo:     resultJSON{cf, cf.AckedPerSecond(), cf.DeliveredPerSecond()},
		DeliveredRatio: ratio(cp.DeliveredPerSecond(), cf.DeliveredPerSecond()),
		AckedRatio:     ratio(cp.AckedPerSecond(), cf.AckedPerSecond()),
	}
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// writeTable prints the comparison for people.
func (c comparison) writeTable(w io.Writer) error {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }
	cpu := func(d time.Duration) string {
		if d == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	p := &errWriter{w: w}
	p.printf("# fan-out: %d visitors (publishers), %d agents (subscribers to all), %d msg/s offered for %s; expected deliveries %d/s\n",
		c.Shape.Visitors, c.Shape.Agents, c.Shape.Rate, c.Shape.Duration, c.Shape.Rate*c.Shape.Agents)
	p.printf("%-12s %9s %12s %8s %8s %8s %11s %11s %7s\n", "", "acked/s", "delivered/s", "p50 ms", "p99 ms", "p999 ms", "server CPU", "driver CPU", "errors")
	for _, r := range []resultJSON{c.ChatPacket, c.Centrifugo} {
		p.printf("%-12s %9.0f %12.0f %8s %8s %8s %11s %11s %7d\n", r.System, r.AckedPerSecond, r.DeliveredPerSecond,
			ms(r.P50), ms(r.P99), ms(r.P999), cpu(r.ServerCPU), cpu(r.DriverCPU), r.Errors)
	}
	p.printf("ChatPacket / Centrifugo: %.2f× the delivered msgs/s (acked: %.2f×)\n", c.DeliveredRatio, c.AckedRatio)
	for _, r := range []resultJSON{c.ChatPacket, c.Centrifugo} {
		if want := r.Sent * c.Shape.Agents; r.Delivered < want {
			p.printf("note: %s delivered %d of the %d frames its %d sent messages owed the agents (%.1f %%): it fell behind\n",
				r.System, r.Delivered, want, r.Sent, 100*float64(r.Delivered)/float64(max(want, 1)))
		}
		if r.Duplicates > 0 || r.Reordered > 0 {
			p.printf("note: %s's agents got %d duplicate and %d out-of-order frames\n", r.System, r.Duplicates, r.Reordered)
		}
		if r.Dropped > 0 {
			p.printf("note: %s dropped %d connections during the load; the first: %s\n", r.System, r.Dropped, r.FirstDrop)
		}
	}
	return p.err
}

func (c comparison) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(c); err != nil {
		return fmt.Errorf("write the comparison's JSON: %w", err)
	}
	return nil
}

// errWriter keeps the first write error, so a table is a list of printfs.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}
