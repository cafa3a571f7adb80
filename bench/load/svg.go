package load

// Charts as self-contained SVG, drawn with the standard library: no
// script, no external font or stylesheet, so a result directory opens in
// any browser, offline, and diffs as text. A chart is panels stacked over a
// shared time axis; each panel has its own y axis (linear from zero, or
// logarithmic for latencies, whose p99 and p50 differ by orders of
// magnitude under load), ticks, grid lines and a legend.

import (
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"
)

// Chart is a figure of one or more panels over the same x axis.
type Chart struct {
	Title    string
	Subtitle string // the run's configuration, in one line
	XLabel   string
	Panels   []Panel
}

// Panel is one plot of the chart.
type Panel struct {
	Title  string
	YLabel string
	Log    bool // logarithmic y axis; points at or below zero are left out
	Lines  []Line
}

// Line is one series of a panel.
type Line struct {
	Name   string
	Color  string // any SVG colour
	Dashed bool
	Points []Point
}

// Point is one value of a line.
type Point struct{ X, Y float64 }

// Geometry, in SVG user units (pixels at 100 %).
const (
	svgWidth   = 1000
	svgPanelH  = 280
	svgTop     = 64 // title and subtitle
	svgGap     = 56 // between panels: the x tick labels and the next title
	svgLeft    = 84
	svgRight   = 200 // the legend
	svgBottom  = 48
	svgFont    = `system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif`
	svgAxisCol = "#444"
	svgGridCol = "#e4e4e4"
)

// WriteSVG writes the chart as a standalone SVG document.
func (c Chart) WriteSVG(w io.Writer) error {
	height := svgTop + len(c.Panels)*(svgPanelH+svgGap) + svgBottom - svgGap + 24
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family=%s font-size="12">
<rect width="100%%" height="100%%" fill="#fff"/>
<text x="%d" y="26" font-size="17" font-weight="600" fill="#111">%s</text>
<text x="%d" y="46" fill="#555">%s</text>
`, svgWidth, height, svgWidth, height, attr(svgFont), svgLeft, esc(c.Title), svgLeft, esc(c.Subtitle))
	xmin, xmax := c.xRange()
	for i, p := range c.Panels {
		top := svgTop + i*(svgPanelH+svgGap) + 16
		p.write(&b, top, xmin, xmax, c.XLabel)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func (c Chart) xRange() (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, p := range c.Panels {
		for _, l := range p.Lines {
			for _, pt := range l.Points {
				lo, hi = min(lo, pt.X), max(hi, pt.X)
			}
		}
	}
	if math.IsInf(lo, 0) {
		return 0, 1
	}
	// Time axes start at zero and end on a whole second.
	lo, hi = min(lo, 0), math.Ceil(hi)
	if hi <= lo {
		hi = lo + 1
	}
	return lo, hi
}

func (p Panel) write(b *strings.Builder, top int, xmin, xmax float64, xlabel string) {
	plotW := float64(svgWidth - svgLeft - svgRight)
	plotH := float64(svgPanelH)
	left, bottom := float64(svgLeft), float64(top)+plotH
	ymin, ymax := p.yRange()
	x := func(v float64) float64 { return left + (v-xmin)/(xmax-xmin)*plotW }
	y := func(v float64) float64 {
		if p.Log {
			return bottom - (math.Log10(v)-math.Log10(ymin))/(math.Log10(ymax)-math.Log10(ymin))*plotH
		}
		return bottom - (v-ymin)/(ymax-ymin)*plotH
	}
	fmt.Fprintf(b, `<g class="panel">
<text x="%d" y="%d" font-size="14" font-weight="600" fill="#222">%s</text>
`, svgLeft, top-8, esc(p.Title))
	// Grid and y ticks.
	for _, t := range yTicks(ymin, ymax, p.Log) {
		yy := y(t)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>
<text x="%.1f" y="%.1f" text-anchor="end" fill="#333">%s</text>
`, left, yy, left+plotW, yy, svgGridCol, left-8, yy+4, esc(tickLabel(t)))
	}
	// x ticks.
	for _, t := range linearTicks(xmin, xmax, 10) {
		xx := x(t)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>
<text x="%.1f" y="%.1f" text-anchor="middle" fill="#333">%s</text>
`, xx, bottom, xx, bottom+5, svgAxisCol, xx, bottom+19, esc(tickLabel(t)))
	}
	// Axes and their labels.
	fmt.Fprintf(b, `<path d="M%.1f %.1f V%.1f H%.1f" fill="none" stroke="%s"/>
<text x="%.1f" y="%.1f" text-anchor="middle" fill="#333">%s</text>
<text transform="translate(%d %.1f) rotate(-90)" text-anchor="middle" fill="#333">%s</text>
`, left, float64(top), bottom, left+plotW, svgAxisCol,
		left+plotW/2, bottom+36, esc(xlabel), svgLeft-60, float64(top)+plotH/2, esc(p.YLabel))
	// Lines, clipped to the plot, and the legend.
	for i, l := range p.Lines {
		var d strings.Builder
		pen := "M"
		for _, pt := range l.Points {
			if p.Log && pt.Y <= 0 || math.IsNaN(pt.Y) {
				pen = "M" // a gap: nothing measured that second
				continue
			}
			fmt.Fprintf(&d, "%s%.1f %.1f ", pen, x(pt.X), y(min(max(pt.Y, ymin), ymax)))
			pen = "L"
		}
		dash := ""
		if l.Dashed {
			dash = ` stroke-dasharray="6 4"`
		}
		fmt.Fprintf(b, `<path class="series" data-name=%s d="%s" fill="none" stroke=%s stroke-width="2" stroke-linejoin="round"%s/>
`, attr(l.Name), strings.TrimSpace(d.String()), attr(l.Color), dash)
		ly := float64(top) + 14 + float64(i)*22
		lx := left + plotW + 20
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke=%s stroke-width="2"%s/>
<text x="%.1f" y="%.1f" fill="#222">%s</text>
`, lx, ly, lx+24, ly, attr(l.Color), dash, lx+30, ly+4, esc(l.Name))
	}
	b.WriteString("</g>\n")
}

