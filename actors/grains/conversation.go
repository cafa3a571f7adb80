package grains

import (
	"context"
	"time"

	pacluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/grainpb"
	"github.com/chatpacket/chatpacket/storage"
)

// MaxReadLimit bounds how many messages one Read returns.
const MaxReadLimit = 500

// SummaryWindow is how long a conversation coalesces its messages before it
// summarizes them to its tenant: a busy conversation costs its tenant one
// call per window, not one per message. Starts, assignments and closes are
// summarized at once.
const SummaryWindow = 100 * time.Millisecond

// conversation is the grain of one conversation. Its state of record is in
// the shard state machine; in memory it keeps who subscribed and what its
// tenant has been told.
type conversation struct {
	id   storage.ID
	deps *Deps
	subs subscribers
	// started: the tenant has been summarized to once in this activation;
	// listed: the conversation is in its visitor's list. Each is made sure
	// of once per activation, which repairs one lost to a crash between
	// a post and its listing.
	started, listed bool
	// summarized is the last seq the tenant was told of; pending is the
	// record to tell it next, sent when the window's timer (if timed) fires.
	summarized uint64
	pending    *actorspb.ConversationRecord
	tenant     []byte
	timed      bool
}

// summaryTimeout bounds a call to the tenant or visitor grain for listing
// and summaries: they are retried (the next post or window), so a grain
// whose node just died must not hold up this conversation for long.
const summaryTimeout = time.Second

// flushSummary is the grain's own timer message: send the pending summary.
type flushSummary struct{}

var _ grainpb.Conversation = (*conversation)(nil)

func (g *conversation) Init(ctx pacluster.GrainContext) {
	g.deps = depsOf(ctx.ActorSystem())
	g.subs = subscribers{}
	id, err := storage.ParseID(ctx.Identity())
	if err != nil {
		// Calls on a malformed identity fail below with ErrInvalid.
		g.deps.Log.Warn("conversation grain with a malformed identity", "identity", ctx.Identity())
	}
	g.id = id
	g.deps.announce(ctx, ctx.Kind(), ctx.Identity())
}

// Terminate tells the tenant what is pending before the grain passivates.
func (g *conversation) Terminate(ctx pacluster.GrainContext) { g.flush(ctx) }

func (g *conversation) ReceiveDefault(ctx pacluster.GrainContext) {
	if _, ok := ctx.Message().(flushSummary); ok {
		g.timed = false
		if !g.listed && g.pending != nil {
			g.listed = g.list(ctx, g.tenant, g.pending)
		}
		g.flush(ctx)
	}
}

func (g *conversation) apply(cmd *actorspb.Command) (*actorspb.Result, error) {
	if g.id == (storage.ID{}) {
		return nil, pacluster.NewGrainErrorResponse(ReasonInvalid, "malformed conversation id")
	}
	res, err := g.deps.apply(cmd)
	if err != nil {
		return nil, toGrainError(err)
	}
	return res, nil
}

func (g *conversation) Post(req *grainpb.PostRequest, ctx pacluster.GrainContext) (*grainpb.PostResponse, error) {
	now := g.deps.Now()
	res, err := g.apply(&actorspb.Command{Op: &actorspb.Command_Post{Post: &actorspb.PostMessage{
		TenantId: req.TenantId, ConversationId: g.id[:], VisitorId: req.VisitorId, Author: req.Author,
		ClientId: req.ClientId, Body: req.Body, UnixMs: now.UnixMilli(), Internal: req.Internal,
	}}})
	if err != nil {
		return nil, err
	}
	if !res.Duplicate {
		// Only after the commit: a subscriber never sees a message that
		// could still be lost.
		g.publish(ctx, req.TenantId, &grainpb.ConversationEvent{Event: &grainpb.ConversationEvent_Message{Message: &grainpb.Message{
			Seq: res.Seq, Author: req.Author, Body: req.Body, ClientId: req.ClientId, CreatedUnixMs: now.UnixMilli(), Internal: req.Internal,
		}}})
	}
	if !g.started {
		g.started = true
		g.summarized = res.Conversation.GetLastSeq() - 1
		if res.Duplicate {
			g.summarized = res.Conversation.GetLastSeq()
		}
	}
	switch {
	case res.Created:
		// A new conversation is listed under its visitor and in the inbox
		// before the answer, so an agent never misses one that a crash
		// would otherwise have left unlisted.
		g.listed = g.list(ctx, req.TenantId, res.Conversation)
		g.summarize(ctx, req.TenantId, res.Conversation, true)
	case !res.Duplicate || !g.listed:
		// Otherwise within the window, off the answer's path: a new
		// activation (after a move or a crash) lists itself again then,
		// idempotently, without making its first post wait on other
		// grains that may be moving too.
		g.summarize(ctx, req.TenantId, res.Conversation, false)
	}
	return &grainpb.PostResponse{Seq: res.Seq, Duplicate: res.Duplicate, Created: res.Created}, nil
}

