// Command chatpacket runs a ChatPacket node and the operator's commands.
// main is thin: it builds the command tree, runs it, and alone exits.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "chatpacket:", err)
		os.Exit(1)
	}
}
