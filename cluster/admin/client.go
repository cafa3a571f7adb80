package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"
)

// ErrNoNode means no node answers on the data dir's admin socket.
var ErrNoNode = errors.New("no node running")

// RefusedError is the node's refusal of a request: nothing was done.
type RefusedError struct {
	Status int    // the HTTP status
	Msg    string // the node's reason
}

func (e *RefusedError) Error() string { return e.Msg }

// Client talks to the node that owns a data dir, over its admin socket.
type Client struct {
	dataDir string
	path    string
	hc      *http.Client
}

// NewClient returns a client of the node that owns dataDir. It connects
// at each call: the node may start or stop in between.
func NewClient(dataDir string) *Client {
	c := &Client{dataDir: dataDir, path: SocketPath(dataDir)}
	c.hc = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "unix", c.path)
			if err != nil {
				return nil, c.dialError(err)
			}
			return conn, nil
		},
		DisableKeepAlives: true,
	}}
	return c
}

// dialError explains why the node cannot be reached, in an operator's
// words.
func (c *Client) dialError(err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT):
		return fmt.Errorf("%w with data dir %s (admin socket missing)", ErrNoNode, c.dataDir)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w with data dir %s (stale admin socket %s: the node stopped without removing it)", ErrNoNode, c.dataDir, c.path)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("cannot reach the node of data dir %s: %s: permission denied (run this as the user the node runs as)", c.dataDir, c.path)
	}
	return fmt.Errorf("cannot reach the node of data dir %s: %w", c.dataDir, err)
}

// do sends a request and returns a 200 answer; any other status is a
// *RefusedError with the node's message.
func (c *Client) do(ctx context.Context, method, path string, q url.Values) (*http.Response, error) {
	return c.send(ctx, method, path, q, nil)
}

// send is do with a request body.
func (c *Client) send(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Response, error) {
	u := url.URL{Scheme: "http", Host: "admin", Path: path, RawQuery: q.Encode()}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// Drop net/http's "Get "http://admin/...": " prefix: the
		// operator never typed that URL.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		e := apiError{Error: fmt.Sprintf("%s %s: the node answered %s", method, path, resp.Status)}
		json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&e)
		return nil, &RefusedError{Status: resp.StatusCode, Msg: e.Error}
	}
	return resp, nil
}

// Status asks the node how it sees the cluster.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	resp, err := c.do(ctx, http.MethodGet, "/cluster", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, fmt.Errorf("read the node's status: %w", err)
	}
	return &st, nil
}

// Drain asks the node, which must be nodeID, to drain itself, and calls
// progress with each line it streams (about one a second) until the drain
// ends. It returns nil once the node leads no shard and is a voter of
// none, and a *RefusedError when the node refused to start (another node
// id, nowhere to move the replicas). timeout bounds the drain on the
// node's side; ctx bounds the wait here, and ending it leaves the node
// draining.
func (c *Client) Drain(ctx context.Context, nodeID string, timeout time.Duration, progress func(Progress)) error {
	q := url.Values{"node": {nodeID}, "timeout": {timeout.String()}}
	resp, err := c.do(ctx, http.MethodPost, "/drain", q)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var p Progress
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			return fmt.Errorf("read the drain's progress: %w", err)
		}
		if progress != nil {
			progress(p)
		}
		switch {
		case p.Error != "":
			return errors.New(p.Error)
		case p.Done:
			return nil
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("the node stopped answering before the drain finished: %w", err)
	}
	return errors.New("the node stopped answering before the drain finished (was it stopped?)")
}

// Backup asks the node to write a backup of every shard into dir (an
// absolute path; empty: DATA_DIR/backups/<UTC time> on the node), calling
// progress with each line it streams. It returns the last line, with the
// backup's directory and manifest, or the node's error.
func (c *Client) Backup(ctx context.Context, dir string, progress func(BackupProgress)) (*BackupProgress, error) {
	q := url.Values{}
	if dir != "" {
		q.Set("dir", dir)
	}
	resp, err := c.do(ctx, http.MethodPost, "/backup", q)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 16<<20) // the last line carries the manifest
	for sc.Scan() {
		var p BackupProgress
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			return nil, fmt.Errorf("read the backup's progress: %w", err)
		}
		switch {
		case p.Error != "":
			return nil, errors.New(p.Error)
		case p.Done:
			return &p, nil
		}
		if progress != nil {
			progress(p)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("the node stopped answering before the backup finished: %w", err)
	}
	return nil, errors.New("the node stopped answering before the backup finished (was it stopped?)")
}

// Ledger returns the node's shred ledger in the ledger file format.
func (c *Client) Ledger(ctx context.Context) ([]byte, error) {
	resp, err := c.do(ctx, http.MethodGet, "/ledger", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read the node's ledger: %w", err)
	}
	return b, nil
}