func (g *conversation) Read(req *grainpb.ReadRequest, _ pacluster.GrainContext) (*grainpb.ReadResponse, error) {
	tenant, err := tenantOf(req.TenantId)
	if err != nil {
		return nil, err
	}
	limit := int(req.Limit)
	if limit <= 0 || limit > MaxReadLimit {
		limit = MaxReadLimit
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.deps.CallTimeout)
	defer cancel()
	msgs, err := g.deps.Machine.Messages(ctx, tenant, g.id, req.After, limit)
	if err != nil {
		return nil, toGrainError(err)
	}
	out := &grainpb.ReadResponse{Messages: make([]*grainpb.Message, 0, len(msgs))}
	for _, m := range msgs {
		if m.Erased {
			out.Messages = append(out.Messages, &grainpb.Message{Seq: m.Seq, Erased: true})
			continue
		}
		r := m.Record
		out.Messages = append(out.Messages, &grainpb.Message{Seq: r.Seq, Author: r.Author, Body: r.Body, ClientId: r.ClientId, CreatedUnixMs: r.CreatedUnixMs, Internal: r.Internal})
	}
	return out, nil
}

func (g *conversation) Subscribe(req *grainpb.SubscribeRequest, _ pacluster.GrainContext) (*grainpb.SubscribeResponse, error) {
	conv, err := g.conversation(req.TenantId)
	if err != nil {
		return nil, err
	}
	if err := g.subs.add(req, g.deps.Now()); err != nil {
		return nil, err
	}
	return &grainpb.SubscribeResponse{LastSeq: conv.LastSeq}, nil
}

func (g *conversation) Unsubscribe(req *grainpb.UnsubscribeRequest, _ pacluster.GrainContext) (*grainpb.Empty, error) {
	g.subs.remove(req.SubscriberAddress, req.SubscriberId, req.TenantId)
	return &grainpb.Empty{}, nil
}

func (g *conversation) Typing(req *grainpb.TypingRequest, ctx pacluster.GrainContext) (*grainpb.Empty, error) {
	if _, err := g.conversation(req.TenantId); err != nil {
		return nil, err
	}
	g.publish(ctx, req.TenantId, &grainpb.ConversationEvent{Event: &grainpb.ConversationEvent_Typing{Typing: req.Author}})
	return &grainpb.Empty{}, nil
}

func (g *conversation) MarkRead(req *grainpb.MarkReadRequest, ctx pacluster.GrainContext) (*grainpb.MarkReadResponse, error) {
	res, err := g.apply(&actorspb.Command{Op: &actorspb.Command_MarkRead{MarkRead: &actorspb.MarkRead{
		TenantId: req.TenantId, ConversationId: g.id[:], ReaderId: req.ReaderId, Seq: req.Seq,
	}}})
	if err != nil {
		return nil, err
	}
	g.publish(ctx, req.TenantId, &grainpb.ConversationEvent{Event: &grainpb.ConversationEvent_Read{Read: &grainpb.ReadEvent{ReaderId: req.ReaderId, Seq: res.Seq}}})
	return &grainpb.MarkReadResponse{Seq: res.Seq}, nil
}

func (g *conversation) Assign(req *grainpb.AssignRequest, ctx pacluster.GrainContext) (*grainpb.ConversationInfo, error) {
	return g.change(ctx, req.TenantId, &actorspb.Command{Op: &actorspb.Command_Assign{Assign: &actorspb.AssignConversation{
		TenantId: req.TenantId, ConversationId: g.id[:], AssigneeId: req.AssigneeId,
	}}})
}

func (g *conversation) Close(req *grainpb.CloseRequest, ctx pacluster.GrainContext) (*grainpb.ConversationInfo, error) {
	return g.change(ctx, req.TenantId, &actorspb.Command{Op: &actorspb.Command_Close{Close: &actorspb.CloseConversation{
		TenantId: req.TenantId, ConversationId: g.id[:], UnixMs: g.deps.Now().UnixMilli(),
	}}})
}

