package transport

import (
	"errors"
	"net/http"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/grainpb"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/storage"
)

// MaxInbox bounds how many conversations one inbox listing returns.
const MaxInbox = 200

func (a *API) registerConversations(s *http.ServeMux) {
	s.Handle("GET /api/v1/conversations", a.handler(a.authenticated(a.listConversations)))
	s.Handle("GET /api/v1/conversations/{id}/messages", a.handler(a.authenticated(a.agentMessages)))
	s.Handle("POST /api/v1/conversations/{id}/messages", a.handler(a.authenticated(a.agentPost)))
	s.Handle("POST /api/v1/conversations/{id}/close", a.handler(a.authenticated(a.closeConversation)))
	s.Handle("POST /api/v1/conversations/{id}/status", a.handler(a.authenticated(a.setStatus)))
	s.Handle("POST /api/v1/conversations/{id}/assign", a.handler(a.authenticated(a.assign)))
	s.Handle("POST /api/v1/conversations/{id}/notes", a.handler(a.authenticated(a.agentNote)))
}

type conversationJSON struct {
	ID            string `json:"id"`
	VisitorID     string `json:"visitor_id"`
	Status        string `json:"status"`
	AssigneeID    string `json:"assignee_id,omitempty"`
	LastMessageAt string `json:"last_message_at,omitempty"`
	LastSeq       uint64 `json:"last_seq"`
	TeamID        string `json:"team_id"`
}

func conversationOf(rec *actorspb.ConversationRecord) conversationJSON {
	c := conversationJSON{ID: idString(rec.Id), VisitorID: idString(rec.VisitorId), Status: statusName(rec.Status), AssigneeID: idString(rec.AssigneeId), LastSeq: rec.LastSeq, TeamID: idString(rec.TeamId)}
	if rec.LastMessageUnixMs > 0 {
		c.LastMessageAt = time.UnixMilli(rec.LastMessageUnixMs).UTC().Format(time.RFC3339)
	}
	return c
}

var statusNames = map[actorspb.ConversationStatus]string{
	actorspb.ConversationStatus_CONVERSATION_STATUS_OPEN:    "open",
	actorspb.ConversationStatus_CONVERSATION_STATUS_PENDING: "pending",
	actorspb.ConversationStatus_CONVERSATION_STATUS_CLOSED:  "closed",
}

func statusName(s actorspb.ConversationStatus) string {
	if name, ok := statusNames[s]; ok {
		return name
	}
	return "open"
}

// statusOf parses a status name; ok is false for anything else.
func statusOf(name string) (actorspb.ConversationStatus, bool) {
	for s, n := range statusNames {
		if n == name {
			return s, true
		}
	}
	return 0, false
}

// idString is the text form of an optional id field: "" when unset.
func idString(raw []byte) string {
	if len(raw) == 0 {
		return ""
	}
	return storage.BytesID(raw).String()
}

// listConversations answers the inbox: the tenant's conversations the
// caller may see, with their current status, read from each conversation
// (the inbox lists which conversations there are; they know their own
// state).
func (a *API) listConversations(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	want := r.URL.Query().Get("status")
	switch want {
	case "":
		want = "open"
	case "open", "pending", "closed", "all":
	default:
		return 0, nil, errorf(http.StatusBadRequest, "invalid_status", "status is open, pending, closed or all")
	}
	ac, err := a.access(r, p)
	if err != nil {
		return 0, nil, err
	}
	entries, err := a.Machine.Inbox(r.Context(), p.tenant, storage.ID{}, MaxInbox)
	if err != nil {
		return 0, nil, err
	}
	out := make([]conversationJSON, 0, len(entries))
	for _, e := range entries {
		id := storage.BytesID(e.ConversationId)
		rec, err := a.Machine.Conversation(r.Context(), p.tenant, id)
		if err != nil {
			continue // erased or not committed yet: not shown
		}
		if !ac.sees(rec) {
			continue
		}
		c := conversationOf(rec)
		if want == "all" || want == c.Status {
			out = append(out, c)
		}
	}
	return http.StatusOK, map[string]any{"conversations": out}, nil
}

