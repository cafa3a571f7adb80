package transport

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/gateway"
	"github.com/chatpacket/chatpacket/actors/grainpb"
	"github.com/chatpacket/chatpacket/storage"
	"github.com/coder/websocket"
)

// The WebSocket protocol of API.md: JSON text frames. The client sends
// send, resume, typing and read; the server answers ack and error, and
// pushes message, typing, read and conversation frames for every
// conversation the socket watches (resumed, or started by a send on it).

func (a *API) registerSockets(s *http.ServeMux) {
	s.Handle("GET /ws/widget", http.HandlerFunc(a.widgetSocket))
	s.Handle("GET /ws/agent", http.HandlerFunc(a.agentSocket))
}

// clientFrame is any frame a client sends; fields not used by its type are
// ignored.
type clientFrame struct {
	Type           string `json:"type"`
	URL            string `json:"url"`
	Title          string `json:"title"`
	Referrer       string `json:"referrer"`
	ConversationID string `json:"conversation_id"`
	ClientID       string `json:"client_id"`
	Body           string `json:"body"`
	After          uint64 `json:"after"`
	Seq            uint64 `json:"seq"`
}

// socket is one connection's session: who it acts as and what it watches.
type socket struct {
	api    *API
	conn   *Conn
	tenant storage.ID
	author *actorspb.Author
	// visitor is set for widget sockets: they see only its conversations.
	visitor *visitor
	// access is set for agent sockets: which conversations they see.
	access *socketAccess

	// owned: on widget sockets, conversations known to be the visitor's.
	// A conversation's visitor never changes, so once checked it need not
	// be read again for each message. Used by the reading goroutine only.
	owned map[storage.ID]bool

	mu      sync.Mutex
	watches map[storage.ID]*gateway.Watch
}

// maxOwned bounds a widget socket's owned set: a visitor has a few
// conversations; past this many the set starts over.
const maxOwned = 64

// own records that conv is the socket's visitor's.
func (s *socket) own(conv storage.ID) {
	if s.visitor == nil {
		return
	}
	if s.owned == nil || len(s.owned) >= maxOwned {
		s.owned = make(map[storage.ID]bool)
	}
	s.owned[conv] = true
}

func (a *API) widgetSocket(w http.ResponseWriter, r *http.Request) {
	v, err := a.authenticateVisitor(r, r.URL.Query().Get("token"))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	// The widget runs on the business's own site: cross-origin by design.
	// The visitor token, not a cookie, is the credential, so a foreign page
	// gains nothing by opening this socket; the tenant's allowed origins
	// narrow it further once they are set. They are whole origins (scheme
	// included), which the library's host patterns cannot express: checked
	// here, then any origin passes the library.
	settings, err := a.widgetSettings(v.tenant)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if !a.originAllowed(r, settings) {
		a.writeError(w, r, errOriginNotAllowed)
		return
	}
	conn, err := AcceptConn(w, r, []string{"*"})
	if err != nil {
		return
	}
	s := &socket{api: a, conn: conn, tenant: v.tenant, visitor: &v,
		author: &actorspb.Author{Kind: actorspb.AuthorKind_AUTHOR_KIND_VISITOR, Id: v.id[:]}, watches: map[storage.ID]*gateway.Watch{}}
	go s.serve(context.WithoutCancel(r.Context()), nil)
}

func (a *API) agentSocket(w http.ResponseWriter, r *http.Request) {
	// A GET never needs the CSRF token, so a cookie would let any site open
	// this socket in a logged-in agent's browser: same-origin only.
	p, err := a.authenticate(r)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	conn, err := AcceptConn(w, r, nil)
	if err != nil {
		return
	}
	s := &socket{api: a, conn: conn, tenant: p.tenant, access: &socketAccess{api: a, tenant: p.tenant, agent: p.agent, role: p.role},
		author: &actorspb.Author{Kind: actorspb.AuthorKind_AUTHOR_KIND_AGENT, Id: p.agent[:]}, watches: map[storage.ID]*gateway.Watch{}}
	// The agent sees every conversation of the tenant it may see as it
	// becomes active: the tenant's summaries say which, and Summary
	// watches each.
	tw, err := a.Gateway.WatchTenant(p.tenant, s)
	if err != nil {
		a.Log.Error("watching a tenant for an agent socket", "err", err)
		conn.Close(websocket.StatusTryAgainLater, "try again")
		return
	}
	go s.serve(context.WithoutCancel(r.Context()), tw.Close)
}

