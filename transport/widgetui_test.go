package transport

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/transport/widgetui"
)

// The widget's weight budget: what a business's visitors download before
// they chat (the loader) and when they open the chat (the frame).
const (
	loaderBudget = 3 << 10
	frameBudget  = 30 << 10
)

func TestWidgetUISizeBudget(t *testing.T) {
	loader := widgetui.Lookup(widgetui.Loader)
	t.Logf("loader.js: %d bytes, %d gzipped", len(loader.Body), len(loader.Gzip))
	if len(loader.Gzip) > loaderBudget {
		t.Errorf("loader.js is %d bytes gzipped; the budget is %d", len(loader.Gzip), loaderBudget)
	}
	frame := 0
	for _, name := range []string{widgetui.FrameHTML, widgetui.FrameCSS, widgetui.FrameJS} {
		f := widgetui.Lookup(name)
		if f == nil || len(f.Body) == 0 {
			t.Fatalf("%s is not embedded", name)
		}
		t.Logf("%s: %d bytes, %d gzipped", name, len(f.Body), len(f.Gzip))
		frame += len(f.Gzip)
	}
	t.Logf("frame, together: %d bytes gzipped", frame)
	if frame > frameBudget {
		t.Errorf("the frame is %d bytes gzipped; the budget is %d", frame, frameBudget)
	}
}

// fetchRaw fetches path with extra headers, without Go's transparent gunzip,
// and returns the response and its (raw) body.
func fetchRaw(t *testing.T, base, path string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", path, err)
	}
	return resp, body
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	r, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("bad gzip: %v", err)
	}
	return out
}

func wantHeader(t *testing.T, what string, resp *http.Response, name, want string) {
	t.Helper()
	if got := resp.Header.Get(name); got != want {
		t.Errorf("%s: %s = %q; want %q", what, name, got, want)
	}
}

func TestWidgetUILoaderAndAssets(t *testing.T) {
	base := apiServer(t)

	resp, body := fetchRaw(t, base, "/widget.js", map[string]string{"Accept-Encoding": "gzip"})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /widget.js = %d; want 200", resp.StatusCode)
	}
	wantHeader(t, "loader", resp, "Content-Type", "application/javascript; charset=utf-8")
	wantHeader(t, "loader", resp, "Cache-Control", "public, max-age=300")
	wantHeader(t, "loader", resp, "X-Content-Type-Options", "nosniff")
	wantHeader(t, "loader", resp, "Content-Encoding", "gzip")
	if got := gunzip(t, body); !bytes.Equal(got, widgetui.Lookup(widgetui.Loader).Body) {
		t.Errorf("the gzipped loader is not the loader")
	}
	resp, body = fetchRaw(t, base, "/widget.js", nil)
	if resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(body, widgetui.Lookup(widgetui.Loader).Body) {
		t.Errorf("GET /widget.js without Accept-Encoding = %q encoded, %d bytes; want the plain loader", resp.Header.Get("Content-Encoding"), len(body))
	}
	if resp, _ := fetchRaw(t, base, "/widget.js", map[string]string{"If-None-Match": resp.Header.Get("ETag")}); resp.StatusCode != http.StatusNotModified {
		t.Errorf("GET /widget.js with its ETag = %d; want 304", resp.StatusCode)
	}

	for path, ct := range map[string]string{"/widget/frame.js": "application/javascript; charset=utf-8", "/widget/frame.css": "text/css; charset=utf-8"} {
		resp, body := fetchRaw(t, base, path, nil)
		if resp.StatusCode != http.StatusOK || len(body) == 0 {
			t.Fatalf("GET %s = %d, %d bytes; want 200", path, resp.StatusCode, len(body))
		}
		wantHeader(t, path, resp, "Content-Type", ct)
		wantHeader(t, path, resp, "X-Content-Type-Options", "nosniff")
	}
}

func TestWidgetUIFrameHeaders(t *testing.T) {
	base := apiServer(t)
	owner, wk := loggedIn(t, base, "ada@example.com")
	frame := func(key, origin string) (*http.Response, []byte) {
		t.Helper()
		return fetchRaw(t, base, "/widget/frame?key="+key+"&origin="+origin, nil)
	}

	resp, body := frame(wk, "http://shop.example:8000")
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, widgetui.Lookup(widgetui.FrameHTML).Body) {
		t.Fatalf("GET /widget/frame = %d %.80q; want 200 and the frame", resp.StatusCode, body)
	}
	wantHeader(t, "frame", resp, "Content-Type", "text/html; charset=utf-8")
	wantHeader(t, "frame", resp, "X-Content-Type-Options", "nosniff")
	wantHeader(t, "frame", resp, "Referrer-Policy", "no-referrer")
	csp := resp.Header.Get("Content-Security-Policy")
	host := strings.TrimPrefix(base, "http://")
	for _, directive := range []string{
		"default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
		"connect-src 'self' ws://" + host,
	} {
		if !strings.Contains(csp, directive+";") && !strings.HasSuffix(csp, directive) {
			t.Errorf("frame CSP %q lacks %q", csp, directive)
		}
	}
	// No allowed origins: any page may frame it, one opened from a file
	// (origin "null") too, which "frame-ancestors *" would refuse.
	if strings.Contains(csp, "frame-ancestors") {
		t.Errorf("frame CSP %q of a tenant without allowed origins limits its ancestors", csp)
	}
	if resp, body := frame(wk, "null"); resp.StatusCode != http.StatusOK {
		t.Errorf("frame for a file's page (origin null) = %d %s; want 200", resp.StatusCode, body)
	}

	for _, tc := range []struct {
		key, origin string
		status      int
	}{
		{"wk_unknown", "http://shop.example", http.StatusNotFound},
		{"nonsense", "http://shop.example", http.StatusNotFound},
		{"", "http://shop.example", http.StatusNotFound},
		{wk, "", http.StatusBadRequest},
		{wk, "javascript:alert(1)", http.StatusBadRequest},
		{wk, "http://shop.example/path", http.StatusBadRequest},
	} {
		if resp, body := frame(tc.key, tc.origin); resp.StatusCode != tc.status {
			t.Errorf("frame key %q origin %q = %d %s; want %d", tc.key, tc.origin, resp.StatusCode, body, tc.status)
		}
	}

	// Once the tenant lists its sites, only they may frame it, and the
	// frame talks to no other origin.
	if status, out := owner.call("PATCH", "/api/v1/settings", map[string]any{"allowed_origins": []string{"https://shop.example", "https://www.shop.example"}}); status != http.StatusOK {
		t.Fatalf("PATCH settings = %d %v", status, out)
	}
	resp, _ = frame(wk, "https://shop.example")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("frame for an allowed origin = %d; want 200", resp.StatusCode)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.HasSuffix(csp, "frame-ancestors https://shop.example https://www.shop.example") {
		t.Errorf("frame CSP with allowed origins = %q; want frame-ancestors of exactly them", csp)
	}
	for _, origin := range []string{"https://evil.example", "http://shop.example", "null"} {
		if resp, body := frame(wk, origin); resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "origin_not_allowed") {
			t.Errorf("frame for origin %s = %d %s; want 403 origin_not_allowed", origin, resp.StatusCode, body)
		}
	}
}
