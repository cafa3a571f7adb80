package transport

import (
	"crypto/sha256"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/grainpb"
	"github.com/chatpacket/chatpacket/actors/grains"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/storage"
)

// VisitorTokenTTL is how long a visitor token works; the widget asks for a
// new one with its session id whenever it starts.
const VisitorTokenTTL = 7 * 24 * time.Hour

func (a *API) registerWidget(s *http.ServeMux) {
	s.Handle("POST /api/v1/widget/sessions", a.handler(a.widgetSession))
	s.Handle("POST /api/v1/widget/messages", a.handler(a.visitorOnly(a.widgetPost)))
	s.Handle("GET /api/v1/widget/conversations/{id}/messages", a.handler(a.visitorOnly(a.widgetMessages)))
	s.Handle("GET /api/v1/widget/conversations", a.handler(a.visitorOnly(a.widgetConversations)))
	s.Handle("GET /api/v1/widget/config", a.handler(a.widgetConfig))
}

// widgetConfig is what the widget shows before anyone chats: the
// business's name, colour and greeting. It is public, like the widget key.
func (a *API) widgetConfig(_ http.ResponseWriter, r *http.Request) (int, any, error) {
	tenant, err := a.tenantOfWidgetKey(r, r.URL.Query().Get("widget_key"))
	if err != nil {
		return 0, nil, err
	}
	t, err := a.widgetSettings(tenant)
	if err != nil {
		return 0, nil, err
	}
	st := settingsOf(t)
	return http.StatusOK, map[string]string{"name": st.Name, "widget_color": st.WidgetColor, "widget_greeting": st.WidgetGreeting}, nil
}

type widgetSessionRequest struct {
	WidgetKey string `json:"widget_key"`
	SessionID string `json:"session_id"`
}

// widgetSession starts or continues a visitor's session: the same
// session_id again is the same visitor.
func (a *API) widgetSession(_ http.ResponseWriter, r *http.Request) (int, any, error) {
	var req widgetSessionRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	ctx := r.Context()
	tenant, err := a.tenantOfWidgetKey(r, req.WidgetKey)
	if err != nil {
		return 0, nil, err
	}
	settings, err := a.widgetSettings(tenant)
	if err != nil {
		return 0, nil, err
	}
	if !a.originAllowed(r, settings) {
		return 0, nil, errOriginNotAllowed
	}
	now := a.Now()
	visitor, sessionID, found := storage.ID{}, req.SessionID, false
	if sessionID != "" && len(sessionID) <= 100 {
		idx, err := a.Machine.Index(ctx, grains.SessionIndexName(tenant, sessionID))
		switch {
		case err == nil && string(idx.TenantId) == string(tenant[:]):
			visitor, found = storage.BytesID(idx.TargetId), true
		case err != nil && !errors.Is(err, shard.ErrNotFound) && !errors.Is(err, storage.ErrErased):
			return 0, nil, err
		}
	}
	if !found {
		// A new visitor, with a new session id: never one the client chose,
		// so a session id cannot be planted.
		visitor = storage.NewID()
		sessionID, _ = newToken("vs_")
	}
	if _, err := grainpb.GetVisitorGrainClient(a.Cluster, visitor.String()).Start(&grainpb.StartRequest{
		TenantId: tenant[:], Create: !found, SessionId: sessionID, Tech: techOf(r),
	}); err != nil {
		return 0, nil, grainError(err)
	}
	token, hash := newToken("v_")
	if _, err := a.apply(ctx, &actorspb.Command{Op: &actorspb.Command_PutToken{PutToken: &actorspb.PutToken{Hash: hash, Token: &actorspb.TokenRecord{
		Kind: actorspb.TokenKind_TOKEN_KIND_VISITOR, TenantId: tenant[:], SubjectId: visitor[:],
		ExpiresUnixMs: now.Add(VisitorTokenTTL).UnixMilli(), CreatedUnixMs: now.UnixMilli(),
	}}}}); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]string{"session_id": sessionID, "visitor_id": visitor.String(), "visitor_token": token}, nil
}