func (g *conversation) SetStatus(req *grainpb.SetStatusRequest, ctx pacluster.GrainContext) (*grainpb.ConversationInfo, error) {
	return g.change(ctx, req.TenantId, &actorspb.Command{Op: &actorspb.Command_SetStatus{SetStatus: &actorspb.SetConversationStatus{
		TenantId: req.TenantId, ConversationId: g.id[:], Status: req.Status,
	}}})
}

// SetTeam moves the conversation to a team (none when team_id is empty).
// Agent sockets learn of it from the summary, which carries the team.
func (g *conversation) SetTeam(req *grainpb.SetTeamRequest, ctx pacluster.GrainContext) (*grainpb.ConversationInfo, error) {
	return g.change(ctx, req.TenantId, &actorspb.Command{Op: &actorspb.Command_SetConversationTeam{SetConversationTeam: &actorspb.SetConversationTeam{
		TenantId: req.TenantId, ConversationId: g.id[:], TeamId: req.TeamId,
	}}})
}

// change applies a command that changes the conversation's metadata and
// tells the subscribers.
func (g *conversation) change(ctx pacluster.GrainContext, tenant []byte, cmd *actorspb.Command) (*grainpb.ConversationInfo, error) {
	res, err := g.apply(cmd)
	if err != nil {
		return nil, err
	}
	info := &grainpb.ConversationInfo{Conversation: res.Conversation}
	g.publish(ctx, tenant, &grainpb.ConversationEvent{Event: &grainpb.ConversationEvent_Changed{Changed: info}})
	g.summarize(ctx, tenant, res.Conversation, true)
	return info, nil
}

// conversation reads the conversation's record for tenant.
func (g *conversation) conversation(tenantRaw []byte) (*actorspb.ConversationRecord, error) {
	tenant, err := tenantOf(tenantRaw)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.deps.CallTimeout)
	defer cancel()
	rec, err := g.deps.Machine.Conversation(ctx, tenant, g.id)
	if err != nil {
		return nil, toGrainError(err)
	}
	return rec, nil
}

// publish sends ev to the conversation's subscribers in tenant.
func (g *conversation) publish(ctx pacluster.GrainContext, tenant []byte, ev *grainpb.ConversationEvent) {
	ev.ConversationId = g.id[:]
	g.subs.publish(ctx, tenant, ev, g.deps.Now())
}

// list makes sure the conversation is in its visitor's list. It reports
// success; a failure is logged and retried on the next post.
func (g *conversation) list(ctx pacluster.GrainContext, tenant []byte, conv *actorspb.ConversationRecord) bool {
	_, err := grainpb.GetVisitorGrainClient(ctx.Cluster(), storage.BytesID(conv.VisitorId).String()).AddConversation(&grainpb.AddConversationRequest{
		TenantId: tenant, Conversation: &actorspb.VisitorConversation{ConversationId: g.id[:], CreatedUnixMs: conv.CreatedUnixMs},
	}, pacluster.WithTimeout(summaryTimeout))
	if err != nil {
		g.deps.Log.Warn("listing a conversation under its visitor", "err", err)
	}
	return err == nil
}

// summarize tells the tenant about the conversation: now, or when the
// window's timer fires (one timer per window, carrying the latest record).
func (g *conversation) summarize(ctx pacluster.GrainContext, tenant []byte, conv *actorspb.ConversationRecord, now bool) {
	g.pending, g.tenant = conv, tenant
	if now {
		g.flush(ctx)
		return
	}
	if !g.timed {
		g.timed = true
		system, self := ctx.ActorSystem(), ctx.Self()
		time.AfterFunc(SummaryWindow, func() { system.Root.Send(self, flushSummary{}) })
	}
}

// flush sends the pending summary, if any. On failure it stays pending for
// the next post or timer: the inbox listing is idempotent and a summary
// carries the whole record, so a late one is as good as a timely one.
func (g *conversation) flush(ctx pacluster.GrainContext) {
	if g.pending == nil {
		return
	}
	conv := g.pending
	_, err := grainpb.GetTenantGrainClient(ctx.Cluster(), storage.BytesID(g.tenant).String()).Summarize(&grainpb.ConversationSummary{
		TenantId: g.tenant, Conversation: conv, SinceSeq: g.summarized,
	}, pacluster.WithTimeout(summaryTimeout))
	if err != nil {
		g.deps.Log.Warn("summarizing a conversation to its tenant", "err", err)
		return
	}
	g.pending, g.summarized = nil, conv.LastSeq
}

func tenantOf(raw []byte) (storage.ID, error) { return idOf(raw, "tenant_id") }
