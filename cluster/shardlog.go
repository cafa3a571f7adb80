package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/cluster/clusterpb"
	"github.com/chatpacket/chatpacket/cluster/replica"
	"google.golang.org/protobuf/proto"
)

// forwarderName names each node's actor that takes commands forwarded to
// the shards it leads.
const forwarderName = "chatpacket-shards"

// ShardLog is a node's shard.Log: a command is proposed here when this node
// leads its shard and forwarded to the node that does otherwise. While a
// shard has no leader (an election after a node died), it waits and asks
// again until the caller's context ends, so callers see a slower answer
// rather than an error during a failover.
type ShardLog struct {
	node    *Node
	groups  *replica.Groups
	applied func(shard uint16) uint64 // how far this node's FSM of a shard has applied
	pid     *actor.PID
}

var _ shard.Log = (*ShardLog)(nil)

// NewShardLog starts the node's forwarding actor over groups; applied
// tells how far this node's state machine of a shard has applied.
func NewShardLog(n *Node, groups *replica.Groups, applied func(shard uint16) uint64) (*ShardLog, error) {
	l := &ShardLog{node: n, groups: groups, applied: applied}
	pid, err := n.System.Root.SpawnNamed(actor.PropsFromFunc(l.receive), forwarderName)
	if err != nil {
		return nil, fmt.Errorf("cluster: start the shard forwarder: %w", err)
	}
	l.pid = pid
	return l, nil
}

// Close stops the forwarding actor.
func (l *ShardLog) Close() { l.node.System.Root.Stop(l.pid) }

// forwardTimeout bounds a forwarded proposal on the leader's side: raft
// answers a committed entry in milliseconds, so this only ends proposals
// stuck behind a leader that lost its followers.
const forwardTimeout = 10 * time.Second

// receive proposes forwarded commands on this node. Each runs on its own
// goroutine and answers the sender directly: proposals wait for disk and
// network, and the actor must not serialize them.
func (l *ShardLog) receive(c actor.Context) {
	if req, ok := c.Message().(*clusterpb.ReadIndexRequest); ok {
		// Answered at once: how far this leader has applied is every write
		// it acknowledged.
		shardID := uint16(req.Shard)
		if !l.groups.IsLeader(shardID) {
			leader, _ := l.groups.Leader(shardID)
			c.Respond(&clusterpb.ReadIndexReply{NotLeader: true, LeaderId: leader})
			return
		}
		c.Respond(&clusterpb.ReadIndexReply{Applied: l.applied(shardID)})
		return
	}
	req, ok := c.Message().(*clusterpb.ForwardRequest)
	if !ok {
		return
	}
	sender, root := c.Sender(), l.node.System.Root
	if sender == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), forwardTimeout)
		defer cancel()
		out, err := l.groups.Propose(ctx, uint16(req.Shard), req.Data)
		var nl *replica.NotLeaderError
		var reply clusterpb.ForwardReply
		switch {
		case errors.As(err, &nl):
			reply.NotLeader, reply.LeaderId = true, nl.LeaderID
		case err != nil:
			reply.Error = err.Error()
		default:
			m, ok := out.(proto.Message)
			if !ok {
				reply.Error = fmt.Sprintf("the shard answered %T", out)
				break
			}
			if reply.Reply, err = proto.Marshal(m); err != nil {
				reply.Error = err.Error()
			}
		}
		root.Send(sender, &reply)
	}()
}

// Propose applies data to shard's log wherever its leader is.
func (l *ShardLog) Propose(ctx context.Context, shardID uint16, data []byte) (any, error) {
	for attempt := 1; ; attempt++ {
		out, err := l.groups.Propose(ctx, shardID, data)
		var nl *replica.NotLeaderError
		if !errors.As(err, &nl) {
			return out, err
		}
		if remote := l.remoteOf(nl.LeaderID); remote != "" {
			reply, err := l.forward(ctx, remote, shardID, data)
			if !errors.Is(err, errMoved) {
				return reply, err
			}
		}
		// No leader known, or it moved on the way: an election is running.
		wait := min(time.Duration(attempt)*20*time.Millisecond, 200*time.Millisecond)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: shard %d has no reachable leader: %v", shard.ErrUnavailable, shardID, ctx.Err())
		}
	}
}

var errMoved = errors.New("the shard's leadership moved")

// ReadIndex asks the shard's leader how far it has applied (0 when this
// node leads: its own state machine is as far as any).
func (l *ShardLog) ReadIndex(ctx context.Context, shardID uint16) (uint64, error) {
	for attempt := 1; ; attempt++ {
		if l.groups.IsLeader(shardID) {
			return 0, nil
		}
		leader, _ := l.groups.Leader(shardID)
		if remote := l.remoteOf(leader); remote != "" {
			res, err := l.node.System.Root.RequestFuture(actor.NewPID(remote, forwarderName),
				&clusterpb.ReadIndexRequest{Shard: uint32(shardID)}, readIndexTimeout).Result()
			if r, ok := res.(*clusterpb.ReadIndexReply); err == nil && ok && !r.NotLeader {
				return r.Applied, nil
			}
		}
		wait := min(time.Duration(attempt)*20*time.Millisecond, 200*time.Millisecond)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: shard %d has no reachable leader to read from: %v", shard.ErrUnavailable, shardID, ctx.Err())
		}
	}
}

// readIndexTimeout bounds one ReadIndex question: the leader answers from
// memory.
const readIndexTimeout = 2 * time.Second

func (l *ShardLog) remoteOf(nodeID string) string { return remoteOf(l.node, nodeID) }

// remoteOf is the actor remote address of the node with id, as n's gossip
// knows it ("" if unknown).
func remoteOf(n *Node, nodeID string) string {
	if n == nil || nodeID == "" {
		return ""
	}
	for _, p := range n.Peers() {
		if p.NodeID == nodeID {
			return p.RemoteAddr
		}
	}
	return ""
}

// forward asks the forwarder of the node at remote to propose data.
func (l *ShardLog) forward(ctx context.Context, remote string, shardID uint16, data []byte) (*actorspb.Reply, error) {
	timeout := forwardTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = min(time.Until(d), timeout)
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("%w: %v", shard.ErrUnavailable, context.DeadlineExceeded)
	}
	res, err := l.node.System.Root.RequestFuture(actor.NewPID(remote, forwarderName),
		&clusterpb.ForwardRequest{Shard: uint32(shardID), Data: data}, timeout).Result()
	if err != nil {
		// The leader's node did not answer: it may have died. Its
		// proposal may still commit; the caller's retry is safe.
		return nil, errMoved
	}
	fr, ok := res.(*clusterpb.ForwardReply)
	switch {
	case !ok:
		return nil, fmt.Errorf("cluster: forwarder answered %T", res)
	case fr.NotLeader:
		return nil, errMoved
	case fr.Error != "":
		return nil, fmt.Errorf("%w: %s", shard.ErrUnavailable, fr.Error)
	}
	var reply actorspb.Reply
	if err := proto.Unmarshal(fr.Reply, &reply); err != nil {
		return nil, fmt.Errorf("cluster: forwarded reply: %w", err)
	}
	return &reply, nil
}
