// The measures of one run, common to both systems, and the summary line
// they travel in. ChatPacket's `chatpacket bench` prints that line on
// stdout (bench/load's Result.String); the Centrifugo driver prints the
// same line, so that both runs read alike, and parseSummary turns either
// back into a Result.
package main

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"time"
)

// Result is one system's run. The definitions are bench/load's: Sent are
// messages written to a publisher's (visitor's) socket; Acked, the
// server's acknowledgements of them; Delivered, message frames received by
// subscriber (agent) sockets, R × M when everything gets through; Elapsed,
// the sending time (the last deliveries may still arrive in a grace of up
// to 2 s after it, and count); latencies run from the send to a
// subscriber's receipt.
type Result struct {
	System    string `json:"system"`
	Sent      int    `json:"sent"`
	Acked     int    `json:"acked"`
	Delivered int    `json:"delivered"`
	Errors    int    `json:"errors"`
	// Duplicates and Reordered are frames a subscriber socket got twice,
	// or after a later message of the same channel (conversation).
	Duplicates int `json:"duplicates"`
	Reordered  int `json:"reordered"`
	// Dropped are connections the server ended during the load, and
	// FirstDrop how the first ended. Only the Centrifugo driver sees them:
	// bench/load stops reading a socket that ends, silently.
	Dropped   int           `json:"dropped"`
	FirstDrop string        `json:"first_drop,omitempty"`
	Elapsed   time.Duration `json:"elapsed_ns"`
	P50       time.Duration `json:"p50_ns"`
	P99       time.Duration `json:"p99_ns"`
	P999      time.Duration `json:"p999_ns"`
	// ServerCPU and DriverCPU are CPU time (user + system) of the server
	// process and of the load driver over the whole run (setup included);
	// run.sh measures them, zero when unknown.
	ServerCPU time.Duration `json:"server_cpu_ns"`
	DriverCPU time.Duration `json:"driver_cpu_ns"`
}

// AckedPerSecond is the throughput of acknowledged publishes.
func (r Result) AckedPerSecond() float64 { return perSecond(r.Acked, r.Elapsed) }

// DeliveredPerSecond is the throughput of frames received by subscribers.
func (r Result) DeliveredPerSecond() float64 { return perSecond(r.Delivered, r.Elapsed) }

func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// String is the summary line, in bench/load's words and order.
func (r Result) String() string {
	s := fmt.Sprintf("sent %d, acked %d (%.0f/s), delivered to agents %d (to each agent socket), errors %d in %v; delivery latency p50 %v p99 %v p999 %v",
		r.Sent, r.Acked, r.AckedPerSecond(), r.Delivered, r.Errors, r.Elapsed.Round(time.Millisecond),
		r.P50.Round(10*time.Microsecond), r.P99.Round(10*time.Microsecond), r.P999.Round(10*time.Microsecond))
	if r.Duplicates > 0 || r.Reordered > 0 {
		s += fmt.Sprintf("; agent sockets got %d duplicate and %d out-of-order message frames", r.Duplicates, r.Reordered)
	}
	if r.Dropped > 0 {
		s += fmt.Sprintf("; the server dropped %d connections, the first: %s", r.Dropped, r.FirstDrop)
	}
	return s
}

// percentiles sorts lat in place and picks p50, p99 and p999 the way
// bench/load does (the element at n·q, rounded down), so that both
// systems' figures mean the same; zero for no samples.
func percentiles(lat []time.Duration) (p50, p99, p999 time.Duration) {
	if len(lat) == 0 {
		return 0, 0, 0
	}
	slices.Sort(lat)
	n := len(lat)
	return lat[n/2], lat[n*99/100], lat[n*999/1000]
}

var summaryLine = regexp.MustCompile(`sent (\d+), acked (\d+) \([0-9.]+/s\), delivered to agents (\d+) \(to each agent socket\), errors (\d+) in (\S+); delivery latency p50 (\S+) p99 (\S+) p999 (\S+?)(?:;|$)(?:.* got (\d+) duplicate and (\d+) out-of-order)?`)

// parseSummary reads a summary line back. Anything else on the line after
// the figures (notes bench/load may add) is ignored; a line that does not
// hold them is an error, so that a changed format fails loudly rather
// than compares zeros.
func parseSummary(system, line string) (Result, error) {
	m := summaryLine.FindStringSubmatch(line)
	if m == nil {
		return Result{}, fmt.Errorf("parse %s summary: no figures in %q", system, line)
	}
	r := Result{System: system}
	var err error
	ints := []*int{&r.Sent, &r.Acked, &r.Delivered, &r.Errors}
	for i, p := range ints {
		if *p, err = strconv.Atoi(m[1+i]); err != nil {
			return Result{}, fmt.Errorf("parse %s summary: %w", system, err)
		}
	}
	durs := []*time.Duration{&r.Elapsed, &r.P50, &r.P99, &r.P999}
	for i, p := range durs {
		if *p, err = time.ParseDuration(m[5+i]); err != nil {
			return Result{}, fmt.Errorf("parse %s summary: %w", system, err)
		}
	}
	if m[9] != "" {
		r.Duplicates, _ = strconv.Atoi(m[9]) // \d+: cannot fail
		r.Reordered, _ = strconv.Atoi(m[10])
	}
	return r, nil
}
