package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// `chatpacket account export`: an owner's download of the whole
// organization through the HTTP API, for scripts and large tenants, with
// progress. It needs no access to a node's machine: a server URL and an
// API token of an owner.

func newAccountCommand() *cobra.Command {
	account := &cobra.Command{
		Use:   "account",
		Short: "Commands of an organization's owner, through the HTTP API",
	}
	var server, token, out string
	export := &cobra.Command{
		Use:   "export",
		Short: "Download everything your organization holds, as one JSON file",
		Long: `Download the export of your whole organization (GET /api/v1/account/export):
settings, agents and teams, pending invitations, every visitor with their
page views, every conversation with all its messages (agents' notes marked
"internal"), privacy requests and the audit log. The file's schema is in
docs/api.md; its "format" field names the version. Secrets never leave the
server: no password hash, 2FA secret, recovery code or token.

The token is an API token of an owner of the organization (POST
/api/v1/tokens while logged in as an owner). Prefer giving it in the
environment, CHATPACKET_TOKEN, to keep it out of your shell's history.

The file is written to FILE.partial as it arrives and renamed to FILE only
once the whole export arrived: a FILE that exists is complete. A progress
bar shows how many of the organization's conversations and visitors have
arrived (a line every 5 seconds when the output is not a terminal).`,
		Example: `  CHATPACKET_TOKEN=… chatpacket account export --server https://chat.example.com --out acme.json`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if server == "" || token == "" {
				return errors.New("give --server URL and --token TOKEN (or CHATPACKET_SERVER and CHATPACKET_TOKEN)")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return exportAccount(ctx, cmd.ErrOrStderr(), server, token, out)
		},
	}
	export.Flags().StringVar(&server, "server", "", "the ChatPacket server, e.g. https://chat.example.com")
	export.Flags().StringVar(&token, "token", "", "an owner's API token (better: CHATPACKET_TOKEN)")
	export.Flags().StringVar(&out, "out", "", "the file to write (default: the name the server suggests, in this directory)")
	account.AddCommand(export)
	return account
}

// exportAccount downloads the export into out, showing progress on
// progressTo.
func exportAccount(ctx context.Context, progressTo io.Writer, server, token, out string) error {
	u, err := url.Parse(strings.TrimSuffix(server, "/") + "/api/v1/account/export")
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--server %q: want http(s)://host[:port]", server)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	// No overall timeout: a large export takes as long as it takes. A
	// server that never answers is bounded by the header timeout.
	hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: 5 * time.Minute}}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach %s: %w", u.Host, unwrapURLError(err))
	}
	defer resp.Body.Close()
	if err := exportRefusal(resp); err != nil {
		return err
	}
	if out == "" {
		out = suggestedName(resp.Header.Get("Content-Disposition"))
	}
	items, _ := strconv.Atoi(resp.Header.Get("X-Export-Items"))
	partial := out + ".partial"
	f, err := os.OpenFile(partial, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	bar := newProgress(progressTo, items)
	cw := &countingWriter{w: f, progress: bar}
	_, err = io.Copy(cw, resp.Body)
	if err == nil && !cw.complete() {
		err = errors.New("the export ended early (the server cut it short: see its log)")
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(partial, out)
	}
	if err != nil {
		os.Remove(partial)
		bar.fail()
		if ctx.Err() != nil {
			return fmt.Errorf("export interrupted; nothing kept: %w", context.Cause(ctx))
		}
		return fmt.Errorf("export: %w", unwrapURLError(err))
	}
	bar.done(out, cw.bytes)
	return nil
}

// exportRefusal turns a refused export into the operator's words.
func exportRefusal(resp *http.Response) error {
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var e struct {
		Error struct{ Code, Message string }
	}
	json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return errors.New("the server refused the token (401): it is wrong, expired or revoked; create an API token as an owner (POST /api/v1/tokens)")
	case http.StatusForbidden:
		return fmt.Errorf("the server refused the export (403): %s", cmpOr(e.Error.Message, "only owners export the organization's data"))
	}
	return fmt.Errorf("the server answered %s: %s", resp.Status, cmpOr(e.Error.Message, "no reason given"))
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// suggestedName is the file name of a Content-Disposition, reduced to a
// plain name in the current directory.
func suggestedName(cd string) string {
	_, params, err := mime.ParseMediaType(cd)
	name := filepath.Base(params["filename"])
	if err != nil || name == "." || name == "/" || name == ".." || strings.HasPrefix(name, ".") {
		return "chatpacket-export.json"
	}
	return name
}

func unwrapURLError(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

// countingWriter counts what passes: bytes, the newlines that end each
// conversation and visitor of the export, and the nesting of the JSON
// document, to tell a whole document from a cut one.
type countingWriter struct {
	w        io.Writer
	bytes    int64
	lines    int
	progress *progress

	depth           int  // open objects and arrays
	closed          bool // the top-level value ended
	inString, escap bool
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.bytes += int64(n)
	for _, b := range p[:n] {
		switch {
		case c.escap:
			c.escap = false
		case c.inString:
			c.escap, c.inString = b == '\\', b != '"'
		case b == '"':
			c.inString = true
		case b == '{' || b == '[':
			c.depth++
		case b == '}' || b == ']':
			c.depth--
			c.closed = c.depth == 0
		case b == '\n' && c.depth > 0: // not the document's last
			c.lines++
		}
	}
	c.progress.update(c.lines, c.bytes)
	return n, err
}

// complete reports whether the document arrived whole: its top-level
// object closed.
func (c *countingWriter) complete() bool { return c.closed && c.depth == 0 }
