package replica

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Drain takes this node out of placement and waits until it leads no shard
// and is a voter of none, or ctx ends.
//
// This node's leaders hand their shards to desired voters (after adding
// replacements where needed); the other nodes' leaders then remove this
// node, but only once they see it draining: the caller must gossip that
// (Member.Draining in every node's SetMembers) before or while Drain runs.
// A drain cannot finish where no other node can take the replicas: a
// single node, or fewer nodes than a shard needs to keep a quorum.
//
// The node keeps serving as a follower until Close, and stays out of
// placement for the rest of its life.
func (g *Groups) Drain(ctx context.Context) error {
	if g.closed.Load() {
		return ErrClosed
	}
	g.mem.setDraining()
	g.kick()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		leading, voter := g.holdings()
		if len(leading) == 0 && len(voter) == 0 {
			g.logger.Info("replica: drained")
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replica: drain: still leading shards %v and voter of %v: %w", leading, voter, ctx.Err())
		case <-t.C:
		}
		if g.closed.Load() {
			return ErrClosed
		}
	}
}

// holdings lists the shards this node leads and those whose latest
// configuration, as this node has it, counts it a voter. A removed node
// gets the configuration that removes it: raft's leader sends it the
// entry before it stops replicating to it.
func (g *Groups) holdings() (leading, voter []uint16) {
	for _, grp := range g.groups {
		if grp.raft.State() == raft.Leader {
			leading = append(leading, grp.shard)
		}
		f := grp.raft.GetConfiguration()
		if f.Error() != nil {
			continue
		}
		for _, s := range f.Configuration().Servers {
			if string(s.ID) == g.self.ID && s.Suffrage == raft.Voter {
				voter = append(voter, grp.shard)
			}
		}
	}
	return leading, voter
}
