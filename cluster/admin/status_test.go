package admin

import (
	"slices"
	"testing"

	"github.com/chatpacket/chatpacket/cluster"
	"github.com/chatpacket/chatpacket/cluster/replica"
)

func TestBuildStatus(t *testing.T) {
	peers := []cluster.Peer{
		{MemberID: "m-b", NodeID: "n-b", RemoteAddr: "10.0.0.2:8090", RaftAddr: "10.0.0.2:8300", Shards: 4},
		{MemberID: "m-a", NodeID: "n-a", RemoteAddr: "10.0.0.1:8090", RaftAddr: "10.0.0.1:8300", Shards: 4},
		{MemberID: "m-c", NodeID: "n-c", RemoteAddr: "10.0.0.3:8090", RaftAddr: "10.0.0.3:8300", Shards: 4, Draining: true},
	}
	groups := []replica.ShardStatus{
		// Settled: three live voters, led here.
		{Shard: 0, State: "Leader", LeaderID: "n-a", Voters: []string{"n-a", "n-b", "n-c"}, LastIndex: 9, CommitIndex: 9, AppliedIndex: 7},
		// A voter gone: under-replicated.
		{Shard: 1, State: "Follower", LeaderID: "n-b", Voters: []string{"n-a", "n-b", "n-x"}},
		// An election.
		{Shard: 2, State: "Candidate", Voters: []string{"n-a", "n-b", "n-c"}},
		// Not a replica here: stale, counted apart.
		{Shard: 3, State: "Follower", Voters: []string{"n-b"}},
		// A non-voter catching up.
		{Shard: 4, State: "Follower", LeaderID: "n-c", Voters: []string{"n-b", "n-c"}, NonVoters: []string{"n-a"}},
	}
	st := buildStatus("n-a", "/data", 3, peers, "m-a", groups)

	if st.NodeID != "n-a" || st.Draining || len(st.Members) != 3 || !st.Members[0].Self || st.Members[0].NodeID != "n-a" {
		t.Fatalf("members = %+v; want this node first, not draining", st.Members)
	}
	if c := st.Members[2]; c.NodeID != "n-c" || !c.Draining {
		t.Errorf("member n-c = %+v; want draining", c)
	}
	// n-c drains, so two nodes can hold replicas.
	if st.Summary.WantVoters != 2 {
		t.Errorf("WantVoters = %d; want 2", st.Summary.WantVoters)
	}
	roles := []string{"leader", "follower", "candidate", "none", "non-voter"}
	for i, sh := range st.Shards {
		if sh.Role != roles[i] {
			t.Errorf("shard %d role = %q; want %q", i, sh.Role, roles[i])
		}
	}
	if st.Shards[0].ApplyLag != 2 {
		t.Errorf("shard 0 ApplyLag = %d; want 2", st.Shards[0].ApplyLag)
	}
	if got := st.Shards[1].Gone; !slices.Equal(got, []string{"n-x"}) {
		t.Errorf("shard 1 Gone = %v; want [n-x]", got)
	}
	check := func(name string, got, want []uint16) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s = %v; want %v", name, got, want)
		}
	}
	check("Leaderless", st.Summary.Leaderless, []uint16{2})
	check("UnderReplicated", st.Summary.UnderReplicated, []uint16{})
	check("NotReplica", st.Summary.NotReplica, []uint16{3})
	if st.Summary.Leading != 1 || st.Summary.Voter != 3 {
		t.Errorf("Leading, Voter = %d, %d; want 1, 3", st.Summary.Leading, st.Summary.Voter)
	}

	// Without the drain, three nodes can hold replicas: shard 1 has two
	// live voters of three, shard 4 two voters.
	peers[2].Draining = false
	st = buildStatus("n-a", "/data", 3, peers, "m-a", groups)
	check("UnderReplicated", st.Summary.UnderReplicated, []uint16{1, 4})
}

func TestHoldings(t *testing.T) {
	leading, voter := holdings("n-a", []replica.ShardStatus{
		{Shard: 0, State: "Leader", Voters: []string{"n-a"}},
		{Shard: 1, State: "Follower", Voters: []string{"n-a", "n-b"}},
		{Shard: 2, State: "Follower", Voters: []string{"n-b"}, NonVoters: []string{"n-a"}},
	})
	if !slices.Equal(leading, []uint16{0}) || !slices.Equal(voter, []uint16{0, 1}) {
		t.Errorf("holdings = %v, %v; want [0], [0 1]", leading, voter)
	}
}
