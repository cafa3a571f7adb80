package transport

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestEndToEndBrowser is the product in one run, as step 4 asks: a visitor on a business's site (one origin)
// writes in the widget; the agent, logged into the dashboard (ChatPacket's
// origin) in another tab, sees it live and replies from the dashboard; the
// visitor sees the reply, goes to the site's second page and keeps the
// conversation, and a reload shows every message once. Then the same
// snippet in a page opened from a file, as the README's newcomer does.
func TestEndToEndBrowser(t *testing.T) {
	b := newBrowser(t)
	base := apiServer(t)
	const wait = 15 * time.Second

	// The agent signs up in the dashboard and takes the snippet's key.
	dash := b.Tab()
	signUpInPage(t, dash, base, "Acme", "Ada Lovelace", "ada@acme.example")
	waitText(t, dash, "#conn-status", "Live", wait)
	owner := newClient(t, base)
	if status, out := owner.call("POST", "/api/v1/login", map[string]string{"email": "ada@acme.example", "password": "correct horse battery"}); status != http.StatusOK {
		t.Fatalf("login = %d %v", status, out)
	}
	_, settings := owner.call("GET", "/api/v1/settings", nil)
	wk := settings["widget_key"].(string)

	site := hostSite(t, map[string]string{
		"/":      hostPage("Shop", base, wk),
		"/about": hostPage("About us", base, wk),
	})
	shop := b.Tab()
	do(t, shop, "open the shop", chromedp.Navigate(site+"/"))
	waitFrame(t, shop, "the widget is there", `!!document.getElementById('launcher')`, wait)
	do(t, shop, "open the widget", chromedp.Click(chromedp.CSS("#chatpacket-frame")))
	waitFrame(t, shop, "the composer has the focus", `document.activeElement.id === 'text'`, wait)
	do(t, shop, "write", chromedp.KeyEvent("Do you ship to Lisbon?"), enter)
	waitFrame(t, shop, "the message is acknowledged", `[...document.querySelectorAll('#log .mine .state')].some(e => e.textContent === 'Sent')`, wait)

	// The agent sees it arrive, live, and answers from the dashboard.
	waitText(t, dash, "#conversations", "Do you ship to Lisbon?", wait)
	do(t, dash, "open the conversation", chromedp.Click(chromedp.CSS(".conv-item")))
	waitText(t, dash, "#messages", "Do you ship to Lisbon?", wait)
	waitText(t, dash, "#v-page", "Shop", wait)
	do(t, dash, "reply", chromedp.SendKeys(chromedp.CSS("#reply"), "We do, in 2 days."), chromedp.Click(chromedp.CSS("#send")))
	// Sent, or already Seen: the widget reads it as soon as it shows.
	waitEval(t, dash, `/Sent|Seen/.test(document.querySelector('#messages .msg-agent .msg-status').textContent)`, wait)
	waitFrame(t, shop, "the visitor sees the reply", logHasOnce("We do, in 2 days."), wait)
	screenshot(t, dash, "e2e-dashboard")

	// Another page of the site: the conversation goes on; a reload shows
	// each message once.
	do(t, shop, "go to the second page", chromedp.Navigate(site+"/about"))
	waitFrame(t, shop, "the conversation is there on the second page", logHasOnce("Do you ship to Lisbon?")+" && "+logHasOnce("We do, in 2 days."), wait)
	// The panel is open again, but the keyboard is the host page's until
	// the visitor clicks into the frame: give the frame's composer focus.
	do(t, shop, "focus the frame", chromedp.Evaluate[chromedp.Void](`document.getElementById('chatpacket-frame').focus()`))
	if _, err := frameEval[bool](shop, `(document.getElementById('text').focus(), true)`); err != nil {
		t.Fatalf("focus the composer: %v", err)
	}
	do(t, shop, "write from the second page", chromedp.KeyEvent("Great, thanks!"), enter)
	waitText(t, dash, "#messages", "Great, thanks!", wait)
	do(t, shop, "reload", chromedp.Reload())
	waitFrame(t, shop, "after the reload every message shows once",
		logHasOnce("Do you ship to Lisbon?")+" && "+logHasOnce("We do, in 2 days.")+" && "+logHasOnce("Great, thanks!")+
			" && document.querySelectorAll('#log .msg').length === 3", wait)
	waitText(t, dash, "#v-page", "About us", wait)
	screenshot(t, shop, "e2e-widget")

	// The newcomer's way: the snippet pasted into a local HTML file.
	dir, err := os.MkdirTemp("", "cp-page")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	page := filepath.Join(dir, "index.html")
	if err := os.WriteFile(page, []byte(hostPage("My local page", base, wk)), 0o644); err != nil {
		t.Fatal(err)
	}
	local := b.Tab()
	do(t, local, "open the local file", chromedp.Navigate((&url.URL{Scheme: "file", Path: page}).String()))
	// A file's page and ChatPacket are different sites: the frame runs in
	// a process of its own, a target of its own.
	waitWidgetTarget(t, local, "the widget is on the file's page", `!!document.getElementById('launcher')`, wait)
	// A click in the middle of the closed frame is a click on the launcher.
	center := eval[[]float64](t, local, `(r => [r.x + r.width / 2, r.y + r.height / 2])(document.getElementById('chatpacket-frame').getBoundingClientRect())`)
	do(t, local, "open the widget", chromedp.MouseClickXY(center[0], center[1]))
	waitWidgetTarget(t, local, "the composer has the focus", `document.activeElement.id === 'text'`, wait)
	do(t, local, "write", chromedp.KeyEvent("Hello from a file"), enter)
	waitText(t, dash, "#conversations", "Hello from a file", wait)
	if stored := eval[string](t, local, `localStorage.getItem('chatpacket:`+wk+`') || ''`); !strings.Contains(stored, "session_id") {
		t.Fatalf("the file's page stores %q; want the session id", stored)
	}
	do(t, local, "reload the file's page", chromedp.Reload())
	waitWidgetTarget(t, local, "the file's page keeps its conversation",
		`[...document.querySelectorAll('#log .msg .body')].filter(e => e.textContent === 'Hello from a file').length === 1`, wait)
}

// waitWidgetTarget waits until expr is true in the widget frame of tab,
// when the frame runs as a target of its own (an out-of-process frame: the
// host page is of another site than ChatPacket). A target that stops
// answering is attached again: an attachment made before the visitor opened
// the chat was seen to time out on every call after it.
func waitWidgetTarget(t *testing.T, tab context.Context, what, expr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var frame context.Context
	var err error
	for {
		if frame == nil {
			frame = widgetTarget(t, tab, within)
		}
		ctx, cancel := context.WithTimeout(frame, 2*time.Second)
		var ok bool
		ok, err = chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if err != nil {
			frame = nil
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v (err %v)", what, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// widgetTarget attaches to the widget frame of tab when it runs as a
// target of its own (an out-of-process frame: the host page is of another
// site than ChatPacket).
func widgetTarget(t *testing.T, tab context.Context, within time.Duration) context.Context {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		targets, err := chromedp.Targets(tab)
		if err != nil {
			t.Fatalf("listing targets: %v", err)
		}
		for _, tg := range targets {
			if tg.Type == "iframe" && strings.Contains(tg.URL, "/widget/frame?") {
				ctx, cancel := chromedp.NewContext(tab, chromedp.WithTargetID(tg.TargetID))
				t.Cleanup(cancel)
				return ctx
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no widget frame target within %v", within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
