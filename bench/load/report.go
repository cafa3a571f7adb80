package load

// What a scenario leaves behind: a directory with result.json (the
// configuration, the machine, the summary and the per-second series) and
// chart.svg (the series drawn), and the headline figures that
// `chatpacket bench median` takes the median of over several runs.

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// ReportVersion is result.json's schema version; it changes when a field
// changes meaning.
const ReportVersion = 1

// Report is result.json.
type Report struct {
	Version  int       `json:"version"`
	Scenario string    `json:"scenario"` // fanout, throughput, cluster, idle
	Command  []string  `json:"command"`  // the command line that made it
	Started  time.Time `json:"started"`
	Machine  Machine   `json:"machine"`
	// One of the two pairs, by scenario.
	Config     *Config     `json:"config,omitempty"`
	Result     *Result     `json:"result,omitempty"`
	IdleConfig *IdleConfig `json:"idle_config,omitempty"`
	IdleResult *IdleResult `json:"idle_result,omitempty"`
	// Headlines are the figures a scenario is run for.
	Headlines []Figure `json:"headlines"`
	// The run second by second: Series for the message scenarios,
	// IdleSeries for idle.
	Series     []Second     `json:"series,omitempty"`
	IdleSeries []IdleSecond `json:"idle_series,omitempty"`
}

// Figure is one headline number.
type Figure struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// NewReport fills in the headlines and series from the result.
func NewReport(scenario string, command []string, started time.Time, cfg *Config, res *Result, icfg *IdleConfig, ires *IdleResult) Report {
	rep := Report{Version: ReportVersion, Scenario: scenario, Command: command, Started: started.UTC(), Machine: DescribeMachine(),
		Config: cfg, Result: res, IdleConfig: icfg, IdleResult: ires}
	if res != nil {
		rep.Series = res.Series
		rep.Headlines = []Figure{
			{"acked", res.AckedPerSecond(), "msgs/s"},
			{"ack p50", ms(res.AckP50), "ms"},
			{"ack p99", ms(res.AckP99), "ms"},
		}
		if cfg != nil && cfg.Agents > 0 {
			rep.Headlines = append(rep.Headlines,
				Figure{"delivered", res.DeliveredPerSecond(), "msgs/s"},
				Figure{"delivery p50", ms(res.P50), "ms"},
				Figure{"delivery p99", ms(res.P99), "ms"},
				Figure{"delivery p999", ms(res.P999), "ms"},
				Figure{"undelivered", float64(res.Undelivered), "deliveries"})
		}
		rep.Headlines = append(rep.Headlines, Figure{"errors", float64(res.Errors), "msgs"})
	}
	if ires != nil {
		rep.IdleSeries = ires.Series
		rep.Headlines = []Figure{
			{"rss per connection", ires.RSSPerConn / 1024, "KiB"},
			{"heap per connection", ires.HeapPerConn / 1024, "KiB"},
			{"goroutines per connection", ires.GoroutinesPerConn, ""},
			{"connections", float64(ires.Connections), ""},
		}
	}
	return rep
}

