package load

// The idle scenario: how much server memory one open, idle widget
// connection costs. Each socket is what a visitor's browser holds while a
// page with the widget is open: a widget session made over HTTP, then
// /ws/widget, answering the node's pings and sending nothing.
//
// The node's own /metrics says how much it holds: process RSS and Go heap
// are read once before the first socket opens and once after the last,
// plus a settle time; the difference divided by the sockets is the cost of
// one. Nothing on the server is forced (no GC): the figure is what an
// operator would see.
//
// Every socket is a file on both ends, and a process may hold at most its
// RLIMIT_NOFILE of them. The generator checks both ends before it starts
// (the node's limit is on its /metrics as process_max_fds) and spreads the
// sockets over several generator processes (workers: `chatpacket bench
// idle-worker`, which speak a line protocol on their stdin and stdout)
// when one process cannot hold them all.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// IdleConfig is one idle run.
type IdleConfig struct {
	Target      string `json:"target"`
	Connections int    `json:"connections"`
	// Processes is how many generator processes hold the sockets; 0: as
	// few as the generator's open-file limit allows. More than one needs
	// WorkerCommand.
	Processes   int `json:"processes"`
	SourceAddrs int `json:"source_addrs"`
	// Settle is how long to wait with every socket open before the second
	// reading, so that the node's allocations of the opening are done.
	Settle time.Duration `json:"settle_ns"`
	// WorkerCommand starts a worker process: the program and arguments to
	// which the worker's flags (--target, --widget-key, --connections,
	// --source-addrs) are appended; see IdleWorker.
	WorkerCommand []string  `json:"-"`
	Progress      io.Writer `json:"-"`
}

// Validate reports the first invalid field.
func (c IdleConfig) Validate() error {
	switch {
	case !strings.HasPrefix(c.Target, "http://") && !strings.HasPrefix(c.Target, "https://"):
		return fmt.Errorf("load: target %q must be an http:// or https:// URL", c.Target)
	case c.Connections < 1 || c.Connections > 1_000_000:
		return errors.New("load: connections must be 1 to 1000000")
	case c.Processes < 0 || c.Processes > 256:
		return errors.New("load: processes must be 0 (automatic) to 256")
	case c.Processes > 1 && len(c.WorkerCommand) == 0:
		return errors.New("load: several processes need a worker command")
	case c.SourceAddrs < 0 || c.SourceAddrs > MaxSourceAddrs:
		return fmt.Errorf("load: source addresses must be 0 to %d", MaxSourceAddrs)
	case c.Settle < 0 || c.Settle > 10*time.Minute:
		return errors.New("load: settle must be 0 to 10 minutes")
	}
	return nil
}

// IdleResult is what an idle run measured on the node.
type IdleResult struct {
	Connections int     `json:"connections"`
	Processes   int     `json:"processes"`
	OpenSeconds float64 `json:"open_seconds"` // from the first socket to the last
	// The node's widget sockets (chatpacket_sockets_open) after opening.
	ServerSockets int `json:"server_sockets"`
	// Node readings before the first socket and after the settle time.
	RSSBefore        uint64 `json:"rss_before_bytes"`
	RSSAfter         uint64 `json:"rss_after_bytes"`
	HeapBefore       uint64 `json:"heap_inuse_before_bytes"`
	HeapAfter        uint64 `json:"heap_inuse_after_bytes"`
	GoroutinesBefore int    `json:"goroutines_before"`
	GoroutinesAfter  int    `json:"goroutines_after"`
	OpenFDsAfter     int    `json:"open_fds_after"`
	MaxFDs           int    `json:"max_fds"`
	// Per connection: (after − before) / connections.
	RSSPerConn        float64 `json:"rss_per_connection_bytes"`
	HeapPerConn       float64 `json:"heap_per_connection_bytes"`
	GoroutinesPerConn float64 `json:"goroutines_per_connection"`
	// Series is the opening, second by second.
	Series []IdleSecond `json:"-"`
}

