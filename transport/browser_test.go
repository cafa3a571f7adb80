package transport

// The browser harness: Debian's chromium, headless, driven by chromedp,
// against a real node on 127.0.0.1. `make test` installs chromium when it
// is missing (the Makefile's tools target). Browser tests skip under -short.

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's chromium; CHROMIUM overrides it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	path := os.Getenv("CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := exec.LookPath(path); err != nil {
		t.Fatalf("no chromium at %s (set CHROMIUM, or run `make tools`, which installs Debian's chromium): %v", path, err)
	}
	return path
}

// browserTimeout bounds one browser test's whole run.
const browserTimeout = 90 * time.Second

// Browser is one headless chromium with a fresh profile; Tab opens pages
// in it. Everything stops when the test ends.
type Browser struct {
	t        *testing.T
	alloc    context.Context
	first    context.Context // the first tab's: later tabs open in its browser
	requests *requestLog
}

// newBrowser starts chromium with the flags this machine needs: no
// sandbox (tests run as root), no GPU, and nothing that talks to Google.
func newBrowser(t *testing.T) *Browser {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a browser")
	}
	// Not t.TempDir(): chromium's socket path under a long test name
	// passes the 108 bytes a Unix socket path may have.
	tmp, err := os.MkdirTemp("", "cpb")
	if err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(filepath.Join(tmp, "profile")),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 800),
		chromedp.Env("TMPDIR=" + tmp),
	}
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(func() { cancelAlloc(); cancel(); os.RemoveAll(tmp) })
	return &Browser{t: t, alloc: alloc, requests: &requestLog{}}
}

// Tab opens a new tab (the first call starts the browser). Every request
// any tab makes is recorded in b.Requests.
func (b *Browser) Tab() context.Context {
	b.t.Helper()
	parent := b.alloc
	if b.first != nil {
		parent = b.first
	}
	ctx, cancel := chromedp.NewContext(parent)
	b.t.Cleanup(cancel)
	if b.first == nil {
		b.first = ctx
	}
	err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			b.requests.add(e.Request.URL)
		}
	})
	if err != nil {
		b.t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// Requests are the URLs every tab of b requested so far (frames and
// workers of the page included, as far as the page's target sees them).
func (b *Browser) Requests() []string { return b.requests.all() }

type requestLog struct {
	mu   sync.Mutex
	urls []string
}

func (l *requestLog) add(u string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.urls = append(l.urls, u)
}

func (l *requestLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.urls...)
}

// do runs chromedp actions in tab, failing the test with what was being
// done when one fails.
func do(t *testing.T, tab context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(tab, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the tab's top document.
func eval[T any](t *testing.T, tab context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(tab, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// hostSite serves pages as a business's own site would, on another port
// of 127.0.0.1 (so another origin than ChatPacket's). pages maps a path to
// its HTML.
func hostSite(t *testing.T, pages map[string]string) string {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page, ok := pages[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, page)
	}))
	t.Cleanup(ts.Close)
	return ts.URL
}

// hostPage is a plain page of a business's site with the widget snippet
// as the settings page gives it.
func hostPage(title, chatpacketBase, widgetKey string) string {
	return `<!doctype html><html><head><meta charset="utf-8"><title>` + title + `</title></head>
<body><h1>` + title + `</h1><p>A page of the business's own site.</p>
<script src="` + chatpacketBase + `/widget.js" data-key="` + widgetKey + `" async></script>
</body></html>`
}

// artifactDir is where screenshots go: $CHATPACKET_ARTIFACTS, or
// .artifacts at the repository root (ignored by git).
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CHATPACKET_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", ".artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// screenshot writes a PNG of the tab's viewport as an artifact named name
// (and into docs/screenshots when UPDATE_SCREENSHOTS is set, for the
// README).
func screenshot(t *testing.T, tab context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(tab, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dirs := []string{artifactDir(t)}
	if os.Getenv("UPDATE_SCREENSHOTS") != "" {
		dirs = append(dirs, filepath.Join("..", "docs", "screenshots"))
	}
	for _, dir := range dirs {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// waitEval waits until the JavaScript expression expr, evaluated in the
// tab's top document, is true.
func waitEval(t *testing.T, tab context.Context, expr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(tab, 2*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not true within %v (err %v)", expr, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitText waits until the element sel (in the tab's top document) has a
// text containing want.
func waitText(t *testing.T, tab context.Context, sel, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var got string
	for {
		ctx, cancel := context.WithTimeout(tab, 2*time.Second)
		text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
		cancel()
		if err == nil {
			got = text
		}
		if err == nil && strings.Contains(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q does not show %q within %v (shows %q, err %v)", sel, want, within, got, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBrowserHarness checks the harness itself: chromium starts, loads a
// page from a host site and records the request.
func TestBrowserHarness(t *testing.T) {
	b := newBrowser(t)
	site := hostSite(t, map[string]string{"/": `<!doctype html><title>t</title><p id="p">hello</p>`})
	tab := b.Tab()
	do(t, tab, "open the host page", chromedp.Navigate(site+"/"))
	waitText(t, tab, "#p", "hello", 10*time.Second)
	found := false
	for _, u := range b.Requests() {
		found = found || strings.HasPrefix(u, site)
	}
	if !found {
		t.Fatalf("requests %v do not include the host page", b.Requests())
	}
}

// signUpInPage signs up through the dashboard's signup page in tab, with
// the password every browser test uses, and waits for the inbox it lands
// on.
func signUpInPage(t *testing.T, tab context.Context, base, org, name, email string) {
	t.Helper()
	do(t, tab, "sign up through the page",
		chromedp.Navigate(base+"/signup"),
		chromedp.SendKeys(chromedp.CSS("#organization"), org),
		chromedp.SendKeys(chromedp.CSS("#name"), name),
		chromedp.SendKeys(chromedp.CSS("#email"), email),
		chromedp.SendKeys(chromedp.CSS("#password"), "correct horse battery"),
		chromedp.Click(chromedp.CSS(`#signup-form button[type="submit"]`)),
	)
	waitEval(t, tab, `location.pathname === "/app"`, 10*time.Second)
}
