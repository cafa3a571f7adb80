package grains

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pacluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/chatpacket/chatpacket/actors/grainpb"
	"google.golang.org/protobuf/proto"
)

// MaxLease bounds a subscription's lease: a subscriber that stops renewing
// (its node died) is forgotten within it.
const MaxLease = time.Minute

// subscribers are the actors (nodes' gateways) a grain pushes events to.
// Each subscription is a lease for one tenant: renewed by subscribing
// again, forgotten when it runs out. Not safe for concurrent use: a grain
// touches it only from its own messages.
type subscribers map[string]subscription // by subscriber PID

type subscription struct {
	pid     *actor.PID
	tenant  string
	expires time.Time
}

// add subscribes (or renews) the subscriber of req until now plus its
// lease, bounded to [1 s, MaxLease].
func (s subscribers) add(req *grainpb.SubscribeRequest, now time.Time) error {
	if req.SubscriberAddress == "" || req.SubscriberId == "" {
		return pacluster.NewGrainErrorResponse(ReasonInvalid, "no subscriber")
	}
	lease := min(max(time.Duration(req.LeaseMs)*time.Millisecond, time.Second), MaxLease)
	pid := actor.NewPID(req.SubscriberAddress, req.SubscriberId)
	s[pid.String()] = subscription{pid: pid, tenant: string(req.TenantId), expires: now.Add(lease)}
	return nil
}

// remove ends a subscription of tenant.
func (s subscribers) remove(address, id string, tenant []byte) {
	key := actor.NewPID(address, id).String()
	if sub, ok := s[key]; ok && sub.tenant == string(tenant) {
		delete(s, key)
	}
}

// publish sends msg to every subscriber of tenant whose lease runs, and
// forgets the others.
func (s subscribers) publish(ctx pacluster.GrainContext, tenant []byte, msg proto.Message, now time.Time) {
	for key, sub := range s {
		if now.After(sub.expires) {
			delete(s, key)
			continue
		}
		if sub.tenant == string(tenant) {
			ctx.Send(sub.pid, msg)
		}
	}
}
