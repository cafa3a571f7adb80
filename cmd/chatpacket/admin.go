package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/chatpacket/chatpacket/storage"
	"github.com/spf13/cobra"
)

func newAdminCommand() *cobra.Command {
	admin := &cobra.Command{
		Use:   "admin",
		Short: "Operator commands",
	}
	key := &cobra.Command{
		Use:   "key",
		Short: "Master key commands",
	}
	key.AddCommand(&cobra.Command{
		Use:   "generate",
		Short: "Print a new random master key",
		Long: `Print a new random 32-byte master key as 64 hex digits.

Keep it outside the data dir (a secrets manager, or a file readable only by
the service user) and give it to 'chatpacket serve' with --master-key-file or
CHATPACKET_MASTER_KEY. A store opens only with the key it was created with.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), storage.GenerateMasterKey())
			return err
		},
	})
	admin.AddCommand(key, newAdminOutboxCommand(), newAdminPolicyCommand(), newAdminPrivacyCommand())
	addClusterCommands(admin)
	addBackupCommands(admin)
	return admin
}

// printJSON writes v as indented JSON: the --json output of the admin
// commands.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
