package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/cluster/clusterpb"
	"github.com/chatpacket/chatpacket/cluster/replica"
	"github.com/chatpacket/chatpacket/storage"
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
	machine *shard.Machine // applied indexes, and reads for other nodes
	db      *storage.DB    // the shred ledger, for other nodes
	pid     *actor.PID
}

var _ shard.Log = (*ShardLog)(nil)

// NewShardLog starts the node's forwarding actor over groups, whose state
// machines are m's.
func NewShardLog(n *Node, groups *replica.Groups, m *shard.Machine, db *storage.DB) (*ShardLog, error) {
	l := &ShardLog{node: n, groups: groups, machine: m, db: db}
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
	if serveLedger(c, l.db) {
		return
	}
	switch req := c.Message().(type) {
	case *clusterpb.ReadIndexRequest:
		// Answered at once: how far this leader has applied is every write
		// it acknowledged.
		shardID := uint16(req.Shard)
		if !l.groups.IsLeader(shardID) {
			leader, _ := l.groups.Leader(shardID)
			c.Respond(&clusterpb.ReadIndexReply{NotLeader: true, LeaderId: leader})
			return
		}
		if req.NodeId != "" && !slices.Contains(l.groups.Voters(shardID), req.NodeId) {
			c.Respond(&clusterpb.ReadIndexReply{NotVoter: true})
			return
		}
		c.Respond(&clusterpb.ReadIndexReply{Applied: l.machine.FSM(shardID).Applied()})
		return
	case *clusterpb.LeaderRequest:
		leader, _ := l.groups.Leader(uint16(req.Shard))
		c.Respond(&clusterpb.LeaderReply{LeaderId: leader})
		return
	case *clusterpb.VotersRequest:
		if !l.groups.IsLeader(uint16(req.Shard)) {
			c.Respond(&clusterpb.VotersReply{NotLeader: true})
			return
		}
		c.Respond(&clusterpb.VotersReply{Voters: l.groups.Voters(uint16(req.Shard))})
		return
	case *clusterpb.ReadRequest:
		l.serveRead(c, req)
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
		if errors.Is(err, replica.ErrUnknownOutcome) {
			// Leadership moved or the node is stopping: the entry may
			// still commit. Our commands are safe to repeat.
			return nil, fmt.Errorf("%w: %v", shard.ErrUnavailable, err)
		}
		if !errors.As(err, &nl) {
			return out, err
		}
		leader := nl.LeaderID
		if leader == "" {
			leader = l.askLeader(shardID)
		}
		if remote := l.remoteOf(leader); remote != "" {
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
// node leads: its own state machine is as far as any). It answers
// shard.ErrNoReplica when this node holds no replica of the shard.
func (l *ShardLog) ReadIndex(ctx context.Context, shardID uint16) (uint64, error) {
	for attempt := 1; ; attempt++ {
		if l.groups.IsLeader(shardID) {
			return 0, nil
		}
		if !l.groups.HasReplica(shardID) {
			return 0, shard.ErrNoReplica
		}
		if remote := l.remoteOf(l.leader(shardID)); remote != "" {
			res, err := l.node.System.Root.RequestFuture(actor.NewPID(remote, forwarderName),
				&clusterpb.ReadIndexRequest{Shard: uint32(shardID), NodeId: l.node.p.cfg.Identity.NodeID}, readIndexTimeout).Result()
			r, ok := res.(*clusterpb.ReadIndexReply)
			switch {
			case err != nil || !ok || r.NotLeader:
			case r.NotVoter:
				return 0, shard.ErrNoReplica // removed without hearing of it: read through the leader
			default:
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

// readIndexTimeout bounds one question to a leader that it answers from
// memory (ReadIndex, who leads): longer means it is gone.
const readIndexTimeout = 500 * time.Millisecond

func (l *ShardLog) remoteOf(nodeID string) string { return remoteOf(l.node, nodeID) }

// removed reports whether the shard's leader, asked, no longer counts
// node among the shard's voters (false when that cannot be learned).
func (l *ShardLog) removed(shardID uint16, node string) bool {
	leader := l.askLeader(shardID)
	if leader == "" || leader == node {
		return false
	}
	remote := l.remoteOf(leader)
	if remote == "" {
		return false
	}
	res, err := l.node.System.Root.RequestFuture(actor.NewPID(remote, forwarderName),
		&clusterpb.VotersRequest{Shard: uint32(shardID)}, readIndexTimeout).Result()
	r, ok := res.(*clusterpb.VotersReply)
	return err == nil && ok && !r.NotLeader && len(r.Voters) > 0 && !slices.Contains(r.Voters, node)
}

// leader is the shard's leader as this node knows it, or as the nodes that
// should hold the shard know it ("" while none does).
func (l *ShardLog) leader(shardID uint16) string {
	if id, ok := l.groups.Leader(shardID); ok {
		return id
	}
	return l.askLeader(shardID)
}

// askLeader asks the nodes placement gives the shard who leads it: a node
// without a replica of a shard never hears from its leader.
func (l *ShardLog) askLeader(shardID uint16) string {
	for _, id := range l.groups.Placement(shardID) {
		remote := l.remoteOf(id)
		if remote == "" || remote == l.node.System.Address() {
			continue
		}
		res, err := l.node.System.Root.RequestFuture(actor.NewPID(remote, forwarderName),
			&clusterpb.LeaderRequest{Shard: uint32(shardID)}, readIndexTimeout).Result()
		if r, ok := res.(*clusterpb.LeaderReply); err == nil && ok && r.LeaderId != "" {
			return r.LeaderId
		}
	}
	return ""
}

// Read sends a read of a shard this node holds no replica of to the
// shard's leader.
func (l *ShardLog) Read(ctx context.Context, shardID uint16, read []byte) ([]byte, error) {
	for attempt := 1; ; attempt++ {
		if remote := l.remoteOf(l.leader(shardID)); remote != "" {
			timeout := attemptTimeout
			if d, ok := ctx.Deadline(); ok {
				timeout = min(time.Until(d), timeout)
			}
			res, err := l.node.System.Root.RequestFuture(actor.NewPID(remote, forwarderName),
				&clusterpb.ReadRequest{Shard: uint32(shardID), Read: read}, max(timeout, time.Millisecond)).Result()
			if r, ok := res.(*clusterpb.ReadReply); err == nil && ok && !r.NotLeader {
				if r.Error != "" {
					return nil, fmt.Errorf("%w: read of shard %d: %s", shard.ErrUnavailable, shardID, r.Error)
				}
				return r.Result, nil
			}
		}
		wait := min(time.Duration(attempt)*20*time.Millisecond, 200*time.Millisecond)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: shard %d has no reachable leader to read from: %v", shard.ErrUnavailable, shardID, ctx.Err())
		}
	}
}

// serveRead answers a read of a shard this node leads, on its own
// goroutine (it reads the store).
func (l *ShardLog) serveRead(c actor.Context, req *clusterpb.ReadRequest) {
	sender, root := c.Sender(), l.node.System.Root
	if sender == nil {
		return
	}
	if !l.groups.IsLeader(uint16(req.Shard)) {
		c.Respond(&clusterpb.ReadReply{NotLeader: true})
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), forwardTimeout)
		defer cancel()
		var reply clusterpb.ReadReply
		res, err := l.machine.ServeRead(ctx, uint16(req.Shard), req.Read)
		if err != nil {
			reply.Error = err.Error()
		}
		reply.Result = res
		root.Send(sender, &reply)
	}()
}

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

// attemptTimeout bounds one forwarded proposal's wait: a commit takes
// milliseconds, so a leader silent for this long has most likely died,
// and a new one is looked for (the proposal may have committed: our
// commands are safe to repeat).
const attemptTimeout = 2 * time.Second

// forward asks the forwarder of the node at remote to propose data.
func (l *ShardLog) forward(ctx context.Context, remote string, shardID uint16, data []byte) (*actorspb.Reply, error) {
	timeout := attemptTimeout
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