func (a *API) tenantOfWidgetKey(r *http.Request, widgetKey string) (storage.ID, error) {
	if !strings.HasPrefix(widgetKey, "wk_") || len(widgetKey) > 100 {
		return storage.ID{}, errorf(http.StatusBadRequest, "invalid_widget_key", "give the widget key of the snippet")
	}
	idx, err := a.Machine.Index(r.Context(), grains.GlobalIndexName("widget_key", widgetKey))
	if errors.Is(err, shard.ErrNotFound) || errors.Is(err, storage.ErrErased) {
		return storage.ID{}, errorf(http.StatusNotFound, "unknown_widget_key", "no widget has this key")
	}
	if err != nil {
		return storage.ID{}, err
	}
	return storage.BytesID(idx.TenantId), nil
}

// visitor is who a widget request acts as.
type visitor struct{ tenant, id storage.ID }

// visitorOnly runs fn for a request with a valid visitor bearer token.
func (a *API) visitorOnly(fn func(w http.ResponseWriter, r *http.Request, v visitor) (int, any, error)) func(http.ResponseWriter, *http.Request) (int, any, error) {
	return func(w http.ResponseWriter, r *http.Request) (int, any, error) {
		v, err := a.authenticateVisitor(r, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		if err != nil {
			return 0, nil, err
		}
		if _, err := a.widgetSettings(v.tenant); err != nil {
			return 0, nil, err
		}
		return fn(w, r, v)
	}
}

func (a *API) authenticateVisitor(r *http.Request, token string) (visitor, error) {
	var v visitor
	if !strings.HasPrefix(token, "v_") {
		return v, errUnauthenticated
	}
	rec, err := a.Machine.Token(r.Context(), hashToken(token))
	switch {
	case errors.Is(err, shard.ErrNotFound), errors.Is(err, storage.ErrErased):
		return v, errUnauthenticated
	case err != nil:
		return v, err
	case rec.Kind != actorspb.TokenKind_TOKEN_KIND_VISITOR || a.Now().UnixMilli() > rec.ExpiresUnixMs:
		return v, errUnauthenticated
	}
	return visitor{tenant: storage.BytesID(rec.TenantId), id: storage.BytesID(rec.SubjectId)}, nil
}

type postRequest struct {
	ConversationID string `json:"conversation_id"`
	ClientID       string `json:"client_id"`
	Body           string `json:"body"`
}

// newConversationID derives the id of a conversation a visitor starts from
// the client_id of its first message, so that a retry of that message
// finds the same conversation and gets the same seq.
func newConversationID(v visitor, clientID string) storage.ID {
	h := sha256.Sum256(append(append([]byte("chatpacket conversation v1"), v.id[:]...), clientID...))
	return storage.BytesID(h[:16])
}

// visitorConversation checks that conv is one of v's conversations (or
// does not exist yet, for a post that starts it).
func (a *API) visitorConversation(r *http.Request, v visitor, conv storage.ID, mayBeNew bool) error {
	rec, err := a.Machine.Conversation(r.Context(), v.tenant, conv)
	switch {
	case errors.Is(err, shard.ErrNotFound) && mayBeNew:
		return nil
	case errors.Is(err, shard.ErrNotFound):
		return errorf(http.StatusNotFound, "not_found", "no such conversation")
	case err != nil:
		return err
	case string(rec.VisitorId) != string(v.id[:]):
		return errorf(http.StatusNotFound, "not_found", "no such conversation")
	}
	return nil
}

func (a *API) widgetPost(w http.ResponseWriter, r *http.Request, v visitor) (int, any, error) {
	if err := a.limitVisitorMessage(w, v); err != nil {
		return 0, nil, err
	}
	var req postRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if req.ClientID == "" {
		return 0, nil, errorf(http.StatusBadRequest, "invalid", "give a client_id")
	}
	conv := newConversationID(v, req.ClientID)
	if req.ConversationID != "" {
		id, err := storage.ParseID(req.ConversationID)
		if err != nil {
			return 0, nil, errorf(http.StatusBadRequest, "invalid_conversation_id", "not a conversation id")
		}
		conv = id
	}
	if err := a.visitorConversation(r, v, conv, true); err != nil {
		return 0, nil, err
	}
	began := time.Now()
	res, err := grainpb.GetConversationGrainClient(a.Cluster, conv.String()).Post(&grainpb.PostRequest{
		TenantId: v.tenant[:], VisitorId: v.id[:], ClientId: req.ClientID, Body: req.Body,
		Author: &actorspb.Author{Kind: actorspb.AuthorKind_AUTHOR_KIND_VISITOR, Id: v.id[:]},
	})
	if err != nil {
		return 0, nil, grainError(err)
	}
	a.metrics.posted("visitor", began)
	return http.StatusCreated, map[string]any{"conversation_id": conv.String(), "seq": res.Seq}, nil
}

func (a *API) widgetMessages(_ http.ResponseWriter, r *http.Request, v visitor) (int, any, error) {
	conv, err := storage.ParseID(r.PathValue("id"))
	if err != nil {
		return 0, nil, errorf(http.StatusNotFound, "not_found", "no such conversation")
	}
	if err := a.visitorConversation(r, v, conv, false); err != nil {
		return 0, nil, err
	}
	return a.readMessages(r, v.tenant, conv, true)
}

// widgetConversations lists the visitor's conversations, newest first.
func (a *API) widgetConversations(_ http.ResponseWriter, r *http.Request, v visitor) (int, any, error) {
	res, err := grainpb.GetVisitorGrainClient(a.Cluster, v.id.String()).Conversations(&grainpb.TenantRequest{TenantId: v.tenant[:]})
	if err != nil {
		return 0, nil, grainError(err)
	}
	out := make([]conversationJSON, 0, len(res.Conversations))
	for _, c := range res.Conversations {
		rec, err := a.Machine.Conversation(r.Context(), v.tenant, storage.BytesID(c.ConversationId))
		if err != nil {
			continue // erased, or not yet written where this node reads
		}
		out = append(out, conversationOf(rec))
	}
	return http.StatusOK, map[string]any{"conversations": out}, nil
}

// readMessages answers GET …/messages?after=SEQ&limit=N.
// readMessages answers a page of a conversation's messages after the
// query's seq. A visitor's page leaves the agents' notes out and reads on
// until it has limit messages or none are left, so that a page shorter
// than limit still means the end.
func (a *API) readMessages(r *http.Request, tenant, conv storage.ID, forVisitor bool) (int, any, error) {
	after, limit := uint64(0), int64(100)
	if s := r.URL.Query().Get("after"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, nil, errorf(http.StatusBadRequest, "invalid_after", "after is a seq")
		}
		after = n
	}
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil || n < 1 || n > 500 {
			return 0, nil, errorf(http.StatusBadRequest, "invalid_limit", "limit is 1 to 500")
		}
		limit = n
	}
	grain := grainpb.GetConversationGrainClient(a.Cluster, conv.String())
	msgs := make([]messageJSON, 0, limit)
	for int64(len(msgs)) < limit {
		res, err := grain.Read(&grainpb.ReadRequest{TenantId: tenant[:], After: after, Limit: int32(limit - int64(len(msgs)))})
		if err != nil {
			return 0, nil, grainError(err)
		}
		for _, m := range res.Messages {
			after = m.Seq
			if forVisitor && m.Internal {
				continue
			}
			msgs = append(msgs, messageOf(m))
		}
		if !forVisitor || len(res.Messages) == 0 {
			break
		}
	}
	return http.StatusOK, map[string]any{"messages": msgs}, nil
}