// IdleSecond is one second of an idle run, as result.json carries it.
type IdleSecond struct {
	T         int    `json:"t"`
	Open      int    `json:"open"`      // sockets the generator holds
	RSSBytes  uint64 `json:"rss_bytes"` // the node's RSS
	HeapBytes uint64 `json:"heap_inuse_bytes"`
}

func (r IdleResult) String() string {
	return fmt.Sprintf("idle: %d widget sockets open (node counts %d) from %d process(es), opened in %.1fs; node RSS %.1f → %.1f MiB: %.2f KiB per connection; Go heap in use %.1f → %.1f MiB: %.2f KiB per connection; %.2f goroutines per connection",
		r.Connections, r.ServerSockets, r.Processes, r.OpenSeconds,
		mib(r.RSSBefore), mib(r.RSSAfter), r.RSSPerConn/1024, mib(r.HeapBefore), mib(r.HeapAfter), r.HeapPerConn/1024, r.GoroutinesPerConn)
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// ErrServerFiles is the node's open-file limit: it cannot take the sockets.
var ErrServerFiles = errors.New("load: the node is at its open-file limit (process_max_fds): every socket is a file, and this machine's hard limit per process cannot be raised; ask for fewer connections")

// reserveFDs is what a process keeps for everything but the sockets: its
// store, listeners, HTTP connections.
const reserveFDs = 256

// Idle opens the sockets, measures the node, and closes them.
func Idle(ctx context.Context, cfg IdleConfig) (IdleResult, error) {
	if err := cfg.Validate(); err != nil {
		return IdleResult{}, err
	}
	src := &sources{n: cfg.SourceAddrs}
	hc := src.client(64)
	defer hc.CloseIdleConnections()
	before, err := scrape(ctx, hc, cfg.Target)
	if err != nil {
		return IdleResult{}, err
	}
	if maxFDs := int(before[metricMaxFDs]); maxFDs > 0 {
		if room := maxFDs - int(before[metricOpenFDs]) - 64; cfg.Connections > room {
			return IdleResult{}, fmt.Errorf("%w: it may hold %d files and has %d open, so it can take about %d more sockets, not %d",
				ErrServerFiles, maxFDs, int(before[metricOpenFDs]), max(room, 0), cfg.Connections)
		}
	}
	procs, err := idleProcesses(cfg)
	if err != nil {
		return IdleResult{}, err
	}
	ten, err := signup(ctx, hc, cfg.Target)
	if err != nil {
		return IdleResult{}, err
	}

	res := IdleResult{Connections: cfg.Connections, Processes: procs, MaxFDs: int(before[metricMaxFDs]),
		RSSBefore: uint64(before[metricRSS]), HeapBefore: uint64(before[metricHeap]), GoroutinesBefore: int(before[metricGoroutines])}
	var open atomic.Int64
	start := time.Now()
	var mu sync.Mutex // guards res.Series
	sample := func(phase string) {
		m, err := scrape(ctx, hc, cfg.Target)
		n := int(open.Load())
		s := IdleSecond{T: int(time.Since(start).Round(time.Second) / time.Second), Open: n}
		line := fmt.Sprintf("%5.0fs  %s: %d/%d sockets open", time.Since(start).Seconds(), phase, n, cfg.Connections)
		if err == nil {
			s.RSSBytes, s.HeapBytes = uint64(m[metricRSS]), uint64(m[metricHeap])
			line += fmt.Sprintf("; node RSS %.1f MiB, heap %.1f MiB, %d files", mib(s.RSSBytes), mib(s.HeapBytes), int(m[metricOpenFDs]))
		}
		mu.Lock()
		res.Series = append(res.Series, s)
		mu.Unlock()
		if cfg.Progress != nil {
			fmt.Fprintln(cfg.Progress, line)
		}
	}
	phase := atomic.Value{}
	phase.Store("opening")
	stop := every(time.Second, func() { sample(phase.Load().(string)) })
	defer stop()

	var closeAll func()
	if procs == 1 {
		var conns []*websocket.Conn
		conns, err = openIdle(ctx, cfg.Target, ten.widgetKey, cfg.Connections, cfg.SourceAddrs, &open)
		closeAll = func() { closeConns(conns) }
	} else {
		closeAll, err = spawnIdle(ctx, cfg, ten.widgetKey, procs, &open)
	}
	if closeAll != nil {
		defer closeAll()
	}
	if err != nil {
		return IdleResult{}, explainFiles(ctx, hc, cfg.Target, err)
	}
	res.OpenSeconds = time.Since(start).Seconds()
	hc.CloseIdleConnections() // the sessions' HTTP connections are files on the node too
	phase.Store("settling")
	select {
	case <-time.After(cfg.Settle):
	case <-ctx.Done():
		return IdleResult{}, ctx.Err()
	}
	after, err := scrape(ctx, hc, cfg.Target)
	if err != nil {
		return IdleResult{}, err
	}
	stop()
	n := float64(cfg.Connections)
	res.RSSAfter, res.HeapAfter = uint64(after[metricRSS]), uint64(after[metricHeap])
	res.GoroutinesAfter, res.OpenFDsAfter = int(after[metricGoroutines]), int(after[metricOpenFDs])
	res.ServerSockets = int(after[metricWidgets])
	res.RSSPerConn = (after[metricRSS] - before[metricRSS]) / n
	res.HeapPerConn = (after[metricHeap] - before[metricHeap]) / n
	res.GoroutinesPerConn = (after[metricGoroutines] - before[metricGoroutines]) / n
	return res, nil
}

// idleProcesses is the number of generator processes: as asked, or as few
// as the open-file limit allows; it fails when a process's share cannot fit.
func idleProcesses(cfg IdleConfig) (int, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("load: read the open-file limit: %w", err)
	}
	perProc := int(min(lim.Cur, 1<<30)) - reserveFDs
	procs := cfg.Processes
	if procs == 0 {
		procs = (cfg.Connections + perProc - 1) / perProc
		if procs > 1 && len(cfg.WorkerCommand) == 0 {
			return 0, fmt.Errorf("%w: %d sockets need %d processes here, and no worker command was given", ErrGeneratorFiles, cfg.Connections, procs)
		}
	}
	if share := (cfg.Connections + procs - 1) / procs; share > perProc {
		return 0, fmt.Errorf("%w: a process may hold %d files, so %d sockets need at least %d processes, not %d",
			ErrGeneratorFiles, lim.Cur, cfg.Connections, (cfg.Connections+perProc-1)/perProc, procs)
	}
	return procs, nil
}

