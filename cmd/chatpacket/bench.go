package main

// `chatpacket bench`: the load generator's commands. Plain `bench` is the
// fan-out load it always was (its flags and summary line are what
// bench/cluster.sh and bench/compare drive); the subcommands are the
// scenarios of the performance figures in bench/RESULTS.md, each of which
// prints progress every second on stderr, its summary on stdout, and writes
// result.json and chart.svg into --out.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chatpacket/chatpacket/bench/load"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func newBenchCommand() *cobra.Command {
	o := benchOptions{scenario: "fanout", grace: 2 * time.Second}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load running nodes and measure throughput, delivery latency and memory per connection",
		Long: `Load a running node through its public API, as real clients would.

Without a subcommand it runs the fan-out load: it signs up a fresh tenant on
the target, opens one widget socket per visitor (each starts a conversation)
and the agent sockets, which watch every conversation. Then visitors send
messages at --rate in total for --duration, and it reports acknowledged
messages per second and the latency from a visitor's send to an agent's
receipt (p50, p99, p999). It prints progress every second, and writes
result.json and chart.svg when --out is given.

The subcommands are the benchmark scenarios (bench/RESULTS.md): fanout,
throughput, idle and cluster; bench/bench.sh runs one several times against
fresh nodes and prints the medians.

Start the node with --widget-message-limits=false: its abuse limits are
meant for people. Point bench only at nodes you run: it creates data there.
Sockets are dialled from several loopback source addresses (127.0.0.1 …
127.0.0.N, --source-addrs) when the target is on loopback, so one address
pair's ephemeral ports do not cap a load.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.runMessages(cmd) },
	}
	o.flags(cmd.Flags(), 100, 4, 500)
	cmd.AddCommand(newBenchFanoutCommand(), newBenchThroughputCommand(), newBenchClusterCommand(),
		newBenchIdleCommand(), newBenchIdleWorkerCommand(), newBenchMedianCommand())
	return cmd
}

func newBenchFanoutCommand() *cobra.Command {
	o := benchOptions{scenario: "fanout", mustDeliver: true, defaultOut: true}
	cmd := &cobra.Command{
		Use:   "fanout",
		Short: "Scenario (a): N visitors send at a fixed rate, M agents receive every message",
		Long: `Fan-out: --visitors widget sockets, each with its own conversation, send
--rate messages per second in total (an open loop: on schedule, whether or
not the node keeps up) for --duration; --agents agent sockets watch every
conversation and must each receive every message.

Reports sent, acknowledged and delivered messages per second, and the
latency from a visitor's send to an agent's receipt (and to the ack). The
run fails (exit status 1) if any acknowledged message had not reached every
agent socket when --grace ended. Use it for "p99 at 5k msg/s":
  chatpacket bench fanout --visitors 500 --agents 4 --rate 5000 --duration 30s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.cfg.Agents < 1 {
				return errors.New("bench fanout: --agents must be at least 1: fan-out measures delivery to agents")
			}
			return o.runMessages(cmd)
		},
	}
	o.flags(cmd.Flags(), 100, 4, 500)
	cmd.Flags().StringSliceVar(&o.cfg.Targets, "targets", nil, "nodes to spread the sockets over, round-robin (base URLs, comma-separated); the tenant is made on --target")
	return cmd
}

func newBenchThroughputCommand() *cobra.Command {
	o := benchOptions{scenario: "throughput", defaultOut: true}
	cmd := &cobra.Command{
		Use:   "throughput",
		Short: "Scenario (b): the most acknowledged (durable) messages per second",
		Long: `Throughput: --visitors widget sockets send as fast as the node acknowledges.
Each socket keeps --window messages in flight and sends the next as soon as
one is acked (a closed loop), so the node, not a set rate, sets the pace.
An ack means the message is durable (synced to disk on a majority of its
shard's replicas).

Reports acknowledged messages per second and the latency from send to ack.
With --rate it is an open loop instead (messages on schedule, like fanout).
With --agents, agent sockets receive as in fanout, and delivery is
measured too.
  chatpacket bench throughput --visitors 500 --window 4 --duration 20s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.runMessages(cmd) },
	}
	o.flags(cmd.Flags(), 200, 0, 0)
	cmd.Flags().IntVar(&o.cfg.Window, "window", 4, "closed loop: messages in flight per visitor socket")
	cmd.Flags().StringSliceVar(&o.cfg.Targets, "targets", nil, "nodes to spread the sockets over, round-robin (base URLs, comma-separated); the tenant is made on --target")
	return cmd
}

func newBenchClusterCommand() *cobra.Command {
	o := benchOptions{scenario: "cluster", defaultOut: true}
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Scenario (d): throughput and latency of a cluster, sockets on every node",
		Long: `Cluster: the throughput scenario against several nodes of one cluster (3
nodes with 3 replicas per shard for the figures): the visitor and agent
sockets are spread over --targets round-robin, as a cluster's clients
arrive at every node behind a load balancer, and the tenant is made on the
first. bench/bench.sh cluster starts such a cluster on this machine.

Closed loop by default (--window in flight per visitor socket); --rate for
an open loop.
  chatpacket bench cluster --targets http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(o.cfg.Targets) < 2 {
				return errors.New("bench cluster: --targets must name at least two nodes of the cluster")
			}
			o.cfg.Target = o.cfg.Targets[0]
			return o.runMessages(cmd)
		},
	}
	f := cmd.Flags()
	o.flags(f, 300, 0, 0)
	f.IntVar(&o.cfg.Window, "window", 4, "closed loop: messages in flight per visitor socket")
	f.StringSliceVar(&o.cfg.Targets, "targets", nil, "the cluster's nodes (base URLs, comma-separated); required")
	f.MarkHidden("target") // the first of --targets
	return cmd
}