// agentConversation parses the path's conversation id. Handlers read it
// through visibleConversation, which answers 404 for another tenant's
// conversation and for one the caller may not see.
func agentConversation(r *http.Request) (storage.ID, error) {
	id, err := storage.ParseID(r.PathValue("id"))
	if err != nil {
		return id, errorf(http.StatusNotFound, "not_found", "no such conversation")
	}
	return id, nil
}

func (a *API) agentMessages(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	conv, _, err := a.visibleConversation(r, p)
	if err != nil {
		return 0, nil, err
	}
	return a.readMessages(r, p.tenant, conv, false)
}

func (a *API) agentPost(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	return a.agentWrite(r, p, false)
}

// agentNote adds an internal note: a message for the team that the
// visitor never sees.
func (a *API) agentNote(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	return a.agentWrite(r, p, true)
}

func (a *API) agentWrite(r *http.Request, p *principal, internal bool) (int, any, error) {
	// Agents answer conversations; they do not start them.
	conv, _, err := a.visibleConversation(r, p)
	if err != nil {
		return 0, nil, err
	}
	var req postRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	began := time.Now()
	res, err := grainpb.GetConversationGrainClient(a.Cluster, conv.String()).Post(&grainpb.PostRequest{
		TenantId: p.tenant[:], ClientId: req.ClientID, Body: req.Body, Internal: internal,
		Author: &actorspb.Author{Kind: actorspb.AuthorKind_AUTHOR_KIND_AGENT, Id: p.agent[:]},
	})
	if err != nil {
		return 0, nil, grainError(err)
	}
	if !internal {
		a.metrics.posted("agent", began)
	}
	return http.StatusCreated, map[string]any{"seq": res.Seq}, nil
}

type statusRequest struct {
	Status string `json:"status"`
}

// setStatus sets a conversation open, pending (waiting on the visitor) or
// closed, and answers the conversation.
func (a *API) setStatus(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	conv, _, err := a.visibleConversation(r, p)
	if err != nil {
		return 0, nil, err
	}
	var req statusRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	status, ok := statusOf(req.Status)
	if !ok {
		return 0, nil, errorf(http.StatusBadRequest, "invalid_status", "status is open, pending or closed")
	}
	info, err := grainpb.GetConversationGrainClient(a.Cluster, conv.String()).SetStatus(&grainpb.SetStatusRequest{TenantId: p.tenant[:], Status: status})
	if err != nil {
		return 0, nil, grainError(err)
	}
	return http.StatusOK, conversationOf(info.Conversation), nil
}

type assignRequest struct {
	AssigneeID string `json:"assignee_id"`
}

// assign gives a conversation to an agent of the tenant ("" unassigns) and
// answers the conversation.
func (a *API) assign(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	conv, _, err := a.visibleConversation(r, p)
	if err != nil {
		return 0, nil, err
	}
	var req assignRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	var assignee []byte
	if req.AssigneeID != "" {
		errNoAgent := errorf(http.StatusBadRequest, "invalid_assignee", "assignee_id is not an agent of this team")
		id, err := storage.ParseID(req.AssigneeID)
		if err != nil {
			return 0, nil, errNoAgent
		}
		switch _, err := a.Machine.Agent(r.Context(), p.tenant, id); {
		case errors.Is(err, shard.ErrNotFound), errors.Is(err, storage.ErrErased):
			return 0, nil, errNoAgent
		case err != nil:
			return 0, nil, err
		}
		assignee = id[:]
	}
	info, err := grainpb.GetConversationGrainClient(a.Cluster, conv.String()).Assign(&grainpb.AssignRequest{TenantId: p.tenant[:], AssigneeId: assignee})
	if err != nil {
		return 0, nil, grainError(err)
	}
	return http.StatusOK, conversationOf(info.Conversation), nil
}

func (a *API) closeConversation(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	conv, _, err := a.visibleConversation(r, p)
	if err != nil {
		return 0, nil, err
	}
	if _, err := grainpb.GetConversationGrainClient(a.Cluster, conv.String()).Close(&grainpb.CloseRequest{TenantId: p.tenant[:]}); err != nil {
		return 0, nil, grainError(err)
	}
	return http.StatusNoContent, nil, nil
}