// serve runs the socket until it closes, then calls done (if not nil).
//
// It runs on a goroutine of its own, and the HTTP handler that accepted
// the socket returns: the handler's goroutine grew its stack through
// authentication and the upgrade (to 16 KiB, measured), and kept the
// request and net/http's state of it alive; a socket needs none of them.
// A fresh goroutine starts small, and an idle socket's blocked read does
// not outgrow it. ctx is the request's, without its cancellation: the
// socket outlives the handler, and CloseSockets ends it with the server.
func (s *socket) serve(ctx context.Context, done func()) {
	if done != nil {
		defer done()
	}
	owner := s.access != nil && s.access.role == actorspb.Role_ROLE_OWNER
	if !s.api.track(s.conn, socketOwner{tenant: s.tenant, owner: owner}) {
		return
	}
	defer s.api.untrack(s.conn)
	kind := "agent"
	if s.visitor != nil {
		kind = "widget"
	}
	open := s.api.metrics.socketsOpen.WithLabelValues(kind)
	open.Inc()
	defer open.Dec()
	defer func() {
		s.mu.Lock()
		watches := s.watches
		s.watches = nil
		s.mu.Unlock()
		for _, w := range watches {
			w.Close()
		}
	}()
	s.conn.Serve(ctx, s.handle)
}

func (s *socket) handle(ctx context.Context, raw []byte) {
	var f clientFrame
	if err := json.Unmarshal(raw, &f); err != nil {
		s.conn.SendError("bad_json", "frames are JSON objects")
		return
	}
	var err error
	switch f.Type {
	case "send":
		err = s.send(ctx, f)
	case "resume":
		err = s.resume(ctx, f)
	case "typing":
		err = s.typing(ctx, f)
	case "read":
		err = s.read(ctx, f)
	case "page_view":
		err = s.pageView(ctx, f)
	default:
		err = errorf(http.StatusBadRequest, "unknown_type", "no frame type %q", f.Type)
	}
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			s.api.Log.Error("socket frame failed", "type", f.Type, "err", err)
			ae = errorf(http.StatusInternalServerError, "internal", "something went wrong; try again")
		}
		s.conn.SendError(ae.code, ae.message)
	}
}

// conversation resolves a frame's conversation and checks that the socket
// may use it; for a visitor's send without one, it derives the new
// conversation's id from the client_id.
func (s *socket) conversation(ctx context.Context, f clientFrame, mayBeNew bool) (storage.ID, error) {
	var conv storage.ID
	if f.ConversationID == "" {
		if s.visitor == nil || !mayBeNew || f.ClientID == "" {
			return conv, errorf(http.StatusBadRequest, "invalid", "give a conversation_id")
		}
		return newConversationID(*s.visitor, f.ClientID), nil
	}
	conv, err := storage.ParseID(f.ConversationID)
	if err != nil {
		return conv, errorf(http.StatusNotFound, "not_found", "no such conversation")
	}
	if s.owned[conv] {
		return conv, nil
	}
	rec, err := s.api.Machine.Conversation(ctx, s.tenant, conv)
	switch {
	case err != nil && mayBeNew && s.visitor != nil:
		return conv, nil
	case err != nil:
		return conv, errorf(http.StatusNotFound, "not_found", "no such conversation")
	case s.visitor != nil && string(rec.VisitorId) != string(s.visitor.id[:]):
		return conv, errorf(http.StatusNotFound, "not_found", "no such conversation")
	}
	s.own(conv)
	if s.access != nil {
		ac, err := s.access.current(ctx)
		if err != nil {
			return conv, err
		}
		if !ac.sees(rec) {
			return conv, errorf(http.StatusNotFound, "not_found", "no such conversation")
		}
	}
	return conv, nil
}

func (s *socket) send(ctx context.Context, f clientFrame) error {
	conv, err := s.conversation(ctx, f, true)
	if err != nil {
		return err
	}
	if s.visitor != nil {
		// Not stored: the client may send it again, with the same client_id.
		if err := s.api.limitVisitorMessage(nil, *s.visitor); err != nil {
			return err
		}
	}
	req := &grainpb.PostRequest{TenantId: s.tenant[:], ClientId: f.ClientID, Body: f.Body, Author: s.author}
	if s.visitor != nil {
		req.VisitorId = s.visitor.id[:]
	}
	began := time.Now()
	res, err := grainpb.GetConversationGrainClient(s.api.Cluster, conv.String()).Post(req)
	if err != nil {
		return grainError(err)
	}
	// Acknowledged only now: the message is durable. A conversation whose
	// id derives from this visitor's id is theirs.
	if f.ConversationID == "" {
		s.own(conv)
	}
	s.api.metrics.posted(authorOf(s.author).Kind, began)
	s.conn.SendJSON(ackFrame{Type: "ack", ClientID: f.ClientID, ConversationID: conv.String(), Seq: res.Seq})
	// The sender sees the conversation live from here; a socket that
	// resumed it already does.
	return s.watch(conv, res.Seq-1, false)
}

