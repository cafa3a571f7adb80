package cluster

import (
	"bytes"
	"fmt"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pacluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/chatpacket/chatpacket/cluster/clusterpb"
	"github.com/hashicorp/memberlist"
	"google.golang.org/protobuf/proto"
)

// provider is the protoactor ClusterProvider on memberlist. Each node's
// memberlist metadata is its protoactor Member (actor system id, remote
// host and port, kinds), so every node can build the full member list that
// protoactor wants on every change.
type provider struct {
	cfg Config
	log *slog.Logger

	changed   chan struct{} // a member joined, left or changed; buffered 1
	members   atomic.Int32  // how many members were last handed to protoactor
	joined    chan struct{} // closed once this node is part of a cluster
	published chan struct{} // closed after the first topology is handed to protoactor
	pubOnce   sync.Once
	stop      chan struct{}
	wg        sync.WaitGroup

	peersChanged chan struct{} // the peer list changed; buffered 1

	blocked     chan struct{} // closed once this node learns that the cluster blocks its member id
	blockedOnce sync.Once

	meta struct {
		member  []byte                 // the protoactor Member part, fixed at start
		current atomic.Pointer[[]byte] // what memberlist gossips now
	}

	mu struct {
		sync.Mutex
		ml    *memberlist.Memberlist
		c     *pacluster.Cluster
		done  bool
		peers []Peer
		// shunned are live gossip members that this node's protoactor
		// blocks, by member id: told so until they rejoin.
		shunned  map[string]*memberlist.Node
		draining bool
	}
}

// Peer is a live member as this node's gossip sees it.
type Peer struct {
	MemberID   string // protoactor's member id: new at every start
	RemoteAddr string // host:port of its actor remote
	GossipAddr string // host:port of its memberlist
	NodeID     string // lasting, from its data dir; "" for a node without shards
	RaftAddr   string
	Shards     int
	Draining   bool // leaving: placement no longer counts it
}

var _ pacluster.ClusterProvider = (*provider)(nil)

func newProvider(cfg Config) *provider {
	return &provider{
		cfg:       cfg,
		log:       cfg.Logger.With("component", "gossip"),
		changed:   make(chan struct{}, 1),
		joined:    make(chan struct{}),
		published: make(chan struct{}),
		stop:      make(chan struct{}),

		peersChanged: make(chan struct{}, 1),
		blocked:      make(chan struct{}),
	}
}

// StartMember is called by protoactor once its remote listens, so the
// node's address is final here.
func (p *provider) StartMember(c *pacluster.Cluster) error {
	host, port, err := c.ActorSystem.GetHostPort()
	if err != nil {
		return fmt.Errorf("cluster: remote address: %w", err)
	}
	meta, err := proto.Marshal(&pacluster.Member{Id: c.ActorSystem.ID, Host: host, Port: int32(port), Kinds: c.GetClusterKinds()})
	if err != nil {
		return err
	}
	// Our NodeInfo follows the Member in the same bytes (see clusterpb).
	p.meta.member = meta
	meta, err = p.metaBytes(false)
	if err != nil {
		return err
	}
	if len(meta) > memberlist.MetaMaxSize {
		return fmt.Errorf("cluster: member metadata is %d bytes; memberlist allows %d (too many kinds?)", len(meta), memberlist.MetaMaxSize)
	}

	gossipHost, gossipPort, err := splitHostPort(p.cfg.GossipAddr)
	if err != nil {
		return err
	}
	mc := *p.cfg.Gossip
	mc.Name = c.ActorSystem.ID // unique per start: a restarted node is a new member
	mc.BindAddr, mc.BindPort = gossipHost, gossipPort
	mc.AdvertiseAddr, mc.AdvertisePort = "", 0
	p.meta.current.Store(&meta)
	mc.Delegate = metaDelegate{p}
	mc.Events = eventDelegate{p}
	mc.Logger = log.New(gossipLog{p.log}, "", 0)
	mc.LogOutput = nil
	ml, err := memberlist.Create(&mc)
	if err != nil {
		return fmt.Errorf("cluster: start gossip on %s: %w", p.cfg.GossipAddr, err)
	}

	p.mu.Lock()
	p.mu.ml, p.mu.c = ml, c
	p.mu.Unlock()

	p.wg.Go(p.publishLoop)
	if len(p.cfg.Join) == 0 {
		close(p.joined)
	} else {
		p.wg.Go(p.joinLoop)
	}
	p.signal()
	return nil
}

func (p *provider) StartClient(*pacluster.Cluster) error {
	return fmt.Errorf("cluster: client-only members are not supported")
}

