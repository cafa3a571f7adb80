package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "chatpacket",
		Short: "Live chat for businesses: one binary, one node or a cluster",
		Long: `ChatPacket is a live-chat platform: visitors chat through a widget on a
business's site, agents answer in the dashboard. Everything it stores is
encrypted under per-tenant and per-person keys, so erasing a person or a
tenant is destroying a key.

Every flag can also be given in the environment as CHATPACKET_<FLAG>, with
dashes as underscores (--data-dir is CHATPACKET_DATA_DIR). A flag on the
command line wins over the environment.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Every command reads its flags from the environment first.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return flagsFromEnv(cmd.Flags())
		},
	}
	root.AddCommand(newServeCommand(), newAdminCommand(), newAccountCommand(), newBenchCommand())
	return root
}

// flagsFromEnv sets every flag not given on the command line from
// CHATPACKET_<FLAG>, when that is set.
func flagsFromEnv(flags *pflag.FlagSet) error {
	var err error
	flags.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" {
			return
		}
		name := "CHATPACKET_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if e := flags.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", name, v, e)
			}
		}
	})
	return err
}