func (s *socket) resume(ctx context.Context, f clientFrame) error {
	conv, err := s.conversation(ctx, f, false)
	if err != nil {
		return err
	}
	return s.watch(conv, f.After, true)
}

// watch starts delivering conv after seq; replace restarts an existing
// watch (a resume), otherwise an existing one is kept.
func (s *socket) watch(conv storage.ID, after uint64, replace bool) error {
	s.mu.Lock()
	old, ok := s.watches[conv]
	s.mu.Unlock()
	if ok && !replace {
		return nil
	}
	if ok {
		old.Close()
	}
	w, err := s.api.Gateway.Watch(s.tenant, conv, after, s)
	if err != nil {
		return grainError(err)
	}
	s.mu.Lock()
	cur, raced := s.watches[conv]
	if s.watches == nil || raced && cur != old && !replace {
		// The socket closed meanwhile, or another frame (a resume, a
		// summary) started a watch first: keep that one.
		s.mu.Unlock()
		w.Close()
		return nil
	}
	s.watches[conv] = w
	s.mu.Unlock()
	if raced && cur != old {
		cur.Close()
	}
	return nil
}

// Summary handles a summary of one of the tenant's conversations (agent
// sockets, gateway.TenantSink): a conversation the socket does not watch
// yet is announced with a conversation frame and watched from the summary's
// since_seq, so its new messages follow. Watched ones need nothing: their
// watch delivers messages and changes. A conversation the agent may not
// see is skipped, and unwatched if it was watched (the agent left its
// team) with a conversation_removed frame.
func (s *socket) Summary(sum *grainpb.ConversationSummary) error {
	c := sum.GetConversation()
	conv := storage.BytesID(c.GetId())
	ctx, cancel := context.WithTimeout(context.Background(), RequestDeadline)
	ac, err := s.access.current(ctx)
	cancel()
	if err != nil {
		s.api.Log.Warn("reading an agent's teams", "err", err)
		ac = s.access.cached()
	}
	visible := ac.sees(c)
	s.mu.Lock()
	w, watched := s.watches[conv]
	if watched && !visible {
		delete(s.watches, conv)
	}
	s.mu.Unlock()
	if !visible {
		if watched {
			w.Close()
			return s.conn.SendJSON(map[string]any{"type": "conversation_removed", "conversation_id": conv.String()})
		}
		return nil
	}
	if watched {
		return nil
	}
	if !ac.all {
		// Summaries can arrive after the change event that moved the
		// conversation out of the agent's teams: before watching, the team
		// as stored decides.
		ctx, cancel := context.WithTimeout(context.Background(), RequestDeadline)
		rec, err := s.api.Machine.Conversation(ctx, s.tenant, conv)
		cancel()
		if err != nil || !ac.sees(rec) {
			return nil
		}
	}
	frame := map[string]any{"type": "conversation", "conversation_id": conv.String(), "visitor_id": idString(c.VisitorId),
		"status": statusName(c.Status), "assignee_id": idString(c.AssigneeId), "last_seq": c.LastSeq, "team_id": idString(c.TeamId)}
	if err := s.conn.SendJSON(frame); err != nil {
		return err
	}
	if err := s.watch(conv, sum.SinceSeq, false); err != nil {
		s.api.Log.Warn("watching an active conversation for an agent", "err", err)
	}
	return nil
}

func (s *socket) typing(ctx context.Context, f clientFrame) error {
	conv, err := s.conversation(ctx, f, false)
	if err != nil {
		return err
	}
	_, err = grainpb.GetConversationGrainClient(s.api.Cluster, conv.String()).Typing(&grainpb.TypingRequest{TenantId: s.tenant[:], Author: s.author})
	return grainErrorOrNil(err)
}

func (s *socket) read(ctx context.Context, f clientFrame) error {
	conv, err := s.conversation(ctx, f, false)
	if err != nil {
		return err
	}
	_, err = grainpb.GetConversationGrainClient(s.api.Cluster, conv.String()).MarkRead(&grainpb.MarkReadRequest{TenantId: s.tenant[:], ReaderId: s.author.Id, Seq: f.Seq})
	return grainErrorOrNil(err)
}

// pageView records a page the visitor opened (widget sockets only): the
// agent's live context.
func (s *socket) pageView(ctx context.Context, f clientFrame) error {
	if s.visitor == nil {
		return errorf(http.StatusBadRequest, "unknown_type", "page_view is for widget sockets")
	}
	_, err := grainpb.GetVisitorGrainClient(s.api.Cluster, s.visitor.id.String()).PageView(&grainpb.PageViewRequest{
		TenantId: s.tenant[:], View: &actorspb.PageViewRecord{Url: f.URL, Title: f.Title, Referrer: f.Referrer},
	})
	return grainErrorOrNil(err)
}

