package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/chatpacket/chatpacket/cluster"
	"github.com/chatpacket/chatpacket/cluster/backup"
	"github.com/chatpacket/chatpacket/cluster/replica"
)

// Config is what Start needs.
type Config struct {
	// DataDir is the node's data dir; the socket is SocketPath(DataDir).
	DataDir string
	// Node is the running node, started with shards (cluster.StartShards).
	Node *cluster.Node
	// Replicas is the voters each shard should have (cluster.Config's);
	// status counts a shard with fewer live voters than min(Replicas,
	// live nodes) as under-replicated. Default replica.DefaultReplicas.
	Replicas int
	// Logger receives the endpoint's events (start, drains). Default
	// slog.Default().
	Logger *slog.Logger
	// Backups is what POST /backup and GET /ledger read (its NodeID is
	// filled in); nil answers them with 503.
	Backups *backup.Source
	// Policy publishes and lists policy notices (the node's API); nil:
	// the policy calls answer 503.
	Policy Policy
	// Privacy lists the tenants' overdue privacy requests (the node's
	// API); nil: GET /privacy/overdue answers 503.
	Privacy Privacy
}

// Server is a node's admin endpoint.
type Server struct {
	cfg    Config
	node   *cluster.Node
	groups *replica.Groups
	self   string // node id
	member string // this start's member id
	path   string
	log    *slog.Logger

	srv      *http.Server
	cancel   context.CancelFunc // ends every handler's context
	handlers sync.WaitGroup
	done     sync.WaitGroup // the HTTP server
	once     sync.Once

	mu struct {
		sync.Mutex
		closed bool // no handler starts once set
	}
	backingUp sync.Mutex // held by the one backup that may run
}

// DefaultDrainTimeout bounds a drain whose request gives no timeout;
// MaxDrainTimeout bounds any.
const (
	DefaultDrainTimeout = 5 * time.Minute
	MaxDrainTimeout     = time.Hour
)

// Start listens on the node's admin socket and serves it until Close.
// It refuses a socket another live node answers on, and replaces a stale
// one.
func Start(cfg Config) (*Server, error) {
	if cfg.Node == nil || cfg.Node.Shards() == nil {
		return nil, errors.New("admin: the node has no shards (start it with cluster.StartShards)")
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = replica.DefaultReplicas
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{
		cfg: cfg, node: cfg.Node, groups: cfg.Node.Shards().Groups, member: cfg.Node.System.ID,
		path: SocketPath(cfg.DataDir), log: cfg.Logger.With("component", "admin"),
	}
	for _, p := range cfg.Node.Peers() {
		if p.MemberID == s.member {
			s.self = p.NodeID
		}
	}
	if s.self == "" {
		return nil, errors.New("admin: this node is not in its own member list")
	}
	ln, err := listen(s.path)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	mux := http.NewServeMux()
	mux.HandleFunc("GET /cluster", s.track(s.handleCluster))
	mux.HandleFunc("POST /drain", s.track(s.handleDrain))
	mux.HandleFunc("POST /backup", s.track(s.handleBackup))
	mux.HandleFunc("GET /ledger", s.track(s.handleLedger))
	mux.HandleFunc("POST /policy", s.track(s.handlePublishPolicy))
	mux.HandleFunc("GET /policy", s.track(s.handlePolicyNotices))
	mux.HandleFunc("GET /privacy/overdue", s.track(s.handleOverdue))
	s.srv = &http.Server{
		Handler:           mux,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.done.Go(func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin endpoint stopped", "err", err)
		}
	})
	s.log.Info("admin endpoint", "socket", s.path, "node_id", s.self)
	return s, nil
}

// Path is the socket the server listens on.
func (s *Server) Path() string { return s.path }

// Close stops serving: it ends every request (a drain in progress stops
// being watched, but the node stays draining), waits for the handlers and
// removes the socket. It is safe to call twice.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		s.mu.Lock()
		s.mu.closed = true
		s.mu.Unlock()
		s.cancel()
		err = s.srv.Close()
		s.handlers.Wait()
		s.done.Wait()
		if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, fmt.Errorf("admin: remove the socket: %w", rerr))
		}
	})
	return err
}

// track counts a handler, so that Close waits for it: http.Server.Close
// does not.
func (s *Server) track(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		if s.mu.closed {
			s.mu.Unlock()
			writeError(w, http.StatusServiceUnavailable, "the node is stopping")
			return
		}
		s.handlers.Add(1)
		s.mu.Unlock()
		defer s.handlers.Done()
		h(w, r)
	}
}

func (s *Server) status() *Status {
	return buildStatus(s.self, s.cfg.DataDir, s.cfg.Replicas, s.node.Peers(), s.member, s.groups.Status())
}

func (s *Server) handleCluster(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.status())
}

// handleDrain drains this node, streaming a Progress line every second.
func (s *Server) handleDrain(w http.ResponseWriter, r *http.Request) {
	if id := r.URL.Query().Get("node"); id != s.self {
		writeError(w, http.StatusConflict, fmt.Sprintf("this is node %s (data dir %s), not %q: a node drains only itself", s.self, s.cfg.DataDir, id))
		return
	}
	timeout := DefaultDrainTimeout
	if v := r.URL.Query().Get("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("timeout %q: want a positive duration such as 5m", v))
			return
		}
		timeout = min(d, MaxDrainTimeout)
	}
	leading, voter := holdings(s.self, s.groups.Status())
	if len(leading)+len(voter) > 0 && !s.othersCanTakeOver() {
		writeError(w, http.StatusConflict, fmt.Sprintf("node %s is the only node that can hold replicas: a drain would never finish. Start another node and join it to this cluster first", s.self))
		return
	}

	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	s.log.Info("draining: requested by the operator", "timeout", timeout, "leading", len(leading), "voter", len(voter))
	start := time.Now()
	drained := make(chan error, 1)
	// Node.Drain gossips that this node is leaving, so that the other
	// nodes' leaders remove its replicas, then runs Groups.Drain.
	go func() { drained <- s.node.Drain(ctx) }()

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	send := func(p Progress) {
		p.Leading, p.Voter = holdings(s.self, s.groups.Status())
		p.Leading, p.Voter = nonNil(p.Leading), nonNil(p.Voter)
		p.Elapsed = time.Since(start).Round(100 * time.Millisecond).Seconds()
		// A write error is a client that went: ctx ends with it.
		if enc.Encode(p) == nil && flusher != nil {
			flusher.Flush()
		}
	}
	send(Progress{})
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			send(Progress{})
		case err := <-drained:
			if err != nil {
				s.log.Warn("draining: not finished; the node stays draining until it stops", "err", err)
				send(Progress{Error: err.Error()})
				return
			}
			s.log.Info("draining: done: this node leads no shard and is a voter of none", "took", time.Since(start).Round(time.Millisecond))
			send(Progress{Done: true})
			return
		}
	}
}

// othersCanTakeOver reports whether another live node that holds replicas
// and is not draining exists: a drain needs somewhere to move to.
func (s *Server) othersCanTakeOver() bool {
	return slices.ContainsFunc(s.node.Peers(), func(p cluster.Peer) bool {
		return p.MemberID != s.member && p.NodeID != "" && p.RaftAddr != "" && !p.Draining
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v) // a client that went away is no error of ours
}

// apiError is the body of every error answer.
type apiError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, apiError{Error: msg})
}
