// Package grains holds the grains of ChatPacket: virtual actors that
// protoactor activates on a node when they are called, that hold their
// state in memory while active, and that change it only by proposing
// commands to the shard state machine (actors/shard).
//
// Concurrency: protoactor gives each activation one message at a time, so
// a grain's fields need no lock. A grain blocks while its command commits
// (a synced write, about a millisecond); other grains run meanwhile.
package grains

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pacluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/extensions"
	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/grainpb"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/storage"
)

var depsID = extensions.NextExtensionID()

// Deps are what the grains of one node use. They reach a grain through its
// node's actor system (cluster.WithExtensions), never through a captured
// variable: protoactor's generated grain factories are package globals that
// every node of a process shares.
type Deps struct {
	Machine *shard.Machine
	// Now is the clock commands are stamped with.
	Now func() time.Time
	Log *slog.Logger
	// CallTimeout bounds a grain's wait for its command to commit.
	CallTimeout time.Duration
	// Peers returns the actor remote addresses of the live nodes, for
	// announcing activations to their gateways; nil announces nothing.
	Peers func() []string
}

// GatewayName is the name of every node's gateway actor, which grains
// announce their activations to.
const GatewayName = "chatpacket-gateway"

// announce tells every node's gateway that a grain activated here.
func (d *Deps) announce(ctx pacluster.GrainContext, kind, identity string) {
	if d.Peers == nil {
		return
	}
	msg := &grainpb.Activated{Kind: kind, Identity: identity}
	for _, addr := range d.Peers() {
		ctx.Send(actor.NewPID(addr, GatewayName), msg)
	}
}

// ExtensionID makes Deps an actor system extension.
func (d *Deps) ExtensionID() extensions.ExtensionID { return depsID }

func depsOf(system *actor.ActorSystem) *Deps { return system.Extensions.Get(depsID).(*Deps) }

// callContext bounds a grain's wait for the state machine.
func (d *Deps) callContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d.CallTimeout)
}

// apply proposes cmd to its shard and waits for the commit.
func (d *Deps) apply(cmd *actorspb.Command) (*actorspb.Result, error) {
	ctx, cancel := d.callContext()
	defer cancel()
	return d.Machine.Apply(ctx, cmd)
}

// ConversationIdleTimeout is how long a conversation grain stays active
// without a call before it is passivated (its state is on disk).
const ConversationIdleTimeout = 10 * time.Minute

// Kinds returns the grain kinds a node hosts.
func Kinds() []*pacluster.Kind {
	return []*pacluster.Kind{
		grainpb.NewConversationKind(func() grainpb.Conversation { return &conversation{} }, ConversationIdleTimeout, actor.WithDispatcher(grainDispatcher)),
		grainpb.NewTenantKind(func() grainpb.Tenant { return &tenant{} }, ConversationIdleTimeout, actor.WithDispatcher(grainDispatcher)),
		grainpb.NewVisitorKind(func() grainpb.Visitor { return &visitor{} }, ConversationIdleTimeout, actor.WithDispatcher(grainDispatcher)),
	}
}

// Grain errors travel as protoactor GrainErrorResponses, which keep only a
// reason and a message. These are the reasons ours use.
const (
	ReasonNotFound    = pacluster.ErrorReason_NOT_FOUND
	ReasonInvalid     = pacluster.ErrorReason_INVALID_ARGUMENT
	ReasonErased      = pacluster.ErrorReason_FAILED_PRECONDITION
	ReasonUnavailable = pacluster.ErrorReason_UNAVAILABLE
)

// toGrainError gives an error of the state machine or store its reason.
func toGrainError(err error) error {
	reason := pacluster.ErrorReason_INTERNAL
	switch {
	case errors.Is(err, shard.ErrNotFound):
		reason = ReasonNotFound
	case errors.Is(err, shard.ErrInvalid):
		reason = ReasonInvalid
	case errors.Is(err, shard.ErrExists):
		reason = ReasonExists
	case errors.Is(err, storage.ErrErased):
		reason = ReasonErased
	case errors.Is(err, shard.ErrStopped), errors.Is(err, shard.ErrUnavailable), errors.Is(err, storage.ErrClosed):
		reason = ReasonUnavailable
	}
	return pacluster.NewGrainErrorResponse(reason, err.Error())
}

// Reason is the reason of an error a grain call returned: one of the
// Reason constants, protoactor's for transport failures, or "" for nil.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	return pacluster.Reason(err)
}
