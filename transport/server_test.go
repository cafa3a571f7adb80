package transport

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestHealthAndReadiness serves on a real socket: /healthz answers while
// the process serves, /readyz only once the node is marked ready, and
// Shutdown stops both.
func TestHealthAndReadiness(t *testing.T) {
	s := NewServer("127.0.0.1:0", slog.New(slog.NewTextHandler(io.Discard, nil)))
	ln, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	base := "http://" + ln.Addr().String()

	if got := get(t, base+"/healthz"); got != http.StatusOK {
		t.Fatalf("GET /healthz = %d; want 200", got)
	}
	if got := get(t, base+"/readyz"); got != http.StatusServiceUnavailable {
		t.Fatalf("GET /readyz before ready = %d; want 503", got)
	}
	s.SetReady(true)
	if got := get(t, base+"/readyz"); got != http.StatusOK {
		t.Fatalf("GET /readyz when ready = %d; want 200", got)
	}

	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "chatpacket_sockets_open") || !strings.Contains(string(body), "go_goroutines") {
		t.Fatalf("GET /metrics = %d; want Prometheus text with our metrics", resp.StatusCode)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve = %v; want nil after Shutdown", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("GET /healthz after Shutdown succeeded; want a refused connection")
	}
}

// TestPostMetrics: every durable post is counted, and timed, by author.
func TestPostMetrics(t *testing.T) {
	base := apiServer(t)
	owner := newClient(t, base)
	wk := signupWidgetKey(t, owner, "ada@example.com")
	_, v := newVisitor(t, base, wk)
	conv := visitorPosts(t, v, "", "c1", "hello")
	visitorPosts(t, v, conv, "c2", "again")
	visitorPosts(t, v, conv, "c2", "again") // a repeat: acked, counted, not stored twice

	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`chatpacket_messages_acked_total{author="visitor"} 3`,
		`chatpacket_post_duration_seconds_count{author="visitor"} 3`,
		`chatpacket_post_duration_seconds_count{author="agent"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