// explainFiles adds the node's open-file limit to err when the node is at
// it: it then stops accepting, and the generator sees only timeouts.
func explainFiles(ctx context.Context, hc *http.Client, node string, err error) error {
	if errors.Is(err, ErrGeneratorFiles) {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	m, serr := scrape(ctx, hc, node)
	if serr != nil {
		return fmt.Errorf("%w (and the node's /metrics did not answer: %v, which it does when it has no file left to accept with)", err, serr)
	}
	if maxFDs := m[metricMaxFDs]; maxFDs > 0 && m[metricOpenFDs] >= maxFDs-16 {
		return fmt.Errorf("%w: %d of %d files open: %w", ErrServerFiles, int(m[metricOpenFDs]), int(maxFDs), err)
	}
	return err
}

// openIdle opens n idle widget sockets on node, counting them in open.
// Each has a goroutine that reads (and so answers pings) until it closes.
// On an error it closes what it opened.
func openIdle(ctx context.Context, node, widgetKey string, n, sourceAddrs int, open *atomic.Int64) ([]*websocket.Conn, error) {
	src := &sources{n: sourceAddrs}
	hc := src.client(64)
	defer hc.CloseIdleConnections()
	conns := make([]*websocket.Conn, n)
	err := parallel(ctx, n, 64, func(ctx context.Context, i int) error {
		dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		tok, err := widgetSession(dctx, hc, node, widgetKey)
		if err != nil {
			return fmt.Errorf("socket %d: %w", i+1, err)
		}
		ws, err := dialWS(dctx, hc, wsURL(node, "/ws/widget?token="+tok), nil)
		if err != nil {
			return fmt.Errorf("load: open idle widget socket %d: %w", i+1, err)
		}
		conns[i] = ws
		go drain(ws)
		open.Add(1)
		return nil
	})
	if err != nil {
		closeConns(conns)
		return nil, err
	}
	return conns, nil
}

// drain reads and drops frames until the socket closes: a reader is what
// answers the node's pings.
func drain(ws *websocket.Conn) {
	for {
		if _, _, err := ws.Read(context.Background()); err != nil {
			return
		}
	}
}

func closeConns(conns []*websocket.Conn) {
	for _, c := range conns {
		if c != nil {
			c.CloseNow()
		}
	}
}

// The worker protocol, one line each on the worker's stdout: "opened N"
// as it goes, "ready N" once its share is open, "error MESSAGE" before it
// exits with a failure. It holds its sockets until its stdin closes.

// IdleWorker opens n idle widget sockets for widgetKey's tenant on node,
// reports on out, holds them until in reaches its end, and closes them.
func IdleWorker(ctx context.Context, node, widgetKey string, n, sourceAddrs int, in io.Reader, out io.Writer) error {
	var open atomic.Int64
	stop := every(200*time.Millisecond, func() { fmt.Fprintf(out, "opened %d\n", open.Load()) })
	conns, err := openIdle(ctx, node, widgetKey, n, sourceAddrs, &open)
	stop()
	if err != nil {
		fmt.Fprintf(out, "error %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return err
	}
	defer closeConns(conns)
	fmt.Fprintf(out, "ready %d\n", len(conns))
	io.Copy(io.Discard, in)
	return nil
}

// spawnIdle starts procs workers, each with its share of the sockets, and
// waits until all are ready or one fails. closeAll ends them.
func spawnIdle(ctx context.Context, cfg IdleConfig, widgetKey string, procs int, open *atomic.Int64) (closeAll func(), err error) {
	type worker struct {
		cmd    *exec.Cmd
		stdin  io.WriteCloser
		opened atomic.Int64
	}
	var (
		workers []*worker
		wg      sync.WaitGroup
		events  = make(chan error, procs) // nil: a worker is ready
	)
	closeAll = func() {
		for _, w := range workers {
			w.stdin.Close()
		}
		for _, w := range workers {
			done := make(chan struct{})
			go func() { w.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				w.cmd.Process.Kill()
				<-done
			}
		}
		wg.Wait()
	}
	for p := range procs {
		share := cfg.Connections / procs
		if p < cfg.Connections%procs {
			share++
		}
		args := append(append([]string{}, cfg.WorkerCommand[1:]...), "--target", cfg.Target, "--widget-key", widgetKey,
			"--connections", strconv.Itoa(share), "--source-addrs", strconv.Itoa(cfg.SourceAddrs))
		cmd := exec.CommandContext(ctx, cfg.WorkerCommand[0], args...)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			closeAll()
			return nil, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			closeAll()
			return nil, err
		}
		cmd.Stderr = io.Discard // the worker says what went wrong on stdout
		if err := cmd.Start(); err != nil {
			closeAll()
			return nil, fmt.Errorf("load: start idle worker %d: %w", p+1, err)
		}
		w := &worker{cmd: cmd, stdin: stdin}
		workers = append(workers, w)
		wg.Go(func() {
			sc := bufio.NewScanner(stdout)
			reported := false
			for sc.Scan() {
				verb, arg, _ := strings.Cut(sc.Text(), " ")
				switch verb {
				case "opened", "ready":
					k, _ := strconv.ParseInt(arg, 10, 64)
					open.Add(k - w.opened.Swap(k))
					if verb == "ready" {
						events <- nil
						reported = true
					}
				case "error":
					events <- fmt.Errorf("load: idle worker %d: %s", p+1, arg)
					reported = true
				}
			}
			if !reported {
				events <- fmt.Errorf("load: idle worker %d ended before its sockets were open", p+1)
			}
		})
	}
	for range procs {
		select {
		case err := <-events:
			if err != nil {
				closeAll()
				return nil, err
			}
		case <-ctx.Done():
			closeAll()
			return nil, ctx.Err()
		}
	}
	return closeAll, nil
}
