package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/chatpacket/chatpacket/cluster/admin"
	"github.com/spf13/cobra"
)

// `chatpacket admin policy publish|show`: announcing a change of the
// privacy policy to every tenant owner, through a node's admin socket.

// policyPublishTimeout bounds the wait for a publication: the node stops
// waiting for its emails after 20 s and goes on in the background.
const policyPublishTimeout = time.Minute

func newAdminPolicyCommand() *cobra.Command {
	policy := &cobra.Command{
		Use:   "policy",
		Short: "Announce changes of the privacy policy to every tenant owner",
	}
	var dataDir, effective, summary, link string
	publish := &cobra.Command{
		Use:   "publish",
		Short: "Publish a coming change of the privacy policy and email every tenant owner",
		Long: `Publish a change of the privacy policy, effective at 00:00 UTC of --effective.

The policy promises that changes are announced at least 14 days ahead: the
effective date must be 14 days or more after today's date (UTC). Published on
2026-11-28 at any hour, the earliest date is 2026-12-12; 2026-12-11 is
refused, and nothing is stored or sent.

The notice is stored cluster-wide (replicated like every record), every page
of the dashboard (the signup page too) shows a banner "Our privacy policy
changes on DATE: SUMMARY" until that date, then "changed on" for 30 days,
and GET /api/v1/policy answers it. The owner of every organization of the
cluster is emailed. The command waits up to 20 seconds for the emails and
reports how many went; the rest go on in the node's background (see its log).

Emails are sent at least once: if some failed, or the node stopped before it
finished, publish the same notice again. Publishing a date again replaces its
summary and link (keeping the first publication time) and emails every owner
again.

` + adminSocketHelp,
		Example: `  chatpacket admin policy publish --effective 2027-01-15 \
    --summary "We now keep closed conversations for 12 months instead of 24." \
    --url https://chatpacket.example/privacy`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if effective == "" || summary == "" {
				return fmt.Errorf("give --effective YYYY-MM-DD and --summary TEXT")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), policyPublishTimeout)
			defer cancel()
			res, err := admin.NewClient(dataDir).PublishPolicy(ctx, admin.PolicyPublish{EffectiveDate: effective, Summary: summary, URL: link})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "published: the privacy policy changes on %s\n", res.Notice.EffectiveDate)
			switch {
			case res.Done && res.Error == "":
				fmt.Fprintf(w, "emailed %d of %d tenant owners", res.Sent, res.Owners)
			case res.Done:
				fmt.Fprintf(w, "emailed %d tenant owners before the emails stopped: %s", res.Sent, res.Error)
			default:
				fmt.Fprintf(w, "emailed %d tenant owners so far; the rest are being sent in the background (see the node's log)", res.Sent)
			}
			if res.Failed > 0 {
				fmt.Fprintf(w, "; %d failed after retries", res.Failed)
			}
			fmt.Fprintln(w)
			if res.Failed > 0 || res.Error != "" {
				return fmt.Errorf("not every owner was emailed: publish the same notice again once mail works (owners already emailed get it twice)")
			}
			return nil
		},
	}
	publish.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "data dir of the node to ask (its --data-dir)")
	publish.Flags().StringVar(&effective, "effective", "", "the date the new policy takes effect, YYYY-MM-DD (UTC), at least 14 days after today")
	publish.Flags().StringVar(&summary, "summary", "", "what changes, in a sentence or two (at most 500 bytes): the banner and the email show it")
	publish.Flags().StringVar(&link, "url", "", "where the new policy is (http or https), linked from the banner and the email")

	var showDir string
	var asJSON bool
	show := &cobra.Command{
		Use:   "show",
		Short: "List the published policy changes, coming and past",
		Long: `List every published policy change, latest effective date first: its date,
whether it is upcoming or changed already, when it was published, its
summary and link.

` + adminSocketHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			list, err := admin.NewClient(showDir).PolicyNotices(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), list)
			}
			if len(list) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no policy change published")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "EFFECTIVE\tSTATE\tPUBLISHED\tSUMMARY\tURL")
			for _, n := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.EffectiveDate, n.State, n.PublishedAt, n.Summary, n.URL)
			}
			return tw.Flush()
		},
	}
	show.Flags().StringVar(&showDir, "data-dir", defaultDataDir, "data dir of the node to ask (its --data-dir)")
	show.Flags().BoolVar(&asJSON, "json", false, "print the notices as JSON")
	policy.AddCommand(publish, show)
	return policy
}