// messageJSON is a message as API.md shows it.
type messageJSON struct {
	Seq       uint64     `json:"seq"`
	Author    authorJSON `json:"author"`
	Body      string     `json:"body"`
	ClientID  string     `json:"client_id,omitempty"`
	CreatedAt string     `json:"created_at,omitempty"`
	Erased    bool       `json:"erased,omitempty"`
	Internal  bool       `json:"internal,omitempty"` // an agents' note (agents only)
}

type authorJSON struct {
	Kind string `json:"kind"`
	ID   string `json:"id,omitempty"`
}

func messageOf(m *grainpb.Message) messageJSON {
	if m.Erased {
		return messageJSON{Seq: m.Seq, Erased: true, Author: authorJSON{Kind: "visitor"}}
	}
	return messageJSON{
		Seq: m.Seq, Author: authorOf(m.Author), Body: m.Body, ClientID: m.ClientId,
		CreatedAt: time.UnixMilli(m.CreatedUnixMs).UTC().Format(time.RFC3339), Internal: m.Internal,
	}
}

func authorOf(a *actorspb.Author) authorJSON {
	out := authorJSON{}
	switch a.GetKind() {
	case actorspb.AuthorKind_AUTHOR_KIND_VISITOR:
		out.Kind = "visitor"
	case actorspb.AuthorKind_AUTHOR_KIND_AGENT:
		out.Kind = "agent"
	default:
		return authorJSON{Kind: "system"}
	}
	out.ID = storage.BytesID(a.GetId()).String()
	return out
}
