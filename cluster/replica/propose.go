package replica

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// NotLeaderError is returned by Propose on a node that does not lead the
// shard. The command was not appended anywhere: send it to the leader.
type NotLeaderError struct {
	Shard uint16
	// LeaderID and LeaderAddr name the leader as this node last heard of
	// it; both empty during an election or a leadership transfer, and
	// always on a node that holds no replica of the shard (ask a node of
	// Groups.Placement instead).
	LeaderID   string
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" {
		return fmt.Sprintf("replica: shard %d: not the leader, and no leader known", e.Shard)
	}
	return fmt.Sprintf("replica: shard %d: not the leader; %s at %s is", e.Shard, e.LeaderID, e.LeaderAddr)
}

var _ error = (*NotLeaderError)(nil)

// ErrUnknownOutcome wraps the errors of a proposal that was appended to the
// log but whose commit this node cannot confirm: leadership was lost, the
// group shut down, or ctx ended first. It may yet commit, on any replica.
// Retry only a command the state machine recognises as a repeat (a
// client_id it already applied).
var ErrUnknownOutcome = errors.New("replica: outcome unknown")

// Propose appends data to shard's log through this node, if it leads the
// shard, and returns the FSM's response once the entry is committed and
// applied here. A response that is an error is returned as the response:
// it is the state machine's answer, and it is final. Otherwise it returns
// a *NotLeaderError (not appended: retry at the leader), an error wrapping
// ErrUnknownOutcome, or ErrClosed.
//
// ctx bounds both the wait to enter raft's queue and the wait for the
// commit; when it ends first the entry may still commit.
func (g *Groups) Propose(ctx context.Context, shard uint16, data []byte) (any, error) {
	if g.closed.Load() {
		return nil, ErrClosed
	}
	grp, err := g.group(shard)
	if err != nil {
		return nil, err
	}
	if grp.raft.State() != raft.Leader {
		return nil, g.notLeader(grp)
	}
	if err := ctx.Err(); err != nil {
		return nil, err // not appended
	}
	var timeout time.Duration // 0: raft waits for room in its queue as long as it takes
	if d, ok := ctx.Deadline(); ok {
		if timeout = time.Until(d); timeout <= 0 {
			return nil, context.DeadlineExceeded
		}
	}
	f := grp.raft.Apply(data, timeout)
	if ctx.Done() == nil {
		return g.applied(grp, f)
	}
	// raft's futures know no context: wait on a goroutine that raft ends
	// when it commits, steps down or shuts down, whichever comes first.
	type result struct {
		resp any
		err  error
	}
	done := make(chan result, 1)
	if !g.goFunc(func() {
		resp, err := g.applied(grp, f)
		done <- result{resp, err}
	}) {
		return g.applied(grp, f) // closing: raft answers at once
	}
	select {
	case r := <-done:
		return r.resp, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: shard %d: %w", ErrUnknownOutcome, shard, ctx.Err())
	}
}

// applied waits for f and sorts its error.
func (g *Groups) applied(grp *group, f raft.ApplyFuture) (any, error) {
	err := f.Error()
	switch {
	case err == nil:
		return f.Response(), nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return nil, g.notLeader(grp) // refused before it was appended
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return nil, fmt.Errorf("replica: shard %d: %w", grp.shard, context.DeadlineExceeded)
	case errors.Is(err, raft.ErrRaftShutdown) && g.closed.Load():
		return nil, fmt.Errorf("%w: shard %d: %w", ErrUnknownOutcome, grp.shard, ErrClosed)
	default:
		return nil, fmt.Errorf("%w: shard %d: %w", ErrUnknownOutcome, grp.shard, err)
	}
}

func (g *Groups) notLeader(grp *group) *NotLeaderError {
	addr, id := grp.raft.LeaderWithID()
	if string(id) == g.self.ID {
		// This node's own leadership ended a moment ago and raft has not yet
		// cleared it: no leader is known.
		addr, id = "", ""
	}
	return &NotLeaderError{Shard: grp.shard, LeaderID: string(id), LeaderAddr: string(addr)}
}
