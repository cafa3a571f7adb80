package transport

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/gateway"
	"github.com/chatpacket/chatpacket/actors/nodetest"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/storage"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// The widget in a real browser: a business's site on one port of
// 127.0.0.1, ChatPacket on another (another origin, the same site, so
// chromium keeps the frame in the page's process and its requests reach
// the tab's log).

// frameEval evaluates expr in the widget frame of the tab's page, in an
// isolated world: it shares the frame's DOM and storage, not its scripts'
// variables. It fails when the frame is not there (yet): see waitFrame.
func frameEval[T any](ctx context.Context, expr string) (T, error) {
	return chromedp.Run(ctx, func(ctx context.Context, t *chromedp.Target) (T, error) {
		var zero T
		tree, err := cdp.Call(ctx, t, page.GetFrameTree, cdp.Empty{})
		if err != nil {
			return zero, err
		}
		var frame cdp.FrameID
		for _, child := range tree.FrameTree.ChildFrames {
			if strings.Contains(child.Frame.URL, "/widget/frame?") {
				frame = child.Frame.ID
			}
		}
		if frame == "" {
			return zero, fmt.Errorf("no widget frame yet")
		}
		world, err := cdp.Call(ctx, t, page.CreateIsolatedWorld, page.CreateIsolatedWorldParams{FrameID: frame, WorldName: "test"})
		if err != nil {
			return zero, err
		}
		return chromedp.Evaluate[T](expr, func(p *runtime.EvaluateParams) { p.ContextID = world.ExecutionContextID })(ctx, t)
	})
}

// waitFrame waits until expr, evaluated in the widget frame, is true.
func waitFrame(t *testing.T, tab context.Context, what, expr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(tab, 2*time.Second)
		ok, err := frameEval[bool](ctx, expr)
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			log, _ := frameEval[string](tab, `document.getElementById('log') ? document.getElementById('log').innerText : ''`)
			t.Fatalf("%s: not within %v (err %v; the log shows %q)", what, within, err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// enter presses Enter without the char event KeyEvent adds, which a
// textarea would take as one more line break once the page handled the
// keydown (chromedp's docs/API.md, example 20).
var enter = chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
	for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeRawKeyDown, input.DispatchKeyEventTypeKeyUp} {
		if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, input.DispatchKeyEventParams{
			Type: typ, Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13,
		}); err != nil {
			return err
		}
	}
	return nil
})

// logHasOnce is a frame expression: the message log shows text in exactly
// one message.
func logHasOnce(text string) string {
	q, _ := json.Marshal(text)
	return `[...document.querySelectorAll('#log .msg .body')].filter(e => e.textContent === ` + string(q) + `).length === 1`
}

func onlyOrigins(t *testing.T, urls []string, origins ...string) {
	t.Helper()
	for _, u := range urls {
		ok := strings.HasPrefix(u, "data:")
		for _, o := range origins {
			ok = ok || u == o || strings.HasPrefix(u, o+"/")
		}
		if !ok {
			t.Errorf("the page requested %s, which is neither the host's nor ChatPacket's", u)
		}
	}
}

// TestWidgetBrowserPrivacy: before the visitor chats, a page with the snippet
// shows the launcher; until the visitor opens the chat there is no cookie,
// no storage entry and no session, and every request went to the host or
// to ChatPacket.
func TestWidgetBrowserPrivacy(t *testing.T) {
	b := newBrowser(t)
	base := apiServer(t)
	_, wk := loggedIn(t, base, "ada@example.com")
	site := hostSite(t, map[string]string{"/": hostPage("Shop", base, wk)})
	tab := b.Tab()
	do(t, tab, "open the host page", chromedp.Navigate(site+"/"))
	waitFrame(t, tab, "the frame shows the business's name", `document.getElementById('title').textContent === 'Acme'`, 15*time.Second)
	do(t, tab, "wait for the launcher", chromedp.WaitVisible(chromedp.CSS("#chatpacket-frame")))
	if w := eval[float64](t, tab, `document.getElementById('chatpacket-frame').getBoundingClientRect().width`); w != 60 {
		t.Errorf("the closed widget's frame is %vpx wide; want the 60px launcher", w)
	}

	if c := eval[string](t, tab, `document.cookie`); c != "" {
		t.Errorf("document.cookie = %q; want none", c)
	}
	if n := eval[int](t, tab, `localStorage.length + sessionStorage.length`); n != 0 {
		t.Errorf("the host page has %d storage entries; want none", n)
	}
	if n, err := frameEval[int](tab, `localStorage.length + sessionStorage.length`); err != nil || n != 0 {
		t.Errorf("the frame has %d storage entries (err %v); want none", n, err)
	}
	cookies, err := chromedp.Run(tab, func(ctx context.Context, t *chromedp.Target) ([]*network.Cookie, error) {
		res, err := cdp.Call(ctx, t, network.GetCookies, network.GetCookiesParams{URLs: []string{site, base}})
		if err != nil {
			return nil, err
		}
		all, err := cdp.Call(ctx, t, storage.GetCookies, storage.GetCookiesParams{})
		if err != nil {
			return nil, err
		}
		return append(res.Cookies, all.Cookies...), nil
	})
	if err != nil {
		t.Fatalf("reading cookies: %v", err)
	}
	for _, c := range cookies {
		t.Errorf("the browser holds cookie %s for %s; want none", c.Name, c.Domain)
	}

	reqs := b.Requests()
	onlyOrigins(t, reqs, site, base)
	sawConfig := false
	for _, u := range reqs {
		sawConfig = sawConfig || strings.HasPrefix(u, base+"/api/v1/widget/config")
		if strings.Contains(u, "/widget/sessions") || strings.Contains(u, "/ws/widget") {
			t.Errorf("before any interaction the widget requested %s", u)
		}
	}
	if !sawConfig {
		t.Fatalf("the request log %v lacks the frame's requests: it could not show that nothing else went out", reqs)
	}
}

