package load

// Reading a node's /metrics (Prometheus text format) for the few gauges a
// benchmark wants from the server's side: its resident memory, Go heap,
// goroutines, open files and sockets.

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// The series read from a node's /metrics.
const (
	metricRSS        = "process_resident_memory_bytes"
	metricHeap       = "go_memstats_heap_inuse_bytes"
	metricGoroutines = "go_goroutines"
	metricOpenFDs    = "process_open_fds"
	metricMaxFDs     = "process_max_fds"
	metricWidgets    = `chatpacket_sockets_open{kind="widget"}`
)

// nodeMetrics are the samples of one scrape, by series as the text format
// writes it: the name, and the labels in braces if any.
type nodeMetrics map[string]float64

func scrape(ctx context.Context, hc *http.Client, node string) (nodeMetrics, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", node+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("load: scrape %s/metrics: %w", node, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("load: scrape %s/metrics: %s", node, resp.Status)
	}
	m, err := parseMetrics(bufio.NewScanner(resp.Body))
	if err != nil {
		return nil, fmt.Errorf("load: scrape %s/metrics: %w", node, err)
	}
	if _, ok := m[metricRSS]; !ok {
		return nil, fmt.Errorf("load: %s/metrics has no %s: the node must run on Linux with the process collector", node, metricRSS)
	}
	return m, nil
}

// parseMetrics reads the samples of the text exposition format; comments
// and timestamps are skipped.
func parseMetrics(sc *bufio.Scanner) (nodeMetrics, error) {
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	m := nodeMetrics{}
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		// The value follows the series, after the closing brace if any
		// (label values may hold spaces).
		rest := line
		if i := strings.LastIndexByte(line, '}'); i >= 0 {
			rest = line[i+1:]
		} else if i := strings.IndexByte(line, ' '); i >= 0 {
			rest = line[i:]
		}
		series := strings.TrimSpace(line[:len(line)-len(rest)])
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("bad sample %q: %w", line, err)
		}
		m[series] = v
	}
	return m, sc.Err()
}
