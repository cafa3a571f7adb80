package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/chatpacket/chatpacket/cluster/admin"
	"github.com/spf13/cobra"
)

// `chatpacket admin privacy overdue`: the operator's view of the privacy
// requests that businesses have not answered in time.

func newAdminPrivacyCommand() *cobra.Command {
	privacy := &cobra.Command{
		Use:   "privacy",
		Short: "The tenants' privacy requests, as the operator sees them",
	}
	var dataDir string
	var asJSON bool
	overdue := &cobra.Command{
		Use:   "overdue",
		Short: "List the open privacy requests past their due date, in every organization",
		Long: `List the privacy requests (access, correction, erasure, restriction,
withdrawal of consent) that an organization of the cluster recorded and has
not marked done within their 30 days, latest due first: the organization,
the request, its kind and visitor id, when it came, when it was due and how
many days late it is. It holds no personal data; the organization answers
the request from its dashboard (Privacy page).

` + adminSocketHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			list, err := admin.NewClient(dataDir).OverdueRequests(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), list)
			}
			if len(list) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no overdue privacy request")
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ORGANIZATION\tTENANT\tREQUEST\tKIND\tVISITOR\tDUE\tDAYS LATE")
			for _, r := range list {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", r.Organization, r.TenantID, r.RequestID, r.Kind, r.VisitorID, r.DueAt, r.DaysLate)
			}
			return tw.Flush()
		},
	}
	overdue.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "data dir of the node to ask (its --data-dir)")
	overdue.Flags().BoolVar(&asJSON, "json", false, "print the requests as JSON")
	privacy.AddCommand(overdue)
	return privacy
}