func grainErrorOrNil(err error) error {
	if err == nil {
		return nil
	}
	return grainError(err)
}

// Deliver writes a conversation event as its frame (gateway.Sink).
// messageFrame and ackFrame are the frames of API.md sent for every
// message (the others are maps: rare).
type messageFrame struct {
	Type           string     `json:"type"`
	ConversationID string     `json:"conversation_id"`
	Seq            uint64     `json:"seq"`
	Author         authorJSON `json:"author"`
	Body           string     `json:"body"`
	ClientID       string     `json:"client_id"`
	CreatedAt      string     `json:"created_at"`
	Erased         bool       `json:"erased,omitempty"`
	Internal       bool       `json:"internal,omitempty"`
}

type ackFrame struct {
	Type           string `json:"type"`
	ClientID       string `json:"client_id"`
	ConversationID string `json:"conversation_id"`
	Seq            uint64 `json:"seq"`
}

func (s *socket) Deliver(ev *grainpb.ConversationEvent) error {
	conv := idString(ev.ConversationId)
	var frame map[string]any
	switch e := ev.Event.(type) {
	case *grainpb.ConversationEvent_Message:
		if s.visitor != nil && e.Message.Internal {
			return nil // an agents' note
		}
		// A struct, not a map: the hottest frame, sent once per watching
		// socket of every message, encodes without sorting map keys.
		m := messageOf(e.Message)
		return s.conn.SendJSON(messageFrame{Type: "message", ConversationID: conv, Seq: m.Seq, Author: m.Author,
			Body: m.Body, ClientID: m.ClientID, CreatedAt: m.CreatedAt, Erased: m.Erased, Internal: m.Internal})
	case *grainpb.ConversationEvent_Typing:
		if string(e.Typing.GetId()) == string(s.author.Id) {
			return nil // not one's own
		}
		frame = map[string]any{"type": "typing", "conversation_id": conv, "author": authorOf(e.Typing)}
	case *grainpb.ConversationEvent_Read:
		frame = map[string]any{"type": "read", "conversation_id": conv, "reader_id": idString(e.Read.ReaderId), "seq": e.Read.Seq}
	case *grainpb.ConversationEvent_Changed:
		c := e.Changed.GetConversation()
		if s.access != nil && !s.access.cached().sees(c) {
			// Moved to a team the agent is not in: nothing of it from now
			// on. Ending the watch (by the error) comes before any later
			// event of the conversation, so none of them is delivered.
			s.mu.Lock()
			delete(s.watches, storage.BytesID(ev.ConversationId))
			s.mu.Unlock()
			s.conn.SendJSON(map[string]any{"type": "conversation_removed", "conversation_id": conv})
			return errHidden
		}
		frame = map[string]any{"type": "conversation", "conversation_id": conv, "status": statusName(c.GetStatus()), "assignee_id": idString(c.GetAssigneeId()), "team_id": idString(c.GetTeamId())}
	default:
		return nil
	}
	return s.conn.SendJSON(frame)
}

// errHidden ends the watch of a conversation the socket may no longer see.
var errHidden = errors.New("transport: conversation no longer visible to the agent")

// accessTTL is how long an agent socket trusts the teams it read: a change
// of membership reaches sockets open on any node within it. A change of a
// conversation's team reaches them at once (its change event).
const accessTTL = 5 * time.Second

// socketAccess is what an agent socket may see. current may read the
// store (frames, summaries); cached never blocks (Deliver).
type socketAccess struct {
	api           *API
	tenant, agent storage.ID
	role          actorspb.Role // as when the socket opened

	mu   sync.Mutex
	ac   access
	read time.Time // zero: never read
}

func (sa *socketAccess) current(ctx context.Context) (access, error) {
	sa.mu.Lock()
	ac, read := sa.ac, sa.read
	sa.mu.Unlock()
	if !read.IsZero() && (ac.all || time.Since(read) < accessTTL) {
		return ac, nil
	}
	ac, err := sa.api.accessOf(ctx, sa.tenant, sa.agent, sa.role)
	if err != nil {
		return access{}, err
	}
	sa.mu.Lock()
	sa.ac, sa.read = ac, time.Now()
	sa.mu.Unlock()
	return ac, nil
}

func (sa *socketAccess) cached() access {
	sa.mu.Lock()
	defer sa.mu.Unlock()
	return sa.ac
}

var (
	_ gateway.Sink       = (*socket)(nil)
	_ gateway.TenantSink = (*socket)(nil)
)