// widgetServer is apiServer, with the API at hand (to cut its sockets).
func widgetServer(t *testing.T) (string, *API) {
	t.Helper()
	n := nodetest.Start(t)
	s := NewServer("127.0.0.1:0", quiet)
	gw := gateway.New(n.Cluster, quiet)
	api := &API{Cluster: n.Cluster, Machine: n.Machine, Gateway: gw, Log: quiet, Now: time.Now}
	api.Register(s)
	ts := httptest.NewServer(s.http.Handler)
	t.Cleanup(func() {
		api.CloseSockets()
		ts.CloseClientConnections()
		ts.Close()
		gw.Close()
	})
	return ts.URL, api
}

// agentOf returns a bearer client for the owner's tenant.
func agentOf(t *testing.T, owner *client) *client {
	t.Helper()
	status, out := owner.call("POST", "/api/v1/tokens", map[string]string{"name": "agent in a test"})
	if status != http.StatusCreated {
		t.Fatalf("POST /api/v1/tokens = %d %v", status, out)
	}
	agent := newClient(t, owner.base)
	agent.auth = out["token"].(string)
	return agent
}

// TestWidgetBrowserConversation: the visitor opens the widget and writes;
// the agent sees it, types (the widget shows it), reads and replies; the
// visitor sees all that live, keeps the conversation on the site's next
// page, and a reload shows every message exactly once.
func TestWidgetBrowserConversation(t *testing.T) {
	b := newBrowser(t)
	base, api := widgetServer(t)
	owner, wk := loggedIn(t, base, "ada@example.com")
	if status, out := owner.call("PATCH", "/api/v1/settings", map[string]any{"widget_color": "#0f766e", "widget_greeting": "Hi! How can we help?"}); status != http.StatusOK {
		t.Fatalf("PATCH settings = %d %v", status, out)
	}
	agent := agentOf(t, owner)
	site := hostSite(t, map[string]string{
		"/":    hostPage("Shop", base, wk),
		"/two": hostPage("Shop: second page", base, wk),
	})
	tab := b.Tab()
	do(t, tab, "open the host page", chromedp.Navigate(site+"/"))
	waitFrame(t, tab, "the frame is configured", `document.getElementById('greeting').textContent === 'Hi! How can we help?'`, 15*time.Second)

	// The launcher fills the closed frame: a click on the frame is a click
	// on it.
	do(t, tab, "open the widget", chromedp.Click(chromedp.CSS("#chatpacket-frame")))
	waitFrame(t, tab, "the panel opens with the composer focused", `!document.getElementById('panel').hidden && document.activeElement.id === 'text'`, 10*time.Second)
	waitEval(t, tab, `document.getElementById('chatpacket-frame').getBoundingClientRect().width === 380`, 5*time.Second)
	do(t, tab, "write a message", chromedp.KeyEvent("Hello, is the blue one in stock?"), enter)
	waitFrame(t, tab, "the message is acknowledged", `[...document.querySelectorAll('#log .mine .state')].some(e => e.textContent === 'Sent')`, 10*time.Second)

	// The session id is in the host's storage now, and in no URL.
	stored := eval[string](t, tab, `localStorage.getItem('chatpacket:`+wk+`')`)
	var entry struct {
		SessionID string `json:"session_id"`
		Open      bool   `json:"open"`
	}
	if err := json.Unmarshal([]byte(stored), &entry); err != nil || !strings.HasPrefix(entry.SessionID, "vs_") || !entry.Open {
		t.Fatalf("localStorage entry = %q (%v); want the session id, open", stored, err)
	}

	// The agent finds the conversation and its message.
	var conv string
	deadline := time.Now().Add(10 * time.Second)
	for conv == "" {
		status, out := agent.call("GET", "/api/v1/conversations?status=all", nil)
		if list, _ := out["conversations"].([]any); status == http.StatusOK && len(list) == 1 {
			conv = list[0].(map[string]any)["id"].(string)
		} else if time.Now().After(deadline) {
			t.Fatalf("the agent's inbox = %d %v; want the visitor's conversation", status, out)
		} else {
			time.Sleep(100 * time.Millisecond)
		}
	}
	status, out := agent.call("GET", "/api/v1/conversations/"+conv+"/messages", nil)
	if msgs, _ := out["messages"].([]any); status != http.StatusOK || len(msgs) != 1 || msgs[0].(map[string]any)["body"] != "Hello, is the blue one in stock?" {
		t.Fatalf("the agent reads %d %v; want the visitor's message", status, out)
	}

	// The agent's socket: typing shows in the widget, a read marks the
	// visitor's message read.
	ws := dialSocket(t, base, "/ws/agent", http.Header{"Authorization": {"Bearer " + agent.auth}})
	ws.send(map[string]any{"type": "resume", "conversation_id": conv, "after": 0})
	ws.next("message")
	ws.send(map[string]any{"type": "typing", "conversation_id": conv})
	waitFrame(t, tab, "the widget shows the agent typing", `document.getElementById('typing').textContent === 'typing…'`, 10*time.Second)
	ws.send(map[string]any{"type": "read", "conversation_id": conv, "seq": 1})
	waitFrame(t, tab, "the widget shows the message read", `document.querySelector('#log .mine .state').textContent === 'Read'`, 10*time.Second)

	if status, out := agent.call("POST", "/api/v1/conversations/"+conv+"/messages", map[string]string{"client_id": "agent-1", "body": "Yes, we have 3 left."}); status != http.StatusCreated {
		t.Fatalf("the agent's reply = %d %v", status, out)
	}
	waitFrame(t, tab, "the visitor sees the reply", logHasOnce("Yes, we have 3 left."), 10*time.Second)
	waitFrame(t, tab, "the typing indicator ends with the reply", `document.getElementById('typing').textContent === ''`, 5*time.Second)
	// The widget tells the agent it read the reply (the panel is open and
	// the tab visible).
	deadlineRead := time.Now().Add(10 * time.Second)
	for {
		f := ws.next("read")
		if f["conversation_id"] == conv && f["seq"] == float64(2) {
			break
		}
		if time.Now().After(deadlineRead) {
			t.Fatalf("no read of seq 2 from the widget; last read frame %v", f)
		}
	}
	do(t, tab, "write a second line with Shift+Enter, then send",
		chromedp.KeyEvent("Great, "),
		chromedp.KeyEvent("\r", chromedp.KeyModifiers(chromedp.ModifierShift)),
		chromedp.KeyEvent("I'll take one."), enter)
	waitFrame(t, tab, "the two-line message is sent, the composer emptied", logHasOnce("Great, \nI'll take one.")+` && document.getElementById('text').value === ''`, 10*time.Second)
	screenshot(t, tab, "widget")

	// The connection drops (the server closes every socket and refuses new
	// ones for a while): the agent's reply meanwhile and the visitor's
	// message written offline both arrive once it is back, once each.
	api.CloseSockets()
	waitFrame(t, tab, "the widget notices the lost connection", `document.getElementById('status').textContent.includes('Reconnecting')`, 10*time.Second)
	if status, out := agent.call("POST", "/api/v1/conversations/"+conv+"/messages", map[string]string{"client_id": "agent-2", "body": "Anything else?"}); status != http.StatusCreated {
		t.Fatalf("the agent's reply during the outage = %d %v", status, out)
	}
	do(t, tab, "write while offline", chromedp.KeyEvent("Sent while offline"), enter)
	waitFrame(t, tab, "the offline message waits", `[...document.querySelectorAll('#log .mine')].pop().querySelector('.state').textContent === 'Sending…'`, 5*time.Second)
	// Let the widget try a few times meanwhile: each socket opens, gets
	// the widget's frames and closes unanswered.
	time.Sleep(1500 * time.Millisecond)
	api.sockets.Lock()
	api.sockets.closed = false
	api.sockets.Unlock()
	waitFrame(t, tab, "after reconnecting, the missed reply and the queued message show once",
		logHasOnce("Anything else?")+` && `+logHasOnce("Sent while offline")+` && [...document.querySelectorAll('#log .mine')].pop().querySelector('.state').textContent !== 'Sending…'`, 20*time.Second)
	status, out = agent.call("GET", "/api/v1/conversations/"+conv+"/messages", nil)
	if msgs, _ := out["messages"].([]any); status != http.StatusOK || len(msgs) != 5 || msgs[4].(map[string]any)["body"] != "Sent while offline" {
		t.Fatalf("after the outage the agent reads %d %v; want 5 messages, the offline one last", status, out)
	}

	// The next page of the site goes on with the conversation, open.
	do(t, tab, "open the second page", chromedp.Navigate(site+"/two"))
	waitFrame(t, tab, "the second page shows the conversation", logHasOnce("Hello, is the blue one in stock?")+` && `+logHasOnce("Yes, we have 3 left.")+` && !document.getElementById('panel').hidden`, 15*time.Second)

	// A reload shows each message once, and nothing is missing.
	do(t, tab, "reload", chromedp.Reload())
	waitFrame(t, tab, "the reloaded page shows the conversation", logHasOnce("Sent while offline"), 15*time.Second)
	time.Sleep(300 * time.Millisecond) // a duplicate would come right behind
	if n, err := frameEval[int](tab, `document.querySelectorAll('#log .msg').length`); err != nil || n != 5 {
		t.Fatalf("after a reload the log shows %d messages (err %v); want 5", n, err)
	}
	for _, text := range []string{"Hello, is the blue one in stock?", "Yes, we have 3 left.", "Great, \nI'll take one.", "Anything else?", "Sent while offline"} {
		waitFrame(t, tab, "after a reload, once: "+text, logHasOnce(text), time.Second)
	}

	// Past conversations: the list has this one; a new conversation starts
	// empty; the list opens the old one again.
	frameClick := func(id string) {
		t.Helper()
		if _, err := frameEval[bool](tab, `document.getElementById('`+id+`').click(), true`); err != nil {
			t.Fatalf("click #%s in the frame: %v", id, err)
		}
	}
	frameClick("history")
	waitFrame(t, tab, "the list shows the conversation", `!document.getElementById('list').hidden && document.querySelectorAll('#convs li button').length === 1`, 5*time.Second)
	frameClick("new")
	waitFrame(t, tab, "a new conversation starts empty", `document.getElementById('list').hidden && document.querySelectorAll('#log .msg').length === 0`, 5*time.Second)
	frameClick("history")
	if _, err := frameEval[bool](tab, `document.querySelector('#convs li button').click(), true`); err != nil {
		t.Fatal(err)
	}
	waitFrame(t, tab, "the old conversation opens again", `document.querySelectorAll('#log .msg').length === 5`, 5*time.Second)

	// The visitor may leave a name and email.
	frameClick("contact-open")
	if _, err := frameEval[bool](tab, `document.getElementById('cname').value = 'Grace', document.getElementById('cemail').value = 'grace@example.com', document.getElementById('contact').requestSubmit(), true`); err != nil {
		t.Fatal(err)
	}
	waitFrame(t, tab, "the details are saved", `document.getElementById('status').textContent.includes('saved')`, 5*time.Second)

	// Escape closes the panel, and the host remembers it closed.
	do(t, tab, "press Escape", chromedp.KeyEvent(kb.Escape))
	waitFrame(t, tab, "Escape closes the panel", `document.getElementById('panel').hidden && document.activeElement.id === 'launcher'`, 5*time.Second)
	// The loader hears of it by postMessage, a moment later.
	// (the loader shrinks the frame to the launcher and stores it closed)
	waitEval(t, tab,
		`document.getElementById('chatpacket-frame').getBoundingClientRect().width === 60 && !JSON.parse(localStorage.getItem('chatpacket:`+wk+`')).open`, 5*time.Second)

	// A single-page site's navigation is a page view too.
	eval[any](t, tab, `history.pushState({}, '', '/spa'), null`)

	// The agent sees the visitor's details and pages; the session id never
	// went into a URL.
	status, out = agent.call("GET", "/api/v1/conversations?status=all", nil)
	visitorID := out["conversations"].([]any)[0].(map[string]any)["visitor_id"].(string)
	deadline = time.Now().Add(10 * time.Second)
	for {
		status, out = agent.call("GET", "/api/v1/visitors/"+visitorID, nil)
		views, _ := json.Marshal(out["page_views"])
		if status == http.StatusOK && out["name"] == "Grace" && out["email"] == "grace@example.com" &&
			strings.Contains(string(views), `"`+site+`/two"`) && strings.Contains(string(views), `"`+site+`/spa"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the visitor panel = %d %v; want Grace's details and the pages /two and /spa", status, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, u := range append(b.Requests(), eval[string](t, tab, `document.getElementById('chatpacket-frame').src`)) {
		if strings.Contains(u, entry.SessionID) {
			t.Errorf("the session id went into the URL %s", u)
		}
	}
	onlyOrigins(t, b.Requests(), site, base, "ws"+strings.TrimPrefix(base, "http"))
}
