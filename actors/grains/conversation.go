package grains

import (
	"context"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pacluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/grainpb"
	"github.com/chatpacket/chatpacket/storage"
)

// MaxLease bounds a subscription's lease: a subscriber that stops renewing
// (its node died) is forgotten within it.
const MaxLease = time.Minute

// MaxReadLimit bounds how many messages one Read returns.
const MaxReadLimit = 500

// conversation is the grain of one conversation. Its state of record is in
// the shard state machine; in memory it keeps only who subscribed.
type conversation struct {
	id      storage.ID
	deps    *Deps
	subs    map[string]subscription // by subscriber PID key
	inboxed bool                    // listed in its tenant's inbox since activation
}

type subscription struct {
	pid     *actor.PID
	tenant  string
	expires time.Time
}

var _ grainpb.Conversation = (*conversation)(nil)

func (g *conversation) Init(ctx pacluster.GrainContext) {
	g.deps = depsOf(ctx.ActorSystem())
	g.subs = map[string]subscription{}
	id, err := storage.ParseID(ctx.Identity())
	if err != nil {
		// Calls on a malformed identity fail below with ErrInvalid.
		g.deps.Log.Warn("conversation grain with a malformed identity", "identity", ctx.Identity())
	}
	g.id = id
}

func (g *conversation) Terminate(pacluster.GrainContext)      {}
func (g *conversation) ReceiveDefault(pacluster.GrainContext) {}

func (g *conversation) apply(cmd *actorspb.Command) (*actorspb.Result, error) {
	if g.id == (storage.ID{}) {
		return nil, pacluster.NewGrainErrorResponse(ReasonInvalid, "malformed conversation id")
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.deps.CallTimeout)
	defer cancel()
	res, err := g.deps.Machine.Apply(ctx, cmd)
	if err != nil {
		return nil, toGrainError(err)
	}
	return res, nil
}

func (g *conversation) Post(req *grainpb.PostRequest, ctx pacluster.GrainContext) (*grainpb.PostResponse, error) {
	now := g.deps.Now()
	res, err := g.apply(&actorspb.Command{Op: &actorspb.Command_Post{Post: &actorspb.PostMessage{
		TenantId: req.TenantId, ConversationId: g.id[:], VisitorId: req.VisitorId, Author: req.Author,
		ClientId: req.ClientId, Body: req.Body, UnixMs: now.UnixMilli(),
	}}})
	if err != nil {
		return nil, err
	}
	if !g.inboxed {
		// Listing is idempotent; once per activation keeps it cheap and
		// repairs a listing lost to a crash between the two commands.
		ctx, cancel := g.deps.callContext()
		_, err := g.deps.Machine.Apply(ctx, &actorspb.Command{Op: &actorspb.Command_AddToInbox{AddToInbox: &actorspb.AddToInbox{
			TenantId: req.TenantId, Entry: &actorspb.InboxEntry{ConversationId: g.id[:], VisitorId: res.Conversation.GetVisitorId(), CreatedUnixMs: res.Conversation.GetCreatedUnixMs()},
		}}})
		cancel()
		if err != nil {
			g.deps.Log.Warn("listing a conversation in its inbox", "err", err)
		} else {
			g.inboxed = true
		}
	}
	if !res.Duplicate {
		// Only after the commit: a subscriber never sees a message that
		// could still be lost.
		g.publish(ctx, string(req.TenantId), &grainpb.ConversationEvent{Event: &grainpb.ConversationEvent_Message{Message: &grainpb.Message{
			Seq: res.Seq, Author: req.Author, Body: req.Body, ClientId: req.ClientId, CreatedUnixMs: now.UnixMilli(),
		}}})
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
		out.Messages = append(out.Messages, &grainpb.Message{Seq: r.Seq, Author: r.Author, Body: r.Body, ClientId: r.ClientId, CreatedUnixMs: r.CreatedUnixMs})
	}
	return out, nil
}

func (g *conversation) Subscribe(req *grainpb.SubscribeRequest, _ pacluster.GrainContext) (*grainpb.SubscribeResponse, error) {
	conv, err := g.conversation(req.TenantId)
	if err != nil {
		return nil, err
	}
	if req.SubscriberAddress == "" || req.SubscriberId == "" {
		return nil, pacluster.NewGrainErrorResponse(ReasonInvalid, "no subscriber")
	}
	lease := min(max(time.Duration(req.LeaseMs)*time.Millisecond, time.Second), MaxLease)
	pid := actor.NewPID(req.SubscriberAddress, req.SubscriberId)
	g.subs[pid.String()] = subscription{pid: pid, tenant: string(req.TenantId), expires: g.deps.Now().Add(lease)}
	return &grainpb.SubscribeResponse{LastSeq: conv.LastSeq}, nil
}

func (g *conversation) Unsubscribe(req *grainpb.UnsubscribeRequest, _ pacluster.GrainContext) (*grainpb.Empty, error) {
	key := actor.NewPID(req.SubscriberAddress, req.SubscriberId).String()
	if s, ok := g.subs[key]; ok && s.tenant == string(req.TenantId) {
		delete(g.subs, key)
	}
	return &grainpb.Empty{}, nil
}

func (g *conversation) Typing(req *grainpb.TypingRequest, ctx pacluster.GrainContext) (*grainpb.Empty, error) {
	if _, err := g.conversation(req.TenantId); err != nil {
		return nil, err
	}
	g.publish(ctx, string(req.TenantId), &grainpb.ConversationEvent{Event: &grainpb.ConversationEvent_Typing{Typing: req.Author}})
	return &grainpb.Empty{}, nil
}

func (g *conversation) MarkRead(req *grainpb.MarkReadRequest, ctx pacluster.GrainContext) (*grainpb.MarkReadResponse, error) {
	res, err := g.apply(&actorspb.Command{Op: &actorspb.Command_MarkRead{MarkRead: &actorspb.MarkRead{
		TenantId: req.TenantId, ConversationId: g.id[:], ReaderId: req.ReaderId, Seq: req.Seq,
	}}})
	if err != nil {
		return nil, err
	}
	g.publish(ctx, string(req.TenantId), &grainpb.ConversationEvent{Event: &grainpb.ConversationEvent_Read{Read: &grainpb.ReadEvent{ReaderId: req.ReaderId, Seq: res.Seq}}})
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

// change applies a command that changes the conversation's metadata and
// tells the subscribers.
func (g *conversation) change(ctx pacluster.GrainContext, tenant []byte, cmd *actorspb.Command) (*grainpb.ConversationInfo, error) {
	res, err := g.apply(cmd)
	if err != nil {
		return nil, err
	}
	info := &grainpb.ConversationInfo{Conversation: res.Conversation}
	g.publish(ctx, string(tenant), &grainpb.ConversationEvent{Event: &grainpb.ConversationEvent_Changed{Changed: info}})
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

// publish sends ev to every subscriber of tenant whose lease runs, and
// forgets the others.
func (g *conversation) publish(ctx pacluster.GrainContext, tenant string, ev *grainpb.ConversationEvent) {
	ev.ConversationId = g.id[:]
	now := g.deps.Now()
	for key, s := range g.subs {
		if now.After(s.expires) {
			delete(g.subs, key)
			continue
		}
		if s.tenant == tenant {
			ctx.Send(s.pid, ev)
		}
	}
}

func tenantOf(raw []byte) (storage.ID, error) { return idOf(raw, "tenant_id") }