// benchOptions are the flags of the message scenarios.
type benchOptions struct {
	scenario    string
	cfg         load.Config
	grace       time.Duration
	out         string
	cpuProfile  string
	mustDeliver bool // fail when an acked message did not reach every agent socket
	defaultOut  bool // write results to ./bench-results/… when --out is not given
}

func (o *benchOptions) flags(f *pflag.FlagSet, visitors, agents, rate int) {
	f.StringVar(&o.cfg.Target, "target", "http://127.0.0.1:8080", "base URL of the node to load")
	f.IntVar(&o.cfg.Visitors, "visitors", visitors, "widget sockets, one conversation each")
	f.IntVar(&o.cfg.Agents, "agents", agents, "agent sockets; each watches every conversation")
	rateHelp := "visitor messages per second, in total"
	if rate == 0 {
		rateHelp += "; 0: closed loop (see --window)"
	}
	f.IntVar(&o.cfg.Rate, "rate", rate, rateHelp)
	f.DurationVar(&o.cfg.Duration, "duration", 10*time.Second, "how long to send")
	if o.grace == 0 {
		o.grace = 5 * time.Second
	}
	f.DurationVar(&o.cfg.Grace, "grace", o.grace, "after sending, how long to wait for the last acks and deliveries")
	f.IntVar(&o.cfg.SourceAddrs, "source-addrs", 0, "dial from this many loopback addresses 127.0.0.1…N, round-robin (0: 8 for a loopback target, else 1)")
	outHelp := "directory for result.json and chart.svg (default: none)"
	if o.defaultOut {
		outHelp = "directory for result.json and chart.svg (default ./bench-results/" + o.scenario + "-UTCTIME)"
	}
	f.StringVar(&o.out, "out", "", outHelp)
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write the load generator's own CPU profile to this file (it shares the machine with the node)")
}

func (o *benchOptions) runMessages(cmd *cobra.Command) error {
	cfg := o.cfg
	cfg.Progress = cmd.ErrOrStderr()
	if cfg.SourceAddrs == 0 {
		cfg.SourceAddrs = load.DefaultSourceAddrs(cfg.Target)
	}
	if o.cpuProfile != "" {
		stop, err := startCPUProfile(o.cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	started := time.Now()
	res, err := load.Run(cmd.Context(), cfg)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(cmd.OutOrStdout(), res); err != nil {
		return err
	}
	rep := load.NewReport(o.scenario, os.Args, started, &cfg, &res, nil, nil)
	if err := writeReport(cmd, rep, o.out, o.defaultOut, started); err != nil {
		return err
	}
	if o.mustDeliver && res.Undelivered > 0 {
		return fmt.Errorf("bench %s: %d deliveries of acknowledged messages had not arrived %v after the load", o.scenario, res.Undelivered, cfg.Grace)
	}
	return nil
}

// writeReport writes the result directory: out, or the default one when
// the command has one.
func writeReport(cmd *cobra.Command, rep load.Report, out string, defaultOut bool, started time.Time) error {
	if out == "" {
		if !defaultOut {
			return nil
		}
		out = filepath.Join("bench-results", rep.Scenario+"-"+started.UTC().Format("20060102T150405Z"))
	}
	if err := rep.Write(out); err != nil {
		return err
	}
	_, err := fmt.Fprintf(cmd.ErrOrStderr(), "results: %s, %s\n", filepath.Join(out, "result.json"), filepath.Join(out, "chart.svg"))
	return err
}

func newBenchMedianCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "median DIR...",
		Short: "Print the median of each headline figure over several runs' results",
		Long: `Reads DIR/result.json of each run (of one scenario) and prints, for each
headline figure, the median over the runs and every run's value. bench/bench.sh
calls it after its rounds.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, dirs []string) error {
			var reps []load.Report
			for _, d := range dirs {
				rep, err := load.ReadReport(filepath.Join(d, "result.json"))
				if err != nil {
					return err
				}
				reps = append(reps, rep)
			}
			meds, err := load.Medians(reps)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%s, median of %d runs (commit %s):\n", reps[0].Scenario, len(reps), reps[0].Machine.Commit)
			for _, m := range meds {
				runs := make([]string, len(m.Runs))
				for i, v := range m.Runs {
					runs[i] = fmt.Sprintf("%.6g", v)
				}
				fmt.Fprintf(w, "  %-26s %12.6g %-10s runs: %s\n", m.Name, m.Value, m.Unit, strings.Join(runs, ", "))
			}
			return nil
		},
	}
}
