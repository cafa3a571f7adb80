// Package transport holds ChatPacket's edge: the HTTP API of API.md and its
// additions (docs/api.md), the WebSocket connections, the widget (its
// assets in package widgetui) and the dashboard's pages (templates and
// modules in package dashboard).
//
// Concurrency: handlers run concurrently, one goroutine per request, and
// must not block on anything but the request's own context.
package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Timeouts of the HTTP server. Every listener has them so that a slow or
// idle client cannot hold a connection for ever.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 30 * time.Second
	WriteTimeout      = 30 * time.Second
	IdleTimeout       = 120 * time.Second
	MaxHeaderBytes    = 16 << 10
)

// HSTS is the Strict-Transport-Security value of every answer over TLS:
// browsers that saw it reach the node over HTTPS only, for a year.
const HSTS = "max-age=31536000"

// Server is the node's HTTP server.
type Server struct {
	log     *slog.Logger
	http    *http.Server
	mux     *http.ServeMux
	ready   atomic.Bool
	metrics *metrics
	api     atomic.Pointer[http.Handler] // nil while no node is there to answer
	hsts    bool                         // over TLS, answers carry Strict-Transport-Security
}

// NewServer returns a server for addr; it does not listen yet.
func NewServer(addr string, log *slog.Logger) *Server {
	s := &Server{log: log, mux: http.NewServeMux(), metrics: newMetrics()}
	mux := s.mux
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", s.metrics.handler())
	mux.HandleFunc("/", s.serveAPI)
	s.http = &http.Server{
		Addr:              addr,
		Handler:           http.HandlerFunc(s.serveHTTP),
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s
}

// UseTLS makes Serve serve HTTPS (and WSS) with cfg; call it before
// Serve. With hsts every answer carries Strict-Transport-Security: not for
// a development certificate, whose HSTS a browser would keep for a year
// for every app on localhost.
//
// The server speaks HTTP/1.1 only: WebSockets are upgraded by hijacking an
// HTTP/1.1 connection, which HTTP/2 cannot do.
func (s *Server) UseTLS(cfg *tls.Config, hsts bool) {
	s.hsts = hsts
	cfg = cfg.Clone()
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	s.http.TLSConfig = cfg
	var p http.Protocols
	p.SetHTTP1(true)
	s.http.Protocols = &p
}

// serveHTTP is the handler of every request.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	// Only over TLS: RFC 6797 has browsers ignore it over plain HTTP.
	if r.TLS != nil && s.hsts {
		w.Header().Set("Strict-Transport-Security", HSTS)
	}
	s.mux.ServeHTTP(w, r)
}

// mount makes h serve every route but the server's own (health and
// metrics); nil makes them answer 503 until the next mount.
func (s *Server) mount(h http.Handler) {
	if h == nil {
		s.api.Store(nil)
		return
	}
	s.api.Store(&h)
}

// Unmount makes the API answer 503 (unavailable) until an API is
// registered again: while the node rejoins its cluster, say.
func (s *Server) Unmount() { s.mount(nil) }

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	if h := s.api.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	w.Header().Set("Retry-After", "1")
	writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": map[string]string{
		"code": "unavailable", "message": "this node is joining its cluster; try again shortly or ask another node"}})
}

// SetReady marks the node as able (or no longer able) to serve writes:
// /readyz answers 200 only while it is.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// Listen binds the server's address and returns the listener, so that
// callers learn the real port when the address asked for port 0.
func (s *Server) Listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", s.http.Addr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen on %s: %w", s.http.Addr, err)
	}
	return ln, nil
}

// Serve serves on ln until Shutdown, over TLS after UseTLS; it returns
// nil after a clean shutdown.
func (s *Server) Serve(ln net.Listener) error {
	var err error
	if s.http.TLSConfig != nil {
		err = s.http.ServeTLS(ln, "", "") // the certificates are in TLSConfig
	} else {
		err = s.http.Serve(ln)
	}
	if !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("transport: serve: %w", err)
	}
	return nil
}

// Shutdown stops accepting connections and waits for requests in flight
// until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.SetReady(false)
	return s.http.Shutdown(ctx)
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !s.ready.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready")
		return
	}
	fmt.Fprintln(w, "ready")
}
