package transport

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// page GETs path without following redirects and returns the answer and
// its body.
func (c *client) page(path string) (*http.Response, string) {
	c.t.Helper()
	hc := *c.http
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := hc.Get(c.base + path)
	if err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("GET %s: reading the body: %v", path, err)
	}
	return resp, string(b)
}

func wantRedirect(t *testing.T, c *client, path, to string) {
	t.Helper()
	resp, _ := c.page(path)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != to {
		t.Errorf("GET %s = %d to %q; want 303 to %q", path, resp.StatusCode, resp.Header.Get("Location"), to)
	}
}

func wantPageHeaders(t *testing.T, path string, resp *http.Response) {
	t.Helper()
	for h, want := range map[string]string{
		"Content-Security-Policy": dashboardCSP,
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "same-origin",
		"Content-Type":            "text/html; charset=utf-8",
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("GET %s: %s = %q; want %q", path, h, got, want)
		}
	}
}

var (
	scriptTag = regexp.MustCompile(`<script\b[^>]*>`)
	csrfMeta  = regexp.MustCompile(`<meta name="csrf-token" content="([^"]*)">`)
)

// wantNoInlineScript checks that every script of a page is a module
// loaded from ChatPacket's static files (the CSP forbids anything else).
func wantNoInlineScript(t *testing.T, path, body string) []string {
	t.Helper()
	tags := scriptTag.FindAllString(body, -1)
	if len(tags) == 0 {
		t.Errorf("GET %s: no script", path)
	}
	var srcs []string
	for _, tag := range tags {
		m := regexp.MustCompile(`^<script type="module" src="(/static/dashboard/[^"]+)"></script>`).FindStringSubmatch(tag + "</script>")
		if m == nil {
			t.Errorf("GET %s: script %s is not a module from /static/dashboard/", path, tag)
			continue
		}
		srcs = append(srcs, m[1])
	}
	if strings.Contains(body, " on") && regexp.MustCompile(`<[^>]+\son[a-z]+=`).MatchString(body) {
		t.Errorf("GET %s: an inline event handler", path)
	}
	return srcs
}

func TestDashboardPagesLoggedOut(t *testing.T) {
	base := apiServer(t)
	c := newClient(t, base)

	wantRedirect(t, c, "/", "/login")
	wantRedirect(t, c, "/app", "/login?next=%2Fapp")
	wantRedirect(t, c, "/app?c=abc", "/login?next=%2Fapp%3Fc%3Dabc")
	wantRedirect(t, c, "/app/settings", "/login?next=%2Fapp%2Fsettings")
	wantRedirect(t, c, "/app/team", "/login?next=%2Fapp%2Fteam")
	wantRedirect(t, c, "/app/conversations/xyz", "/login?next=%2Fapp%2Fconversations%2Fxyz")

	for _, path := range []string{"/login", "/signup", "/invite/some-token"} {
		resp, body := c.page(path)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %d; want 200", path, resp.StatusCode)
		}
		wantPageHeaders(t, path, resp)
		wantNoInlineScript(t, path, body)
		if m := csrfMeta.FindStringSubmatch(body); m == nil || m[1] != "" {
			t.Errorf("GET %s: csrf meta %v; want present and empty when logged out", path, m)
		}
		if strings.Contains(body, `id="logout"`) {
			t.Errorf("GET %s: a logout button when logged out", path)
		}
	}

	// Login only sends back into the app, never to another site.
	for next, want := range map[string]string{
		"/app/team":            `data-next="/app/team"`,
		"//evil.example/app":   `data-next="/app"`,
		"https://evil.example": `data-next="/app"`,
		"/app\\@evil.example":  `data-next="/app"`,
	} {
		_, body := c.page("/login?next=" + strings.ReplaceAll(next, "/", "%2F"))
		if !strings.Contains(body, want) {
			t.Errorf("GET /login?next=%s: want %s in the form", next, want)
		}
	}

	for _, path := range []string{"/nope", "/app/nope", "/static/dashboard/" + "x/none.js", "/static/dashboard/x/..%2Fdashboard.go", "/invite/"} {
		if resp, _ := c.page(path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d; want 404", path, resp.StatusCode)
		}
	}
}

