package replica

import (
	"sync"
	"time"
)

// Member is a live node as the gossip member list shows it.
type Member struct {
	// ID is the node's raft server id (Config.NodeID on that node): the
	// same on every start from the same data dir.
	ID string
	// RaftAddr is the address of the node's raftmux listener.
	RaftAddr string
	// Draining marks a node that is leaving: it stays reachable while the
	// shard leaders move its replicas elsewhere, but placement no longer
	// counts it. The node sets it on itself by Groups.Drain; every other
	// node must learn it from gossip, or their leaders never remove its
	// replicas.
	Draining bool
}

// members is this node's knowledge of the cluster's nodes: the latest live
// list, and for each node that left it, since when it has been gone.
type members struct {
	self string

	mu struct {
		sync.Mutex
		known    bool // SetMembers was called at least once
		draining bool // this node is draining (Drain)
		byID     map[string]*memberState
	}
}

type memberState struct {
	Member
	live      bool
	goneSince time.Time // when it left the live list, or was first missed
}

func newMembers(self Member) *members {
	m := &members{self: self.ID}
	m.mu.byID = map[string]*memberState{self.ID: {Member: self, live: true}}
	return m
}

// set records the live list at now. This node stays live whatever the list
// says: it knows it runs.
func (m *members) set(live []Member, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mu.known = true
	seen := make(map[string]bool, len(live))
	for _, l := range live {
		if l.ID == "" || seen[l.ID] {
			continue
		}
		seen[l.ID] = true
		if l.ID == m.self {
			m.mu.byID[l.ID].Draining = l.Draining
			continue
		}
		m.mu.byID[l.ID] = &memberState{Member: l, live: true}
	}
	for id, s := range m.mu.byID {
		if !seen[id] && id != m.self && s.live {
			s.live, s.goneSince = false, now
		}
	}
}

func (m *members) setDraining() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mu.draining = true
}

func (m *members) isDraining() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.draining || m.mu.byID[m.self].Draining
}

// view is a copy of what members knows at now, for one reconcile pass.
// Server ids in configs that the member list never named count as gone
// since now, the first time they are asked about: a node this one has not
// heard of since it started gets DeadTimeout to show up.
func (m *members) view(now time.Time, configs []string, dead time.Duration) (*view, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.mu.known {
		return nil, false
	}
	for _, id := range configs {
		if _, ok := m.mu.byID[id]; !ok {
			m.mu.byID[id] = &memberState{Member: Member{ID: id}, goneSince: now}
		}
	}
	v := &view{
		now:     now,
		self:    m.self,
		dead:    dead,
		byID:    make(map[string]memberState, len(m.mu.byID)),
		selfOut: m.mu.draining || m.mu.byID[m.self].Draining,
	}
	for id, s := range m.mu.byID {
		st := *s
		if id == m.self {
			st.Draining = v.selfOut
		}
		v.byID[id] = st
		// A node without a raft address hosts no replicas (a gossip-only
		// member); a draining one is leaving.
		if st.Draining || (st.live && st.RaftAddr == "") {
			continue
		}
		// A node gone for less than DeadTimeout keeps its place, so that
		// a restart or a gossip flap moves nothing.
		if st.live || now.Sub(st.goneSince) < dead {
			v.candidates = append(v.candidates, id)
		}
		if st.live {
			v.liveCandidates++
		}
	}
	return v, true
}

// view is one reconcile pass's picture of the members.
type view struct {
	now            time.Time
	self           string
	dead           time.Duration
	byID           map[string]memberState
	selfOut        bool     // this node is draining
	candidates     []string // ids placement chooses from
	liveCandidates int      // live, not draining
}

// desired is the placement of shard: the ids that should be its voters.
func (v *view) desired(shard uint16, replicas int) []string {
	return place(v.candidates, shard, replicas)
}

// live returns the member with id if it is in the live list.
func (v *view) live(id string) (Member, bool) {
	s, ok := v.byID[id]
	return s.Member, ok && s.live
}

// isDead reports whether id has been gone for DeadTimeout or longer.
func (v *view) isDead(id string) bool {
	s, ok := v.byID[id]
	return ok && !s.live && v.now.Sub(s.goneSince) >= v.dead
}
