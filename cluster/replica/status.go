package replica

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"
)

// ShardStatus is one shard's raft group as this node sees it.
type ShardStatus struct {
	Shard uint16
	// State is this node's raft state: Leader, Follower, Candidate or
	// Shutdown.
	State      string
	Term       uint64
	LeaderID   string // empty when no leader is known
	LeaderAddr string
	// Voters and NonVoters are the ids in the latest configuration this
	// node has (a removed node may not have heard of its removal).
	Voters    []string
	NonVoters []string
	// LastIndex is the last entry in this node's log, CommitIndex the last
	// it knows committed, AppliedIndex the last handed to its FSM. A
	// follower whose CommitIndex lags the leader's is catching up.
	LastIndex    uint64
	CommitIndex  uint64
	AppliedIndex uint64
}

// Status returns every shard's status, by shard.
func (g *Groups) Status() []ShardStatus {
	out := make([]ShardStatus, 0, len(g.groups))
	for _, grp := range g.groups {
		r := grp.raft
		addr, id := r.LeaderWithID()
		s := ShardStatus{
			Shard:        grp.shard,
			State:        r.State().String(),
			Term:         r.CurrentTerm(),
			LeaderID:     string(id),
			LeaderAddr:   string(addr),
			LastIndex:    r.LastIndex(),
			CommitIndex:  r.CommitIndex(),
			AppliedIndex: r.AppliedIndex(),
		}
		if f := r.GetConfiguration(); f.Error() == nil {
			gone := g.knownRemoved(grp.shard, f.Index())
			for _, srv := range f.Configuration().Servers {
				if gone && string(srv.ID) == g.cfg.NodeID {
					continue // removed by the leader; this node never heard
				}
				if srv.Suffrage == raft.Voter {
					s.Voters = append(s.Voters, string(srv.ID))
				} else {
					s.NonVoters = append(s.NonVoters, string(srv.ID))
				}
			}
		}
		out = append(out, s)
	}
	return out
}

// Leader returns the id of shard's leader as this node last heard; ok is
// false when none is known (an election, or shard out of range).
func (g *Groups) Leader(shard uint16) (id string, ok bool) {
	grp, err := g.group(shard)
	if err != nil {
		return "", false
	}
	_, sid := grp.raft.LeaderWithID()
	return string(sid), sid != ""
}

// IsLeader reports whether this node leads shard now. Leadership can end
// at any moment after: Propose is what checks it for real.
func (g *Groups) IsLeader(shard uint16) bool {
	grp, err := g.group(shard)
	return err == nil && grp.raft.State() == raft.Leader
}

// WaitLeaders waits until every shard this node should hold a replica of
// has a known leader, or ctx ends. Which shards: once SetMembers was
// called, those whose placement includes this node; before, those whose
// configuration on this node names it (after Bootstrap, all of them). A
// node learns a shard's leader only from the leader's messages, so
// waiting for shards it holds no replica of could never end.
func (g *Groups) WaitLeaders(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		missing := g.leaderless()
		if len(missing) == 0 {
			return nil
		}
		if g.closed.Load() {
			return ErrClosed
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replica: shards %v have no leader: %w", missing, ctx.Err())
		case <-t.C:
		}
	}
}

// leaderless lists the shards WaitLeaders waits for that have no known
// leader.
func (g *Groups) leaderless() []uint16 {
	v, placed := g.mem.view(time.Now(), nil, g.cfg.Timing.DeadTimeout)
	var missing []uint16
	for _, grp := range g.groups {
		if _, id := grp.raft.LeaderWithID(); id != "" {
			continue
		}
		if placed && !slices.Contains(v.desired(grp.shard, g.cfg.Replicas), g.self.ID) {
			continue
		}
		if !placed && !g.inConfig(grp) {
			continue
		}
		missing = append(missing, grp.shard)
	}
	return missing
}

// inConfig reports whether grp's latest configuration on this node names
// this node.
func (g *Groups) inConfig(grp *group) bool {
	f := grp.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == g.self.ID {
			return true
		}
	}
	return false
}

// Placement returns the ids of the nodes that should hold shard's voters
// under the latest member list, best first; nil before the first
// SetMembers. A node that holds no replica of a shard never hears from its
// leader (Propose there returns a NotLeaderError without a leader): send
// the command to one of these, which knows the leader.
func (g *Groups) Placement(shard uint16) []string {
	v, ok := g.mem.view(time.Now(), nil, g.cfg.Timing.DeadTimeout)
	if !ok || int(shard) >= len(g.groups) {
		return nil
	}
	return v.desired(shard, g.cfg.Replicas)
}

// HasReplica reports whether this node is a voter of shard in the latest
// configuration it knows: whether its state machine of the shard follows
// the log closely enough to answer reads after catching up. A non-voter
// may still be far behind.
func (g *Groups) HasReplica(shard uint16) bool {
	grp, err := g.group(shard)
	if err != nil {
		return false
	}
	f := grp.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, srv := range f.Configuration().Servers {
		if string(srv.ID) == g.cfg.NodeID {
			return srv.Suffrage == raft.Voter
		}
	}
	return false
}

// Shards is the number of shards, hence of raft groups.
func (g *Groups) Shards() int { return len(g.groups) }

// NodeID is this node's id in every shard's raft configuration.
func (g *Groups) NodeID() string { return g.cfg.NodeID }
