package grains

import (
	"crypto/rand"
	"strings"

	pacluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/grainpb"
	"github.com/chatpacket/chatpacket/storage"
)

// MaxVisitorConversations bounds how many conversations Conversations
// returns: the widget shows the latest.
const MaxVisitorConversations = 100

// visitor is the grain of one widget visitor: session continuity, the
// contact details they chose to give, technical data and page views, and
// the list of their conversations. All of it lives in the visitor's shard,
// sealed under the visitor's own key.
type visitor struct {
	id   storage.ID
	deps *Deps
}

var _ grainpb.Visitor = (*visitor)(nil)

func (g *visitor) Init(ctx pacluster.GrainContext) {
	g.deps = depsOf(ctx.ActorSystem())
	if id, err := storage.ParseID(ctx.Identity()); err == nil {
		g.id = id
	}
}

func (g *visitor) Terminate(pacluster.GrainContext)      {}
func (g *visitor) ReceiveDefault(pacluster.GrainContext) {}

// Start creates the visitor when asked (with the session id's index entry,
// so the same session finds them again) and records the session's
// technical data. Creation is idempotent, so a start cut off half way is
// completed by calling again.
func (g *visitor) Start(req *grainpb.StartRequest, _ pacluster.GrainContext) (*grainpb.Empty, error) {
	tenant, err := g.check(req.TenantId)
	if err != nil {
		return nil, err
	}
	now := g.deps.Now().UnixMilli()
	var steps []*actorspb.Command
	if req.Create {
		if req.SessionId == "" {
			return nil, pacluster.NewGrainErrorResponse(ReasonInvalid, "a new visitor needs its session id")
		}
		steps = append(steps,
			&actorspb.Command{Op: &actorspb.Command_CreateVisitor{CreateVisitor: &actorspb.CreateVisitor{Visitor: &actorspb.VisitorRecord{
				Id: g.id[:], TenantId: tenant[:], CreatedUnixMs: now,
			}}}},
			&actorspb.Command{Op: &actorspb.Command_ClaimIndex{ClaimIndex: &actorspb.ClaimIndex{
				Name:   SessionIndexName(tenant, req.SessionId),
				Record: &actorspb.IndexRecord{TenantId: tenant[:], TargetId: g.id[:]},
			}}},
		)
	}
	steps = append(steps, &actorspb.Command{Op: &actorspb.Command_TouchVisitor{TouchVisitor: &actorspb.TouchVisitor{
		TenantId: tenant[:], VisitorId: g.id[:], Tech: req.Tech, UnixMs: now,
	}}})
	for _, cmd := range steps {
		if _, err := g.apply(cmd); err != nil {
			return nil, err
		}
	}
	return &grainpb.Empty{}, nil
}

// SetContact records the name and email the visitor chose to give; empty
// fields remove them.
func (g *visitor) SetContact(req *grainpb.ContactRequest, _ pacluster.GrainContext) (*grainpb.Empty, error) {
	tenant, err := g.check(req.TenantId)
	if err != nil {
		return nil, err
	}
	_, err = g.apply(&actorspb.Command{Op: &actorspb.Command_SetVisitorContact{SetVisitorContact: &actorspb.SetVisitorContact{
		TenantId: tenant[:], VisitorId: g.id[:], Name: strings.TrimSpace(req.Name), Email: strings.TrimSpace(req.Email),
	}}})
	return &grainpb.Empty{}, err
}

// PageView records a page the visitor opened, stamped with the grain's
// clock (the browser's is not trusted).
func (g *visitor) PageView(req *grainpb.PageViewRequest, _ pacluster.GrainContext) (*grainpb.Empty, error) {
	tenant, err := g.check(req.TenantId)
	if err != nil {
		return nil, err
	}
	v := req.GetView()
	// The analytics event's id is random, never derived from the visitor:
	// analytics must not point back to who viewed the page.
	event := make([]byte, 8)
	rand.Read(event)
	_, err = g.apply(&actorspb.Command{Op: &actorspb.Command_AddPageView{AddPageView: &actorspb.AddPageView{
		TenantId: tenant[:], VisitorId: g.id[:], EventId: event,
		View: &actorspb.PageViewRecord{Url: v.GetUrl(), Title: v.GetTitle(), Referrer: v.GetReferrer(), UnixMs: g.deps.Now().UnixMilli()},
	}}})
	return &grainpb.Empty{}, err
}

// AddConversation lists a conversation of the visitor; the conversation's
// grain calls it when the conversation starts.
func (g *visitor) AddConversation(req *grainpb.AddConversationRequest, _ pacluster.GrainContext) (*grainpb.Empty, error) {
	tenant, err := g.check(req.TenantId)
	if err != nil {
		return nil, err
	}
	_, err = g.apply(&actorspb.Command{Op: &actorspb.Command_AddVisitorConversation{AddVisitorConversation: &actorspb.AddVisitorConversation{
		TenantId: tenant[:], VisitorId: g.id[:], Entry: req.Conversation,
	}}})
	return &grainpb.Empty{}, err
}

// Conversations lists the visitor's conversations, newest first.
func (g *visitor) Conversations(req *grainpb.TenantRequest, _ pacluster.GrainContext) (*grainpb.VisitorConversationsResponse, error) {
	tenant, err := g.check(req.TenantId)
	if err != nil {
		return nil, err
	}
	ctx, cancel := g.deps.callContext()
	defer cancel()
	list, err := g.deps.Machine.VisitorConversations(ctx, tenant, g.id, MaxVisitorConversations)
	if err != nil {
		return nil, toGrainError(err)
	}
	return &grainpb.VisitorConversationsResponse{Conversations: list}, nil
}

// check validates the grain's identity and the caller's tenant; the state
// machine checks that the visitor belongs to that tenant.
func (g *visitor) check(rawTenant []byte) (storage.ID, error) {
	if g.id == (storage.ID{}) {
		return storage.ID{}, pacluster.NewGrainErrorResponse(ReasonInvalid, "malformed visitor id")
	}
	return tenantOf(rawTenant)
}

func (g *visitor) apply(cmd *actorspb.Command) (*actorspb.Result, error) {
	res, err := g.deps.apply(cmd)
	if err != nil {
		return nil, toGrainError(err)
	}
	return res, nil
}