func TestDashboardPagesLoggedIn(t *testing.T) {
	base := apiServer(t)
	c := newClient(t, base)
	org := `<b>Acme & "Co"</b>`
	status, out := c.call("POST", "/api/v1/signup", map[string]string{"organization": org, "name": "Ada <Lovelace>", "email": "ada@example.com", "password": "correct horse battery"})
	if status != http.StatusCreated {
		t.Fatalf("signup = %d %v", status, out)
	}
	widgetKey := out["widget_key"].(string)
	status, out = c.call("POST", "/api/v1/login", map[string]string{"email": "ada@example.com", "password": "correct horse battery"})
	if status != http.StatusOK {
		t.Fatalf("login = %d %v", status, out)
	}
	csrf, agentID := out["csrf_token"].(string), out["agent_id"].(string)

	wantRedirect(t, c, "/", "/app")
	wantRedirect(t, c, "/login", "/app")
	wantRedirect(t, c, "/signup", "/app")

	assets := map[string]bool{}
	for _, path := range []string{"/app", "/app?c=0123", "/app/conversations/0123", "/app/settings", "/app/team"} {
		resp, body := c.page(path)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %d; want 200", path, resp.StatusCode)
		}
		wantPageHeaders(t, path, resp)
		if resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s: Cache-Control %q; want no-store (the page holds the CSRF token)", path, resp.Header.Get("Cache-Control"))
		}
		for _, src := range wantNoInlineScript(t, path, body) {
			assets[src] = true
		}
		if m := csrfMeta.FindStringSubmatch(body); m == nil || m[1] != csrf {
			t.Errorf("GET %s: csrf meta %v; want the session's token", path, m)
		}
		for _, want := range []string{
			`<meta name="agent-id" content="` + agentID + `">`,
			`&lt;b&gt;Acme &amp; &#34;Co&#34;&lt;/b&gt;`, // the organization, escaped
			`Ada &lt;Lovelace&gt;`,
			`<span class="role">owner</span>`,
			`id="logout"`,
			`href="/app/settings"`, `href="/app/team"`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("GET %s: no %s", path, want)
			}
		}
		if strings.Contains(body, "<b>Acme") {
			t.Errorf("GET %s: the organization's name is not escaped", path)
		}
	}
	if _, body := c.page("/app/conversations/0123"); !strings.Contains(body, `data-conversation="0123"`) {
		t.Errorf("GET /app/conversations/0123: the page does not carry the conversation")
	}

	_, body := c.page("/app/settings")
	snippet := `&lt;script src=&#34;` + base + `/widget.js&#34; data-key=&#34;` + widgetKey + `&#34; async&gt;&lt;/script&gt;`
	if !strings.Contains(body, snippet) {
		t.Errorf("GET /app/settings: no snippet %s", snippet)
	}

	// The page's assets: modules and the stylesheet, cached for good
	// under their version; an import between modules resolves too.
	_, body = c.page("/app")
	css := regexp.MustCompile(`<link rel="stylesheet" href="(/static/dashboard/[^"]+)">`).FindStringSubmatch(body)
	if css == nil {
		t.Fatal("GET /app: no stylesheet")
	}
	assets[css[1]] = true
	version := strings.Split(strings.TrimPrefix(css[1], "/static/dashboard/"), "/")[0]
	assets["/static/dashboard/"+version+"/common.js"] = true
	for src := range assets {
		resp, body := c.page(src)
		wantType := "text/javascript; charset=utf-8"
		if strings.HasSuffix(src, ".css") {
			wantType = "text/css; charset=utf-8"
		}
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != wantType || len(body) == 0 {
			t.Errorf("GET %s = %d %q (%d bytes); want 200 %s", src, resp.StatusCode, resp.Header.Get("Content-Type"), len(body), wantType)
		}
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "immutable") {
			t.Errorf("GET %s: Cache-Control %q; want immutable", src, cc)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", src)
		}
	}
	// Another version's URL (a page from another node) gets this node's
	// file, not cached.
	if resp, _ := c.page("/static/dashboard/0ld/common.js"); resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Errorf("GET an older version's common.js = %d %q; want 200 no-cache", resp.StatusCode, resp.Header.Get("Cache-Control"))
	}

	// A bearer token is for scripts: it does not open pages.
	bearer := newClient(t, base)
	c.csrf = csrf
	status, out = c.call("POST", "/api/v1/tokens", map[string]string{"name": "script"})
	if status != http.StatusCreated {
		t.Fatalf("tokens = %d %v", status, out)
	}
	bearer.auth = out["token"].(string)
	req, _ := http.NewRequest("GET", base+"/app", nil)
	req.Header.Set("Authorization", "Bearer "+bearer.auth)
	hc := *bearer.http
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if resp, err := hc.Do(req); err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Errorf("GET /app with a bearer token = %v %v; want 303 to log in", resp.StatusCode, err)
	} else {
		resp.Body.Close()
	}

	// After logout the app sends the browser to log in again.
	if status, _ := c.call("POST", "/api/v1/logout", nil); status != http.StatusNoContent {
		t.Fatalf("logout = %d", status)
	}
	wantRedirect(t, c, "/app", "/login?next=%2Fapp")
	wantRedirect(t, c, "/", "/login")
}
