package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// progress shows how far a long download is: on a terminal, a bar redrawn
// in place at most ten times a second; elsewhere (a log, a pipe), a plain
// line every 5 seconds. Its counts are items of a known total (the
// server's estimate: a count may pass it, and is then shown as is).
type progress struct {
	w        io.Writer
	terminal bool
	total    int
	start    time.Time
	shown    time.Time
	every    time.Duration
	items    int
	bytes    int64
}

func newProgress(w io.Writer, total int) *progress {
	p := &progress{w: w, total: total, start: time.Now(), terminal: isTerminal(w), every: 5 * time.Second}
	if p.terminal {
		p.every = 100 * time.Millisecond
	}
	return p
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (p *progress) update(items int, bytes int64) {
	p.items, p.bytes = items, bytes
	if now := time.Now(); now.Sub(p.shown) >= p.every {
		p.shown = now
		p.show()
	}
}

func (p *progress) line() string {
	mb := float64(p.bytes) / (1 << 20)
	if p.total <= 0 {
		return fmt.Sprintf("%d items, %.1f MiB", p.items, mb)
	}
	shown := min(p.items, p.total)
	return fmt.Sprintf("%3d%% %d/%d conversations and visitors, %.1f MiB", shown*100/p.total, p.items, p.total, mb)
}

func (p *progress) show() {
	if !p.terminal {
		fmt.Fprintf(p.w, "export: %s\n", p.line())
		return
	}
	const width = 30
	filled := width
	if p.total > 0 {
		filled = min(p.items, p.total) * width / p.total
	}
	fmt.Fprintf(p.w, "\r[%s%s] %s ", strings.Repeat("#", filled), strings.Repeat(".", width-filled), p.line())
}

// done shows the last state and where the file is.
func (p *progress) done(path string, bytes int64) {
	p.bytes = bytes
	if p.total > 0 {
		p.items = max(p.items, p.total)
	}
	p.show()
	if p.terminal {
		fmt.Fprintln(p.w)
	}
	fmt.Fprintf(p.w, "export: wrote %s (%.1f MiB) in %s\n", path, float64(bytes)/(1<<20), time.Since(p.start).Round(100*time.Millisecond))
}

// fail ends the bar's line so that an error prints on its own.
func (p *progress) fail() {
	if p.terminal {
		fmt.Fprintln(p.w)
	}
}