// Chart draws the report's series.
func (rep Report) Chart() Chart {
	c := Chart{Title: "ChatPacket bench " + rep.Scenario, XLabel: "seconds since the load began",
		Subtitle: fmt.Sprintf("%s · %d cores %s", rep.Started.Format("2006-01-02 15:04 UTC"), rep.Machine.NumCPU, rep.Machine.CPUModel)}
	if rep.Machine.Commit != "" {
		c.Subtitle += fmt.Sprintf(" · commit %.12s", rep.Machine.Commit)
	}
	if rep.IdleResult != nil {
		c.XLabel = "seconds since the first socket"
		var open, rss, heap []Point
		for _, s := range rep.IdleSeries {
			t := float64(s.T)
			open = append(open, Point{t, float64(s.Open)})
			rss = append(rss, Point{t, mib(s.RSSBytes)})
			heap = append(heap, Point{t, mib(s.HeapBytes)})
		}
		c.Subtitle = fmt.Sprintf("%d idle widget sockets · %.2f KiB RSS per connection · %s", rep.IdleResult.Connections, rep.IdleResult.RSSPerConn/1024, c.Subtitle)
		c.Panels = []Panel{
			{Title: "Sockets open", YLabel: "sockets", Lines: []Line{{Name: "open", Color: "#1f77b4", Points: open}}},
			{Title: "Node memory", YLabel: "MiB", Lines: []Line{
				{Name: "RSS", Color: "#d62728", Points: rss},
				{Name: "Go heap in use", Color: "#2ca02c", Points: heap}}},
		}
		return c
	}
	var sent, acked, deliv, ackP50, ackP99, dP50, dP99 []Point
	for _, s := range rep.Series {
		t := float64(s.T) + 0.5 // the middle of the second
		sent = append(sent, Point{t, float64(s.Sent)})
		acked = append(acked, Point{t, float64(s.Acked)})
		deliv = append(deliv, Point{t, float64(s.Delivered)})
		ackP50, ackP99 = append(ackP50, Point{t, s.AckP50}), append(ackP99, Point{t, s.AckP99})
		dP50, dP99 = append(dP50, Point{t, s.DelivP50}), append(dP99, Point{t, s.DelivP99})
	}
	if rep.Config != nil {
		mode := fmt.Sprintf("%d msgs/s offered", rep.Config.Rate)
		if rep.Config.Rate == 0 {
			mode = fmt.Sprintf("closed loop, %d in flight per socket", rep.Config.Window)
		}
		c.Subtitle = fmt.Sprintf("%d visitors, %d agents, %d node(s), %s · %s", rep.Config.Visitors, rep.Config.Agents, len(rep.Config.nodes()), mode, c.Subtitle)
	}
	rates := Panel{Title: "Messages per second", YLabel: "msgs/s", Lines: []Line{
		{Name: "sent", Color: "#7f7f7f", Dashed: true, Points: sent},
		{Name: "acked", Color: "#1f77b4", Points: acked}}}
	lat := Panel{Title: "Latency percentiles (log scale)", YLabel: "ms", Log: true, Lines: []Line{
		{Name: "ack p50", Color: "#9ecae1", Points: ackP50},
		{Name: "ack p99", Color: "#1f77b4", Points: ackP99}}}
	if rep.Config != nil && rep.Config.Agents > 0 {
		rates.Lines = append(rates.Lines, Line{Name: "delivered (all agents)", Color: "#ff7f0e", Points: deliv})
		lat.Lines = append(lat.Lines,
			Line{Name: "delivery p50", Color: "#fdae6b", Points: dP50},
			Line{Name: "delivery p99", Color: "#e6550d", Points: dP99})
	}
	c.Panels = []Panel{rates, lat}
	return c
}

// Write makes dir and writes result.json and chart.svg into it.
func (rep Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("load: results directory: %w", err)
	}
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("load: encode result.json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "result.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("load: write result.json: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, "chart.svg"))
	if err != nil {
		return fmt.Errorf("load: write chart.svg: %w", err)
	}
	if err := rep.Chart().WriteSVG(f); err != nil {
		f.Close()
		return fmt.Errorf("load: write chart.svg: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("load: write chart.svg: %w", err)
	}
	return nil
}

// ReadReport reads a result.json.
func ReadReport(path string) (Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Report{}, err
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return Report{}, fmt.Errorf("load: %s: %w", path, err)
	}
	if rep.Version != ReportVersion {
		return Report{}, fmt.Errorf("load: %s: result version %d, this generator reads %d", path, rep.Version, ReportVersion)
	}
	return rep, nil
}

// Median is a headline figure's median over several runs, with the runs'
// values in the order given.
type Median struct {
	Figure
	Runs []float64
}

// Medians takes, for each headline of the first report, the median over
// all of them (of an even count, the mean of the middle two). The reports
// must be of one scenario.
func Medians(reps []Report) ([]Median, error) {
	if len(reps) == 0 {
		return nil, errors.New("load: no results")
	}
	var out []Median
	for _, h := range reps[0].Headlines {
		m := Median{Figure: h}
		for _, rep := range reps {
			if rep.Scenario != reps[0].Scenario {
				return nil, fmt.Errorf("load: results of scenarios %s and %s", reps[0].Scenario, rep.Scenario)
			}
			v := math.NaN()
			for _, f := range rep.Headlines {
				if f.Name == h.Name {
					v = f.Value
				}
			}
			m.Runs = append(m.Runs, v)
		}
		m.Value = median(m.Runs)
		out = append(out, m)
	}
	return out, nil
}

// median of the values that are numbers; NaN if none.
func median(vs []float64) float64 {
	s := slices.DeleteFunc(slices.Clone(vs), math.IsNaN)
	if len(s) == 0 {
		return math.NaN()
	}
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