// Shutdown leaves the cluster (gracefully: telling the others first) and
// stops gossip. It is safe to call twice.
func (p *provider) Shutdown(graceful bool) error {
	p.mu.Lock()
	if p.mu.done || p.mu.ml == nil {
		p.mu.done = true
		p.mu.Unlock()
		return nil
	}
	p.mu.done = true
	ml := p.mu.ml
	p.mu.Unlock()

	var err error
	if graceful {
		if lerr := ml.Leave(2 * time.Second); lerr != nil {
			err = fmt.Errorf("cluster: leave: %w", lerr)
		}
	}
	close(p.stop)
	p.wg.Wait()
	if serr := ml.Shutdown(); serr != nil && err == nil {
		err = fmt.Errorf("cluster: stop gossip: %w", serr)
	}
	return err
}

// gossipAddr is where this node's memberlist listens.
func (p *provider) gossipAddr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.ml == nil {
		return ""
	}
	n := p.mu.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// gossipMembers are the gossip addresses of every member memberlist
// knows, this node included.
func (p *provider) gossipMembers() []string {
	p.mu.Lock()
	ml := p.mu.ml
	p.mu.Unlock()
	if ml == nil {
		return nil
	}
	var addrs []string
	for _, m := range ml.Members() {
		addrs = append(addrs, m.Address())
	}
	return addrs
}

func (p *provider) signal() {
	select {
	case p.changed <- struct{}{}:
	default: // an update is pending already; it will read the latest list
	}
}

// republish is how often a node reads its members again without a gossip
// change: protoactor's block list grows by its own gossip, and a member
// this node blocks is told so again in case it missed it (a node just
// woken from a pause is slow).
const republish = time.Second

// publishLoop hands protoactor the whole member list after every change,
// and tells the members it blocks so.
func (p *provider) publishLoop() {
	t := time.NewTicker(republish)
	defer t.Stop()
	for {
		select {
		case <-p.changed:
		case <-t.C:
		case <-p.stop:
			return
		}
		p.publish()
	}
}

func (p *provider) publish() {
	p.mu.Lock()
	ml, c, done := p.mu.ml, p.mu.c, p.mu.done
	p.mu.Unlock()
	if done {
		// Leaving: the member list memberlist shows now lacks this node,
		// and handing it over would have protoactor block this node's own
		// id, writing its block list while its gossip reads it (a race
		// inside protoactor, seen by the race detector).
		return
	}
	var members pacluster.Members
	var peers []Peer
	shunned := map[string]*memberlist.Node{}
	blocks := c.Remote.BlockList()
	for _, n := range ml.Members() {
		var m pacluster.Member
		var info clusterpb.NodeInfo
		if err := proto.Unmarshal(n.Meta, &m); err != nil || m.Id != n.Name || proto.Unmarshal(n.Meta, &info) != nil {
			p.log.Warn("ignoring a gossip member with unreadable metadata", "member", n.Name, "addr", n.Address())
			continue
		}
		if blocks.IsBlocked(m.Id) {
			// Gossip takes it back (it refuted its death), protoactor
			// never will: it is not a peer until it rejoins.
			if m.Id == c.ActorSystem.ID {
				p.learnBlocked("this node's own protoactor")
			} else {
				shunned[m.Id] = n
			}
			continue
		}
		members = append(members, &m)
		peers = append(peers, Peer{
			MemberID: m.Id, RemoteAddr: net.JoinHostPort(m.Host, strconv.Itoa(int(m.Port))), GossipAddr: n.Address(),
			NodeID: info.NodeId, RaftAddr: info.RaftAddr, Shards: int(info.Shards), Draining: info.Draining,
		})
	}
	c.MemberList.UpdateClusterTopology(members) // returns at once when nothing changed
	// memberlist shuffles its members for probing: order them, so that
	// only a real change counts as one.
	slices.SortFunc(peers, func(a, b Peer) int { return strings.Compare(a.MemberID, b.MemberID) })
	p.mu.Lock()
	changed := !slices.Equal(p.mu.peers, peers)
	p.mu.peers = peers
	p.mu.shunned = shunned
	p.mu.Unlock()
	p.tellShunned()
	if changed {
		select {
		case p.peersChanged <- struct{}{}:
		default:
		}
	}
	if old := p.members.Swap(int32(len(members))); old != int32(len(members)) {
		p.log.Info("cluster members changed", "members", len(members), "before", old)
	}
	p.pubOnce.Do(func() { close(p.published) })
}

