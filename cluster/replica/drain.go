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
	return g.DrainConfirmed(ctx, nil)
}

// DrainConfirmed is Drain, with a way to learn that a shard's leader has
// removed this node when this node did not hear of it: raft's leader sends
// the removing entry to the removed node once, when it stops replicating
// to it, and if that one attempt fails (seen under load) the node keeps its
// stale configuration for good. For a shard whose leader has been silent
// for a few heartbeats, removed asks that leader; when it says so, this
// node counts itself out of the shard (in Drain and in Status) until its
// own configuration of the shard changes again.
func (g *Groups) DrainConfirmed(ctx context.Context, removed func(shard uint16) bool) error {
	if g.closed.Load() {
		return ErrClosed
	}
	g.mem.setDraining()
	g.kick()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		leading, voter := g.holdings()
		if removed != nil {
			for _, s := range voter {
				if g.silent(s) && removed(s) {
					g.markRemoved(s)
				}
			}
			leading, voter = g.holdings()
		}
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

// silent reports whether shard's leader has not been heard from for more
// than a few heartbeat timeouts: this node may have been removed.
func (g *Groups) silent(shard uint16) bool {
	grp, err := g.group(shard)
	if err != nil || grp.raft.State() == raft.Leader {
		return false
	}
	return time.Since(grp.raft.LastContact()) > 3*g.cfg.Timing.HeartbeatTimeout
}

// markRemoved records that shard's leader no longer counts this node, as
// of this node's present configuration of the shard.
func (g *Groups) markRemoved(shard uint16) {
	grp, err := g.group(shard)
	if err != nil {
		return
	}
	f := grp.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	g.removedMu.Lock()
	defer g.removedMu.Unlock()
	if g.removed == nil {
		g.removed = map[uint16]uint64{}
	}
	g.removed[shard] = f.Index()
	g.logger.Info("replica: the shard's leader removed this node; it never heard", "shard", shard)
}

// knownRemoved reports whether this node learned from the leader that it
// is out of shard, and its configuration of the shard has not changed
// since (index is that configuration's).
func (g *Groups) knownRemoved(shard uint16, index uint64) bool {
	g.removedMu.Lock()
	defer g.removedMu.Unlock()
	at, ok := g.removed[shard]
	return ok && at == index
}

// Voters returns the voters of shard in the latest configuration this node
// has; on the shard's leader, that is the group's.
func (g *Groups) Voters(shard uint16) []string {
	grp, err := g.group(shard)
	if err != nil {
		return nil
	}
	f := grp.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	var out []string
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			out = append(out, string(s.ID))
		}
	}
	return out
}

// holdings lists the shards this node leads and those whose latest
// configuration, as this node has it, counts it a voter (less the shards
// whose leader told it otherwise: see DrainConfirmed).
func (g *Groups) holdings() (leading, voter []uint16) {
	for _, grp := range g.groups {
		if grp.raft.State() == raft.Leader {
			leading = append(leading, grp.shard)
		}
		f := grp.raft.GetConfiguration()
		if f.Error() != nil || g.knownRemoved(grp.shard, f.Index()) {
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
