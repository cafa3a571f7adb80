package main

import (
	"fmt"
	"time"

	"github.com/chatpacket/chatpacket/bench/load"
	"github.com/spf13/cobra"
)

func newBenchCommand() *cobra.Command {
	cfg := load.Config{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load a running node and measure throughput and delivery latency",
		Long: `Load a running node through its public API, as real clients would.

It signs up a fresh tenant on the target, opens one widget socket per
visitor (each starts a conversation) and the agent sockets, which watch the
conversations between them. Then visitors send messages at --rate in total
for --duration, and it reports acknowledged messages per second and the
latency from a visitor's send to an agent's receipt (p50, p99, p999). It
prints progress every second. Point it only at nodes you run: it creates
data there.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Progress = cmd.ErrOrStderr()
			res, err := load.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), res)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Target, "target", "http://127.0.0.1:8080", "base URL of the node to load")
	f.IntVar(&cfg.Visitors, "visitors", 100, "widget sockets, one conversation each")
	f.IntVar(&cfg.Agents, "agents", 4, "agent sockets; the conversations are spread over them")
	f.IntVar(&cfg.Rate, "rate", 500, "visitor messages per second, in total")
	f.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to send")
	return cmd
}
