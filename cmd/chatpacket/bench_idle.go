package main

// `chatpacket bench idle` (scenario (c): server memory per idle widget
// connection) and its worker process.

import (
	"fmt"
	"os"
	"time"

	"github.com/chatpacket/chatpacket/bench/load"
	"github.com/spf13/cobra"
)

func newBenchIdleCommand() *cobra.Command {
	cfg := load.IdleConfig{}
	var out string
	cmd := &cobra.Command{
		Use:   "idle",
		Short: "Scenario (c): open N idle widget sockets and measure the node's memory per connection",
		Long: `Idle: opens --connections widget sockets as visitors' pages would (a
widget session over HTTP, then /ws/widget), keeps them open and idle
(answering the node's pings), and reads the node's own /metrics before
the first socket and --settle after the last: RSS (process_resident_memory_bytes),
Go heap in use and goroutines. It reports the growth divided by the
connections. Nothing is forced on the node (no GC).

Every socket is a file on both ends: a process holds at most its open-file
limit (RLIMIT_NOFILE; 20000 on the benchmark machine, and it cannot be
raised there). It checks the node's limit (process_max_fds) before it starts
and fails with that reason; the generator's share is spread over
--processes worker processes (default: as few as its own limit allows).
  chatpacket bench idle --connections 10000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Progress = cmd.ErrOrStderr()
			if cfg.SourceAddrs == 0 {
				cfg.SourceAddrs = load.DefaultSourceAddrs(cfg.Target)
			}
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("bench idle: find this program for its workers: %w", err)
			}
			cfg.WorkerCommand = []string{exe, "bench", "idle-worker"}
			started := time.Now()
			res, err := load.Idle(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintln(cmd.OutOrStdout(), res); err != nil {
				return err
			}
			return writeReport(cmd, load.NewReport("idle", os.Args, started, nil, nil, &cfg, &res), out, true, started)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Target, "target", "http://127.0.0.1:8080", "base URL of the node to load")
	f.IntVar(&cfg.Connections, "connections", 1000, "idle widget sockets to open")
	f.IntVar(&cfg.Processes, "processes", 0, "generator processes holding the sockets (0: as few as the open-file limit allows)")
	f.IntVar(&cfg.SourceAddrs, "source-addrs", 0, "dial from this many loopback addresses 127.0.0.1…N, round-robin (0: 8 for a loopback target, else 1)")
	f.DurationVar(&cfg.Settle, "settle", 5*time.Second, "with every socket open, how long to wait before reading the node's memory")
	f.StringVar(&out, "out", "", "directory for result.json and chart.svg (default ./bench-results/idle-UTCTIME)")
	return cmd
}

// newBenchIdleWorkerCommand is the worker `bench idle` starts when its
// sockets need more than one process; not for people.
func newBenchIdleWorkerCommand() *cobra.Command {
	var target, widgetKey string
	var n, sourceAddrs int
	cmd := &cobra.Command{
		Use:    "idle-worker",
		Short:  "A worker process of bench idle (internal)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return load.IdleWorker(cmd.Context(), target, widgetKey, n, sourceAddrs, cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&target, "target", "", "base URL of the node")
	f.StringVar(&widgetKey, "widget-key", "", "the tenant's widget key")
	f.IntVar(&n, "connections", 0, "sockets to open")
	f.IntVar(&sourceAddrs, "source-addrs", 1, "loopback source addresses")
	return cmd
}
