package main

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	netmail "net/mail"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/chatpacket/chatpacket/transport/mail"
	"github.com/spf13/cobra"
)

const outboxHelp = `A node with no --smtp-host writes every email it sends (account
verification, password resets, security alerts, invitations) to
DATA_DIR/outbox, one RFC 5322 file (.eml) a message, readable only by the
user the node runs as. This command reads those files: it works whether the
node runs or not, on the node's machine, as that user.

Messages are numbered from 1, oldest first; a negative N counts from the
newest (-1, or 'last', is the newest). The messages hold live links (password
resets, invitations): show them only to the person they are for.`

func newAdminOutboxCommand() *cobra.Command {
	var dataDir, show string
	var asJSON bool
	outbox := &cobra.Command{
		Use:   "outbox",
		Short: "List or show the emails a node without SMTP wrote to its outbox",
		Long: `List the emails in the outbox of --data-dir, one line a message: its number,
time (UTC), recipient and subject. --show prints one message in full.

` + outboxHelp,
		Example: `  chatpacket admin outbox --data-dir /var/lib/chatpacket
  chatpacket admin outbox --show last
  chatpacket admin outbox show 3
  chatpacket admin outbox --json | jq -r '.[] | select(.to == "ada@example.com") | .file'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if show != "" {
				return showOutboxMessage(cmd.OutOrStdout(), dataDir, show, asJSON)
			}
			return listOutbox(cmd.OutOrStdout(), dataDir, asJSON)
		},
	}
	outbox.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "data dir of the node (its --data-dir)")
	outbox.Flags().StringVar(&show, "show", "", "print one message in full: its number N (--show=-1 or 'last': the newest) or file name")
	outbox.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of text")

	var showDataDir string
	var showJSON bool
	showCmd := &cobra.Command{
		Use:   "show N|last|FILE",
		Short: "Print one message of the outbox in full",
		Long: `Print one message of the outbox of --data-dir in full: its headers, with
the subject decoded, and its text. N is a number as 'chatpacket admin outbox'
lists them; FILE is a file name in the outbox, or a path to an .eml file.

` + outboxHelp,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return showOutboxMessage(cmd.OutOrStdout(), showDataDir, args[0], showJSON)
		},
	}
	showCmd.Flags().StringVar(&showDataDir, "data-dir", defaultDataDir, "data dir of the node (its --data-dir)")
	showCmd.Flags().BoolVar(&showJSON, "json", false, "print the message as JSON")
	outbox.AddCommand(showCmd)
	return outbox
}

// outboxEntry is one message of the outbox as the command prints it.
type outboxEntry struct {
	N       int       `json:"n"`
	File    string    `json:"file"`
	Time    time.Time `json:"time"`
	From    string    `json:"from,omitempty"`
	To      string    `json:"to"`
	Subject string    `json:"subject"`
	Text    string    `json:"text,omitempty"`
	// Error says why the file could not be read as a message.
	Error string `json:"error,omitempty"`
}

// outboxFiles lists the outbox of dataDir, oldest first.
func outboxFiles(dataDir string) (string, []string, error) {
	if _, err := os.Stat(dataDir); err != nil {
		return "", nil, fmt.Errorf("no data dir %s (give the node's --data-dir): %w", dataDir, err)
	}
	dir := filepath.Join(dataDir, "outbox")
	files, err := (&mail.Outbox{Dir: dir}).List()
	return dir, files, err
}

func listOutbox(out io.Writer, dataDir string, asJSON bool) error {
	dir, files, err := outboxFiles(dataDir)
	if err != nil {
		return err
	}
	entries := make([]outboxEntry, 0, len(files))
	for i, f := range files {
		e := readOutboxMessage(f)
		e.N, e.Text, e.From = i+1, "", ""
		entries = append(entries, e)
	}
	if asJSON {
		return printJSON(out, entries)
	}
	if len(entries) == 0 {
		_, err := fmt.Fprintf(out, "the outbox %s is empty\n", dir)
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "N\tTIME (UTC)\tTO\tSUBJECT")
	for _, e := range entries {
		subject := e.Subject
		if e.Error != "" {
			subject = "(unreadable: " + e.Error + ")"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", e.N, formatOutboxTime(e.Time), e.To, subject)
	}
	return tw.Flush()
}

func formatOutboxTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

// showOutboxMessage prints the message which names: a number, "last" or a
// file.
func showOutboxMessage(out io.Writer, dataDir, which string, asJSON bool) error {
	file, n, err := findOutboxMessage(dataDir, which)
	if err != nil {
		return err
	}
	e := readOutboxMessage(file)
	e.N = n
	if e.Error != "" {
		return fmt.Errorf("%s: %s", file, e.Error)
	}
	if asJSON {
		return printJSON(out, e)
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	head, body, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	var b strings.Builder
	dec := new(mime.WordDecoder)
	for line := range strings.SplitSeq(string(head), "\r\n") {
		if d, err := dec.DecodeHeader(line); err == nil {
			line = d
		}
		b.WriteString(line + "\n")
	}
	fmt.Fprintf(&b, "X-Outbox-File: %s\n\n", file)
	b.WriteString(strings.ReplaceAll(string(body), "\r\n", "\n"))
	_, err = io.WriteString(out, b.String())
	return err
}

// findOutboxMessage resolves which to a file of the outbox and its number
// (0 for a file given by path that is not in the outbox).
func findOutboxMessage(dataDir, which string) (string, int, error) {
	if which == "last" {
		which = "-1"
	}
	if i, err := strconv.Atoi(which); err == nil {
		dir, files, err := outboxFiles(dataDir)
		if err != nil {
			return "", 0, err
		}
		n := i
		if i < 0 {
			n = len(files) + 1 + i
		}
		if i == 0 || n < 1 || n > len(files) {
			return "", 0, fmt.Errorf("no message %s in the outbox %s: it holds %d (numbered 1 to %d, oldest first; -1 is the newest)", which, dir, len(files), len(files))
		}
		return files[n-1], n, nil
	}
	dir := filepath.Join(dataDir, "outbox")
	file := which
	if filepath.Base(which) == which {
		file = filepath.Join(dir, which)
	}
	if _, err := os.Stat(file); err != nil {
		return "", 0, fmt.Errorf("no message %s: %w (give a number or a file name 'chatpacket admin outbox' lists)", which, err)
	}
	if files, err := (&mail.Outbox{Dir: dir}).List(); err == nil {
		for i, f := range files {
			if same(f, file) {
				return file, i + 1, nil
			}
		}
	}
	return file, 0, nil
}

func same(a, b string) bool {
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// readOutboxMessage parses one .eml file; a file it cannot parse comes
// back with Error set, so that one bad file does not hide the others.
func readOutboxMessage(file string) outboxEntry {
	e := outboxEntry{File: filepath.Base(file)}
	f, err := os.Open(file)
	if err != nil {
		e.Error = err.Error()
		return e
	}
	defer f.Close()
	m, err := netmail.ReadMessage(f)
	if err != nil {
		e.Error = err.Error()
		return e
	}
	dec := new(mime.WordDecoder)
	header := func(k string) string {
		v := m.Header.Get(k)
		if d, err := dec.DecodeHeader(v); err == nil {
			return d
		}
		return v
	}
	e.From, e.To, e.Subject = header("From"), header("To"), header("Subject")
	if t, err := m.Header.Date(); err == nil {
		e.Time = t.UTC()
	}
	body, err := io.ReadAll(m.Body)
	if err != nil {
		e.Error = err.Error()
		return e
	}
	e.Text = strings.ReplaceAll(string(body), "\r\n", "\n")
	return e
}