// yRange is the panel's y extent: from zero (or, on a log axis, the
// decade below the smallest positive value) to a little above the largest.
func (p Panel) yRange() (lo, hi float64) {
	lo, hi = math.Inf(1), 0.0
	for _, l := range p.Lines {
		for _, pt := range l.Points {
			if pt.Y > 0 && !math.IsNaN(pt.Y) {
				lo, hi = min(lo, pt.Y), max(hi, pt.Y)
			}
		}
	}
	if p.Log {
		if hi == 0 {
			return 0.1, 10
		}
		lo = math.Pow(10, math.Floor(math.Log10(lo)))
		hi = math.Pow(10, math.Ceil(math.Log10(hi)))
		if hi <= lo {
			hi = lo * 10
		}
		return lo, hi
	}
	if hi == 0 {
		return 0, 1
	}
	ticks := linearTicks(0, hi*1.05, 6)
	return 0, max(ticks[len(ticks)-1], hi*1.05)
}

func yTicks(lo, hi float64, log bool) []float64 {
	if !log {
		return linearTicks(lo, hi, 6)
	}
	var out []float64
	for d := lo; d <= hi*1.0001; d *= 10 {
		for _, m := range []float64{1, 2, 5} {
			if v := d * m; v <= hi*1.0001 && (m == 1 || hi/lo <= 1e4) {
				out = append(out, v)
			}
		}
	}
	return out
}

// linearTicks are round values (1, 2 or 5 × a power of ten apart) from lo
// to hi, about n of them.
func linearTicks(lo, hi float64, n int) []float64 {
	if hi <= lo {
		return []float64{lo}
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag * 10
	for _, m := range []float64{1, 2, 5, 10} {
		if mag*m >= raw {
			step = mag * m
			break
		}
	}
	var out []float64
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		out = append(out, math.Round(v/step)*step)
	}
	return out
}

// tickLabel prints a tick compactly: 1500 → 1.5k, 0.05 → 0.05.
func tickLabel(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 4, 64) + "M"
	case a >= 1e3:
		return strconv.FormatFloat(v/1e3, 'g', 4, 64) + "k"
	default:
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
}

func esc(s string) string { return html.EscapeString(s) }

// attr is a quoted attribute value.
func attr(s string) string { return `"` + html.EscapeString(s) + `"` }
