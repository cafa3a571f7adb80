package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// Overdue privacy requests over the admin socket: `chatpacket admin privacy
// overdue`. Each business answers its visitors' requests within 30 days;
// the operator sees, across every tenant of the cluster, the ones that are
// late. GET /privacy/overdue answers {"requests":[OverdueRequest…]}, the
// latest first.

// Privacy lists what the operator needs to see of the tenants' requests
// ledgers (the node's API). Safe for concurrent use.
type Privacy interface {
	OverdueRequests(ctx context.Context) ([]OverdueRequest, error)
}

// OverdueRequest is an open request past its due date. It holds no
// personal data: ids, kinds and times.
type OverdueRequest struct {
	TenantID     string `json:"tenant_id"`
	Organization string `json:"organization"`
	RequestID    string `json:"request_id"`
	Kind         string `json:"kind"`
	VisitorID    string `json:"visitor_id,omitempty"`
	RequestedAt  string `json:"requested_at"`
	DueAt        string `json:"due_at"`
	DaysLate     int    `json:"days_late"`
}

func (s *Server) handleOverdue(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Privacy == nil {
		writeError(w, http.StatusServiceUnavailable, "this node does not serve the API: it cannot read the requests ledgers")
		return
	}
	list, err := s.cfg.Privacy.OverdueRequests(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if list == nil {
		list = []OverdueRequest{}
	}
	writeJSON(w, http.StatusOK, map[string][]OverdueRequest{"requests": list})
}

// OverdueRequests lists the open privacy requests past their due date, in
// every tenant of the cluster.
func (c *Client) OverdueRequests(ctx context.Context) ([]OverdueRequest, error) {
	resp, err := c.do(ctx, http.MethodGet, "/privacy/overdue", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Requests []OverdueRequest `json:"requests"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("read the node's answer: %w", err)
	}
	return out.Requests, nil
}
