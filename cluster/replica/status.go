package replica

import (
	"context"
	"fmt"
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
			for _, srv := range f.Configuration().Servers {
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

// WaitLeaders waits until every shard has a known leader, or ctx ends.
func (g *Groups) WaitLeaders(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		var missing []uint16
		for _, grp := range g.groups {
			if _, id := grp.raft.LeaderWithID(); id == "" {
				missing = append(missing, grp.shard)
			}
		}
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
