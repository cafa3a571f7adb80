package load

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestSourcesRoundRobin(t *testing.T) {
	s := &sources{n: 3}
	var got []string
	for range 7 {
		got = append(got, s.addr().IP.String())
	}
	want := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.1"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("addresses = %v; want %v", got, want)
		}
	}
	if a := (&sources{n: 1}).addr(); a != nil {
		t.Errorf("one source address binds %v; want the kernel's choice (nil)", a)
	}
}

func TestDefaultSourceAddrs(t *testing.T) {
	for target, want := range map[string]int{
		"http://127.0.0.1:8080":    8,
		"http://127.0.0.7:80":      8,
		"http://localhost:8080":    8,
		"https://chat.example.com": 1,
		"http://10.0.0.5:8080":     1,
		"http://[::1]:8080":        1, // 127/8 source addresses cannot reach ::1
		"not a url\x7f":            1,
	} {
		if got := DefaultSourceAddrs(target); got != want {
			t.Errorf("DefaultSourceAddrs(%q) = %d; want %d", target, got, want)
		}
	}
}

// The client's connections really leave from the source addresses.
func TestClientDialsFromSourceAddrs(t *testing.T) {
	seen := make(chan string, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		seen <- host
	}))
	defer srv.Close()
	s := &sources{n: 4}
	for range 4 {
		hc := s.client(1) // a new pool each time: a new connection
		resp, err := hc.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		hc.CloseIdleConnections()
	}
	got := map[string]bool{}
	for range 4 {
		got[<-seen] = true
	}
	for _, ip := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		if !got[ip] {
			t.Errorf("requests came from %v; want each of 127.0.0.1-4", got)
		}
	}
}