// tellShunned tells each live member this node blocks that it is blocked.
func (p *provider) tellShunned() {
	p.mu.Lock()
	ml, shunned := p.mu.ml, p.mu.shunned
	p.mu.Unlock()
	for id, n := range shunned {
		msg, err := proto.Marshal(&clusterpb.Blocked{MemberId: id})
		if err == nil {
			err = ml.SendReliable(n, msg)
		}
		if err != nil {
			p.log.Debug("telling a blocked member", "member", id, "err", err)
		}
	}
}

// learnBlocked marks this node's member id as blocked by the cluster: the
// node must rejoin under a new one (Node.Blocked).
func (p *provider) learnBlocked(from string) {
	p.blockedOnce.Do(func() {
		p.log.Warn("the cluster declared this node dead and will not take its member id back: it must rejoin under a new one", "told_by", from)
		close(p.blocked)
	})
}

// joinLoop joins the seeds, retrying until one answers or the node stops.
func (p *provider) joinLoop() {
	p.mu.Lock()
	ml := p.mu.ml
	p.mu.Unlock()
	for attempt := 1; ; attempt++ {
		n, err := ml.Join(p.cfg.Join)
		if n > 0 {
			p.log.Info("joined the cluster", "seeds", p.cfg.Join, "attempts", attempt)
			close(p.joined)
			return
		}
		if attempt == 1 || attempt%25 == 0 {
			p.log.Warn("cannot join the cluster yet; retrying", "seeds", p.cfg.Join, "attempts", attempt, "err", err)
		}
		select {
		case <-time.After(p.cfg.JoinRetry):
		case <-p.stop:
			return
		}
	}
}

// metaBytes is the node's gossip metadata: its protoactor Member, then its
// NodeInfo.
func (p *provider) metaBytes(draining bool) ([]byte, error) {
	id := p.cfg.Identity
	return proto.MarshalOptions{}.MarshalAppend(append([]byte(nil), p.meta.member...),
		&clusterpb.NodeInfo{NodeId: id.NodeID, RaftAddr: id.RaftAddr, Shards: uint32(id.Shards), Draining: draining})
}

// setDraining tells the cluster that this node is leaving (or no longer
// is): its metadata changes and gossip spreads it.
func (p *provider) setDraining(draining bool) error {
	meta, err := p.metaBytes(draining)
	if err != nil {
		return err
	}
	p.meta.current.Store(&meta)
	p.mu.Lock()
	ml := p.mu.ml
	p.mu.draining = draining
	p.mu.Unlock()
	if ml == nil {
		return fmt.Errorf("cluster: not started")
	}
	return ml.UpdateNode(5 * time.Second)
}

// isDraining says whether this node told the cluster it is leaving.
func (p *provider) isDraining() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.draining
}

// metaDelegate gives memberlist this node's metadata and takes the one
// message members send each other directly: Blocked.
type metaDelegate struct{ p *provider }

func (d metaDelegate) NodeMeta(int) []byte { return *d.p.meta.current.Load() }

func (d metaDelegate) NotifyMsg(b []byte) {
	var msg clusterpb.Blocked
	if proto.Unmarshal(b, &msg) != nil || msg.MemberId == "" {
		return
	}
	d.p.mu.Lock()
	c := d.p.mu.c
	d.p.mu.Unlock()
	if c != nil && msg.MemberId == c.ActorSystem.ID { // not about an id this node had before
		d.p.learnBlocked("a member")
	}
}

func (metaDelegate) GetBroadcasts(int, int) [][]byte { return nil }
func (metaDelegate) LocalState(bool) []byte          { return nil }
func (metaDelegate) MergeRemoteState([]byte, bool)   {}

// eventDelegate only signals: memberlist holds its node lock while it calls
// these, and reading Members here would deadlock.
type eventDelegate struct{ p *provider }

func (e eventDelegate) NotifyJoin(*memberlist.Node)   { e.p.signal() }
func (e eventDelegate) NotifyLeave(*memberlist.Node)  { e.p.signal() }
func (e eventDelegate) NotifyUpdate(*memberlist.Node) { e.p.signal() }

// gossipLog sends memberlist's log lines to slog: [DEBUG] and [INFO] lines
// are routine and dropped, [WARN] and [ERR] kept.
type gossipLog struct{ l *slog.Logger }

func (g gossipLog) Write(b []byte) (int, error) {
	line := string(bytes.TrimSpace(b))
	switch {
	case bytes.Contains(b, []byte("[ERR]")):
		g.l.Error(line)
	case bytes.Contains(b, []byte("[WARN]")):
		g.l.Warn(line)
	}
	return len(b), nil
}

func splitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("cluster: address %q: %w", addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("cluster: address %q: bad port", addr)
	}
	return host, n, nil
}
