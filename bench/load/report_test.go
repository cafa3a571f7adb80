package load

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sampleReport is a fan-out report of 5 seconds.
func sampleReport() Report {
	cfg := &Config{Target: "http://127.0.0.1:8080", Visitors: 10, Agents: 2, Rate: 100, Duration: 5 * time.Second, Grace: time.Second, SourceAddrs: 8}
	res := &Result{Sent: 500, Acked: 500, Delivered: 1000, Elapsed: 5 * time.Second,
		P50: time.Millisecond, P99: 9 * time.Millisecond, P999: 20 * time.Millisecond,
		AckP50: 800 * time.Microsecond, AckP99: 7 * time.Millisecond, AckP999: 15 * time.Millisecond}
	for i := range 5 {
		res.Series = append(res.Series, Second{T: i, Sent: 100, Acked: 100, Delivered: 200,
			AckP50: 0.8, AckP99: 7 + float64(i), DelivP50: 1, DelivP99: 9 + float64(i)})
	}
	res.Series[2].DelivP99 = 0 // a second without a measurement: a gap, not a point at zero
	return NewReport("fanout", []string{"chatpacket", "bench", "fanout"}, time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC), cfg, res, nil, nil)
}

func TestReportRoundTrip(t *testing.T) {
	rep := sampleReport()
	dir := t.TempDir()
	if err := rep.Write(dir); err != nil {
		t.Fatal(err)
	}
	got, err := ReadReport(filepath.Join(dir, "result.json"))
	if err != nil {
		t.Fatal(err)
	}
	rep.Result.Series = nil // result.json carries it once, as series
	if !reflect.DeepEqual(got, rep) {
		t.Errorf("ReadReport(Write(r)) = %+v;\nwant %+v", got, rep)
	}
	if len(got.Series) != 5 || got.Headlines[0].Name != "acked" || got.Headlines[0].Value != 100 {
		t.Errorf("series %d seconds, first headline %+v; want 5 seconds and acked 100 msgs/s", len(got.Series), got.Headlines[0])
	}
	// The names a reader of result.json relies on.
	b, _ := os.ReadFile(filepath.Join(dir, "result.json"))
	for _, field := range []string{`"nproc"`, `"cpu_model"`, `"memory_bytes"`, `"kernel"`, `"go_version"`, `"commit"`,
		`"ack_p99_ms"`, `"delivery_p99_ms"`, `"delivered"`, `"delivery_p99_ns"`} {
		if !bytes.Contains(b, []byte(field)) {
			t.Errorf("result.json has no %s", field)
		}
	}
}

func TestReadReportRejectsOtherVersions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "result.json")
	os.WriteFile(path, []byte(`{"version":99,"scenario":"fanout"}`), 0o644)
	if _, err := ReadReport(path); err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Errorf("ReadReport(version 99) = %v; want a version error", err)
	}
}

func TestMedians(t *testing.T) {
	var reps []Report
	for _, acked := range []float64{300, 100, 200} {
		reps = append(reps, Report{Scenario: "throughput", Headlines: []Figure{{"acked", acked, "msgs/s"}}})
	}
	reps[2].Headlines = append(reps[2].Headlines, Figure{"other", 1, ""})
	got, err := Medians(reps)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Value != 200 || !reflect.DeepEqual(got[0].Runs, []float64{300, 100, 200}) {
		t.Errorf("Medians = %+v; want acked 200 from runs 300, 100, 200", got)
	}
	if m := median([]float64{4, 1, math.NaN(), 2, 3}); m != 2.5 {
		t.Errorf("median(4 1 NaN 2 3) = %v; want 2.5", m)
	}
	reps[1].Scenario = "idle"
	if _, err := Medians(reps); err == nil {
		t.Error("Medians of two scenarios: no error")
	}
}

// The chart is well-formed XML with both panels, every series and the
// legend.
func TestChartSVG(t *testing.T) {
	for _, rep := range []Report{sampleReport(), idleReport()} {
		var buf bytes.Buffer
		if err := rep.Chart().WriteSVG(&buf); err != nil {
			t.Fatal(err)
		}
		paths := map[string]string{}
		texts := map[string]bool{}
		d := xml.NewDecoder(&buf)
		var inText bool
		for {
			tok, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s chart is not well-formed XML: %v", rep.Scenario, err)
			}
			switch e := tok.(type) {
			case xml.StartElement:
				inText = e.Name.Local == "text"
				if e.Name.Local == "path" {
					var name, dd string
					for _, a := range e.Attr {
						switch a.Name.Local {
						case "data-name":
							name = a.Value
						case "d":
							dd = a.Value
						}
					}
					if name != "" {
						paths[name] = dd
					}
				}
			case xml.CharData:
				if inText {
					texts[strings.TrimSpace(string(e))] = true
				}
			case xml.EndElement:
				inText = false
			}
		}
		var want []string
		for _, p := range rep.Chart().Panels {
			if !texts[p.Title] || !texts[p.YLabel] {
				t.Errorf("%s chart lacks the title or axis label of panel %q", rep.Scenario, p.Title)
			}
			for _, l := range p.Lines {
				want = append(want, l.Name)
			}
		}
		for _, name := range want {
			d, ok := paths[name]
			if !ok || !strings.HasPrefix(d, "M") {
				t.Errorf("%s chart: series %q has path %q; want a drawn line", rep.Scenario, name, d)
			}
			if !texts[name] {
				t.Errorf("%s chart: %q is not in the legend", rep.Scenario, name)
			}
		}
		if rep.Scenario == "fanout" {
			// Second 2 has no delivery p99: the line breaks there.
			if n := strings.Count(paths["delivery p99"], "M"); n != 2 {
				t.Errorf("delivery p99 path %q has %d moves; want 2 (a gap at second 2)", paths["delivery p99"], n)
			}
		}
	}
}

func idleReport() Report {
	ires := &IdleResult{Connections: 1000, Processes: 1, RSSBefore: 50 << 20, RSSAfter: 60 << 20, RSSPerConn: 10485.76}
	for i := range 4 {
		ires.Series = append(ires.Series, IdleSecond{T: i, Open: 250 * (i + 1), RSSBytes: uint64(50+i*3) << 20, HeapBytes: uint64(20+i) << 20})
	}
	return NewReport("idle", nil, time.Now(), nil, nil, &IdleConfig{Target: "http://127.0.0.1:1", Connections: 1000}, ires)
}

func TestLinearTicks(t *testing.T) {
	got := linearTicks(0, 1030, 6)
	want := []float64{0, 200, 400, 600, 800, 1000}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("linearTicks(0, 1030, 6) = %v; want %v", got, want)
	}
	if l := tickLabel(1500); l != "1.5k" {
		t.Errorf("tickLabel(1500) = %q; want 1.5k", l)
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 1.2345e+08
go_goroutines 42
chatpacket_sockets_open{kind="agent"} 3
chatpacket_sockets_open{kind="widget"} 1000
odd_metric{label="a } b"} 7 1700000000000
`
	m, err := parseMetrics(bufio.NewScanner(strings.NewReader(text)))
	if err != nil {
		t.Fatal(err)
	}
	for series, want := range map[string]float64{metricRSS: 1.2345e8, metricGoroutines: 42, metricWidgets: 1000, `odd_metric{label="a } b"}`: 7} {
		if m[series] != want {
			t.Errorf("%s = %v; want %v", series, m[series], want)
		}
	}
}
