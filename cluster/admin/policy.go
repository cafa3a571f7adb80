package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Policy notices over the admin socket: `chatpacket admin policy publish`
// and `chatpacket admin policy show`. The node's API does the work (it
// holds the state machine and the mail sender); this package carries the
// request and the answer.
//
//   - POST /policy with a PolicyPublish as JSON answers a PolicyPublished,
//     or 400 with the reason when the notice is refused (too soon, bad
//     summary or URL).
//   - GET /policy answers {"notices":[PolicyNotice…]}, latest first.

// ErrInvalid marks a request a Policy refuses: the node answers 400 with
// its message.
var ErrInvalid = errors.New("admin: invalid request")

// Policy publishes and lists the service's policy notices. Its methods are
// called concurrently, from the socket's handlers; they return within the
// request's context.
type Policy interface {
	PublishPolicy(ctx context.Context, req PolicyPublish) (*PolicyPublished, error)
	PolicyNotices(ctx context.Context) ([]PolicyNotice, error)
}

// PolicyPublish is a notice to publish.
type PolicyPublish struct {
	EffectiveDate string `json:"effective_date"` // YYYY-MM-DD, 00:00 UTC
	Summary       string `json:"summary"`
	URL           string `json:"url,omitempty"`
}

// PolicyNotice is a published notice.
type PolicyNotice struct {
	EffectiveDate string `json:"effective_date"`
	Summary       string `json:"summary"`
	URL           string `json:"url,omitempty"`
	PublishedAt   string `json:"published_at"`
	State         string `json:"state"` // upcoming, changed
}

// PolicyPublished is what a publication did: the notice is stored; Owners
// were found so far, Sent emailed, Failed not (after retries). Done is
// false when the emails go on in the background after the node stopped
// waiting for them.
type PolicyPublished struct {
	Notice PolicyNotice `json:"notice"`
	Owners int          `json:"owners"`
	Sent   int          `json:"sent"`
	Failed int          `json:"failed"`
	Done   bool         `json:"done"`
	Error  string       `json:"error,omitempty"` // why the emails stopped early
}

// maxPolicyRequest bounds a publication's body.
const maxPolicyRequest = 16 << 10

func (s *Server) handlePublishPolicy(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Policy == nil {
		writeError(w, http.StatusServiceUnavailable, "this node does not serve the API: it cannot publish a policy notice")
		return
	}
	var req PolicyPublish
	if err := json.NewDecoder(io.LimitReader(r.Body, maxPolicyRequest)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("a publication is JSON {effective_date, summary, url}: %v", err))
		return
	}
	out, err := s.cfg.Policy.PublishPolicy(r.Context(), req)
	switch {
	case errors.Is(err, ErrInvalid):
		writeError(w, http.StatusBadRequest, strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "))
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	s.log.Info("policy notice published", "effective", req.EffectiveDate, "owners", out.Owners, "sent", out.Sent, "failed", out.Failed, "done", out.Done)
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handlePolicyNotices(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Policy == nil {
		writeError(w, http.StatusServiceUnavailable, "this node does not serve the API: it cannot read policy notices")
		return
	}
	list, err := s.cfg.Policy.PolicyNotices(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string][]PolicyNotice{"notices": list})
}

// PublishPolicy asks the node to publish a notice and email every tenant
// owner. A refusal is a *RefusedError with the node's reason.
func (c *Client) PublishPolicy(ctx context.Context, req PolicyPublish) (*PolicyPublished, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	resp, err := c.send(ctx, http.MethodPost, "/policy", nil, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out PolicyPublished
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("read the node's answer: %w", err)
	}
	return &out, nil
}

// PolicyNotices lists the published notices, latest effective date first.
func (c *Client) PolicyNotices(ctx context.Context) ([]PolicyNotice, error) {
	resp, err := c.do(ctx, http.MethodGet, "/policy", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Notices []PolicyNotice `json:"notices"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("read the node's notices: %w", err)
	}
	return out.Notices, nil
}
