package admin

import (
	"slices"

	"github.com/chatpacket/chatpacket/cluster"
	"github.com/chatpacket/chatpacket/cluster/replica"
)

// Status is the cluster as one node sees it: GET /cluster.
type Status struct {
	NodeID   string `json:"node_id"`
	DataDir  string `json:"data_dir"`
	Draining bool   `json:"draining"`
	// Replicas is how many voters each shard should have when that many
	// nodes are live.
	Replicas int      `json:"replicas"`
	Members  []Member `json:"members"`
	Shards   []Shard  `json:"shards"`
	Summary  Summary  `json:"summary"`
}

// Member is a live member as this node's gossip sees it.
type Member struct {
	NodeID     string `json:"node_id"`   // lasting, from its data dir; "" for a node without shards
	MemberID   string `json:"member_id"` // new at every start
	RemoteAddr string `json:"remote_addr"`
	RaftAddr   string `json:"raft_addr"`
	Shards     int    `json:"shards"`
	Self       bool   `json:"self,omitempty"`
	Draining   bool   `json:"draining,omitempty"`
}

// Shard is one shard's raft group as this node sees it. Only a replica
// (Replica: this node is in the group's configuration) knows its group;
// elsewhere the fields are what the node last heard, possibly nothing.
type Shard struct {
	Shard   uint16 `json:"shard"`
	Replica bool   `json:"replica"`
	// Role is this node's part: leader, follower, non-voter, candidate,
	// none (not a replica here) or shutdown.
	Role      string   `json:"role"`
	Term      uint64   `json:"term"`
	Leader    string   `json:"leader"` // node id; "" when none is known
	Voters    []string `json:"voters"`
	NonVoters []string `json:"non_voters,omitempty"`
	// Gone are the voters that are not live members now.
	Gone []string `json:"gone,omitempty"`
	// This node's log: its last entry, the last it knows committed, the
	// last applied to its state machine. ApplyLag is CommitIndex -
	// AppliedIndex. Raft does not tell a leader how far each follower has
	// got, so the other voters' lag is not known here: ask their nodes.
	LastIndex    uint64 `json:"last_index"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	ApplyLag     uint64 `json:"apply_lag"`
}

// Summary counts what needs an operator's eye.
type Summary struct {
	Shards int `json:"shards"`
	// WantVoters is min(Replicas, live nodes that hold replicas and are
	// not draining): the voters a settled shard has.
	WantVoters int `json:"want_voters"`
	// Leaderless and UnderReplicated (fewer live voters than WantVoters)
	// list shards this node is a replica of; NotReplica those it is not,
	// about which it knows nothing reliable.
	Leaderless      []uint16 `json:"leaderless"`
	UnderReplicated []uint16 `json:"under_replicated"`
	NotReplica      []uint16 `json:"not_replica"`
	// Leading and Voter count the shards this node leads and votes in.
	Leading int `json:"leading"`
	Voter   int `json:"voter"`
}

// Progress is one line of POST /drain's stream. The last line has Done
// or Error set.
type Progress struct {
	// Leading and Voter list the shards this node still leads, and still
	// is a voter of.
	Leading []uint16 `json:"leading"`
	Voter   []uint16 `json:"voter"`
	Elapsed float64  `json:"elapsed_s"`
	Done    bool     `json:"done,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// holdings lists the shards self leads and those it is a voter of, as the
// groups' status shows them (the same test replica.Groups.Drain waits on).
func holdings(self string, shards []replica.ShardStatus) (leading, voter []uint16) {
	for _, s := range shards {
		if s.State == "Leader" {
			leading = append(leading, s.Shard)
		}
		if slices.Contains(s.Voters, self) {
			voter = append(voter, s.Shard)
		}
	}
	return leading, voter
}

// buildStatus puts together what the node knows.
func buildStatus(self, dataDir string, replicas int, peers []cluster.Peer, selfMember string, groups []replica.ShardStatus) *Status {
	st := &Status{NodeID: self, DataDir: dataDir, Replicas: replicas, Members: []Member{}, Shards: []Shard{}}
	live := make(map[string]bool)
	candidates := 0
	for _, p := range peers {
		m := Member{
			NodeID: p.NodeID, MemberID: p.MemberID, RemoteAddr: p.RemoteAddr, RaftAddr: p.RaftAddr, Shards: p.Shards,
			Self: p.MemberID == selfMember, Draining: p.Draining,
		}
		if m.Self && p.Draining {
			st.Draining = true
		}
		st.Members = append(st.Members, m)
		if p.NodeID != "" {
			live[p.NodeID] = true
			if p.RaftAddr != "" && !m.Draining {
				candidates++
			}
		}
	}
	slices.SortFunc(st.Members, func(a, b Member) int {
		switch {
		case a.Self != b.Self:
			if a.Self {
				return -1
			}
			return 1
		case a.NodeID < b.NodeID:
			return -1
		case a.NodeID > b.NodeID:
			return 1
		}
		return 0
	})
	st.Summary.WantVoters = max(1, min(replicas, candidates))
	st.Summary.Shards = len(groups)
	for _, g := range groups {
		sh := Shard{
			Shard: g.Shard, Term: g.Term, Leader: g.LeaderID,
			Voters: nonNil(g.Voters), NonVoters: g.NonVoters,
			LastIndex: g.LastIndex, CommitIndex: g.CommitIndex, AppliedIndex: g.AppliedIndex,
		}
		if g.CommitIndex > g.AppliedIndex {
			sh.ApplyLag = g.CommitIndex - g.AppliedIndex
		}
		isVoter, isNonVoter := slices.Contains(g.Voters, self), slices.Contains(g.NonVoters, self)
		sh.Replica = isVoter || isNonVoter
		switch {
		case g.State == "Shutdown":
			sh.Role = "shutdown"
		case !sh.Replica:
			sh.Role = "none"
		case g.State == "Leader":
			sh.Role = "leader"
			st.Summary.Leading++
		case isNonVoter:
			sh.Role = "non-voter"
		case g.State == "Candidate":
			sh.Role = "candidate"
		default:
			sh.Role = "follower"
		}
		if isVoter {
			st.Summary.Voter++
		}
		liveVoters := 0
		for _, v := range g.Voters {
			if live[v] {
				liveVoters++
			} else {
				sh.Gone = append(sh.Gone, v)
			}
		}
		switch {
		case !sh.Replica:
			st.Summary.NotReplica = append(st.Summary.NotReplica, g.Shard)
		case sh.Leader == "":
			st.Summary.Leaderless = append(st.Summary.Leaderless, g.Shard)
		}
		if sh.Replica && liveVoters < st.Summary.WantVoters {
			st.Summary.UnderReplicated = append(st.Summary.UnderReplicated, g.Shard)
		}
		st.Shards = append(st.Shards, sh)
	}
	st.Summary.Leaderless = nonNil(st.Summary.Leaderless)
	st.Summary.UnderReplicated = nonNil(st.Summary.UnderReplicated)
	st.Summary.NotReplica = nonNil(st.Summary.NotReplica)
	return st
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
