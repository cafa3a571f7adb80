package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/chatpacket/chatpacket/cluster/admin"
	"github.com/spf13/cobra"
)

// addClusterCommands adds the cluster's operator commands to the admin
// command: `admin cluster status` and `admin node drain`. A command
// already there is not added again.
func addClusterCommands(adminCmd *cobra.Command) {
	have := make(map[string]bool)
	for _, c := range adminCmd.Commands() {
		have[c.Name()] = true
	}
	for _, c := range []*cobra.Command{newAdminClusterCommand(), newAdminNodeCommand()} {
		if !have[c.Name()] {
			adminCmd.AddCommand(c)
		}
	}
}

// defaultDataDir is serve's default, so that both find the same node.
const defaultDataDir = "./chatpacket-data"

const adminSocketHelp = `It talks to the node that runs with --data-dir, through the Unix socket
that node keeps in it (DATA_DIR/admin.sock, readable only by the user the
node runs as): run it on the node's machine, as that user. It exits with
status 1 when no node runs with that data dir.`

func newAdminClusterCommand() *cobra.Command {
	cluster := &cobra.Command{
		Use:   "cluster",
		Short: "Inspect the cluster through a running node",
	}
	var dataDir string
	var asJSON bool
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the members and every shard's leader, voters and lag",
		Long: `Show the cluster as the node of --data-dir sees it.

First this node's id (the NODE that 'chatpacket admin node drain' takes),
then the members gossip shows (node id, grain remote and raft addresses),
then one line per shard: its leader, its voters, this node's role in it and
this node's raft log (last, committed and applied index; lag is committed
minus applied here). The last line sums up what needs attention: shards
without a leader, and under-replicated shards (fewer live voters than
min(replicas, nodes that can hold them)).

Use it to check that a new node took its replicas before relying on it,
that a drain finished before stopping a node, and after a failure, that
every shard has a leader again. A node knows only the shards it is a
replica of: with more nodes than replicas, the others show as "not a
replica here"; ask one of their voters' nodes.

` + adminSocketHelp,
		Example: `  chatpacket admin cluster status --data-dir /var/lib/chatpacket
  chatpacket admin cluster status --json | jq '.summary'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			st, err := admin.NewClient(dataDir).Status(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), st)
			}
			return printStatus(cmd.OutOrStdout(), st)
		},
	}
	status.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "data dir of the node to ask (its --data-dir)")
	status.Flags().BoolVar(&asJSON, "json", false, "print the node's answer as JSON instead of tables")
	cluster.AddCommand(status)
	return cluster
}

func newAdminNodeCommand() *cobra.Command {
	node := &cobra.Command{
		Use:   "node",
		Short: "Operate on one node of the cluster",
	}
	var dataDir string
	var timeout time.Duration
	drain := &cobra.Command{
		Use:   "drain NODE",
		Short: "Move every replica off a node, so that it can be stopped with nothing lost",
		Long: `Drain a node before stopping it for good (decommission, replacement, a
machine going away): its shards' data moves to the other nodes first, so
that stopping it loses nothing and never leaves a shard short of a quorum.

The node drains itself: it hands the leadership of every shard it leads to
another voter, and tells the cluster it is leaving, so that each shard's
leader adds a replacement replica where one is needed and then removes this
node. NODE is the node's id, as 'chatpacket admin cluster status' prints it,
and must be the node of --data-dir: the check keeps a drain from hitting the
wrong node. A line a second shows how many shards it still leads and is a
voter of; the drain ends when both are zero, and then the node can be
stopped (SIGTERM) with nothing lost.

A drain needs other nodes to take the replicas: it is refused on a node
alone. Once started, a drain cannot be undone while the node runs:
interrupted or timed out, the node stays out of placement and keeps
draining; run the command again to watch it finish. Restarting the node
with the same data dir brings it back into placement. To stop a node for a
short while (an upgrade) there is no need to drain it: the other replicas
keep its shards available, and it catches up when it comes back.

` + adminSocketHelp,
		Example: `  chatpacket admin cluster status --data-dir /var/lib/chatpacket   # prints the node id
  chatpacket admin node drain n-0123456789ab --data-dir /var/lib/chatpacket
  systemctl stop chatpacket`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return drainNode(ctx, cmd.OutOrStdout(), dataDir, args[0], timeout)
		},
	}
	drain.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "data dir of the node to drain (its --data-dir)")
	drain.Flags().DurationVar(&timeout, "timeout", admin.DefaultDrainTimeout, "how long to wait for the drain to finish (at most 1h)")
	node.AddCommand(drain)
	return node
}

// drainNode drains the node of dataDir, which must be nodeID, printing its
// progress to out.
func drainNode(ctx context.Context, out io.Writer, dataDir, nodeID string, timeout time.Duration) error {
	if timeout <= 0 {
		return fmt.Errorf("--timeout %v: want a positive duration", timeout)
	}
	c := admin.NewClient(dataDir)
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	st, err := c.Status(sctx)
	cancel()
	if err != nil {
		return err
	}
	if st.NodeID != nodeID {
		for _, m := range st.Members {
			if m.NodeID == nodeID {
				return fmt.Errorf("data dir %s belongs to node %s, not %s: a node drains only itself. Node %s is the member at grain remote %s, raft %s: run this on its machine, with its --data-dir",
					dataDir, st.NodeID, nodeID, nodeID, m.RemoteAddr, m.RaftAddr)
			}
		}
		return fmt.Errorf("data dir %s belongs to node %s, not %s, and no live member has id %s: check the id with 'chatpacket admin cluster status --data-dir %s'",
			dataDir, st.NodeID, nodeID, nodeID, dataDir)
	}

	// The node ends the drain at timeout; the margin lets its answer say
	// what was left.
	dctx, cancel := context.WithTimeout(ctx, min(timeout, admin.MaxDrainTimeout)+30*time.Second)
	defer cancel()
	started := false
	err = c.Drain(dctx, nodeID, timeout, func(p admin.Progress) {
		if !started {
			started = true
			fmt.Fprintf(out, "draining node %s (data dir %s): it hands its shards' leadership to other nodes, whose leaders then remove it\n", nodeID, dataDir)
		}
		fmt.Fprintf(out, "%6.1fs  leading %d shards, voter of %d shards\n", p.Elapsed, len(p.Leading), len(p.Voter))
	})
	var refused *admin.RefusedError
	switch {
	case errors.As(err, &refused):
		return err // nothing started
	case err == nil:
		fmt.Fprintf(out, "node %s is drained: it leads no shard and is a voter of none; every shard's data is on the other nodes.\n"+
			"It can now be stopped (SIGTERM) with nothing lost. Until it stops it still serves requests; restarted with the same data dir, it would take replicas again.\n", nodeID)
		return nil
	case errors.Is(err, admin.ErrNoNode):
		return err
	case ctx.Err() != nil:
		return fmt.Errorf("interrupted: node %s stays draining until it stops; run the drain again to watch it finish", nodeID)
	}
	return fmt.Errorf("drain of node %s did not finish: %w\nThe node stays draining until it stops; run the drain again to wait longer, and check 'chatpacket admin cluster status' for shards short of voters", nodeID, err)
}

// printStatus writes st as tables for a person.
func printStatus(out io.Writer, st *admin.Status) error {
	draining := ""
	if st.Draining {
		draining = ", DRAINING"
	}
	fmt.Fprintf(out, "node %s (data dir %s)%s: leads %d of %d shards, voter of %d\n\n",
		st.NodeID, st.DataDir, draining, st.Summary.Leading, st.Summary.Shards, st.Summary.Voter)

	// What each member leads and votes in, among the shards this node
	// is a replica of.
	leads, votes := map[string]int{}, map[string]int{}
	for _, sh := range st.Shards {
		if !sh.Replica {
			continue
		}
		leads[sh.Leader]++
		for _, v := range sh.Voters {
			votes[v]++
		}
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "MEMBERS (%d)\n", len(st.Members))
	fmt.Fprintln(tw, "NODE\tREMOTE\tRAFT\tLEADS\tVOTER OF\t")
	for _, m := range st.Members {
		var notes []string
		if m.Self {
			notes = append(notes, "this node")
		}
		if m.Draining {
			notes = append(notes, "draining")
		}
		if m.NodeID == "" {
			notes = append(notes, "holds no shards")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", orDash(m.NodeID), m.RemoteAddr, orDash(m.RaftAddr), leads[m.NodeID], votes[m.NodeID], strings.Join(notes, ", "))
	}
	fmt.Fprintln(tw)
	here := len(st.Shards) - len(st.Summary.NotReplica)
	fmt.Fprintf(tw, "SHARDS (%d of %d replicated on this node; LAG: committed minus applied here)\n", here, len(st.Shards))
	if here > 0 {
		fmt.Fprintln(tw, "SHARD\tLEADER\tVOTERS\tROLE\tLAST\tCOMMIT\tAPPLIED\tLAG")
	}
	for _, sh := range st.Shards {
		if !sh.Replica {
			continue // this node knows nothing reliable of it
		}
		voters := make([]string, 0, len(sh.Voters)+len(sh.NonVoters))
		for _, v := range sh.Voters {
			if slices.Contains(sh.Gone, v) {
				v += "(gone)"
			}
			voters = append(voters, v)
		}
		for _, v := range sh.NonVoters {
			voters = append(voters, v+"(catching up)")
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\n", sh.Shard, orDash(sh.Leader), strings.Join(voters, ","), sh.Role,
			sh.LastIndex, sh.CommitIndex, sh.AppliedIndex, sh.ApplyLag)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	s := st.Summary
	parts := []string{
		fmt.Sprintf("%d shards", s.Shards),
		fmt.Sprintf("%d without a leader%s", len(s.Leaderless), shardList(s.Leaderless)),
		fmt.Sprintf("%d under-replicated (fewer than %d live %s)%s", len(s.UnderReplicated), s.WantVoters, plural(s.WantVoters, "voter"), shardList(s.UnderReplicated)),
	}
	if len(s.NotReplica) > 0 {
		parts = append(parts, fmt.Sprintf("%d not replicated on this node%s (ask their voters' nodes)", len(s.NotReplica), shardList(s.NotReplica)))
	}
	_, err := fmt.Fprintf(out, "\nsummary: %s\n", strings.Join(parts, "; "))
	return err
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shardList is " [1 2 3]", at most 20 shards, or "" for none.
func shardList(shards []uint16) string {
	if len(shards) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(" [")
	for i, s := range shards {
		if i == 20 {
			fmt.Fprintf(&b, " ... %d more", len(shards)-i)
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.Itoa(int(s)))
	}
	b.WriteByte(']')
	return b.String()
}
