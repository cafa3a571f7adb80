package transport

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// visitorMessages is what the visitor's widget would show of a
// conversation.
func visitorMessages(t *testing.T, base, token, conv string) []map[string]any {
	t.Helper()
	v := newClient(t, base)
	v.auth = token
	status, out := v.call("GET", "/api/v1/widget/conversations/"+conv+"/messages", nil)
	if status != http.StatusOK {
		t.Fatalf("visitor GET messages = %d %v", status, out)
	}
	var msgs []map[string]any
	for _, m := range out["messages"].([]any) {
		msgs = append(msgs, m.(map[string]any))
	}
	return msgs
}

// framesFor reads the socket's frames for d and returns them raw.
func framesFor(w *wsClient, d time.Duration) []string {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out []string
	for {
		_, b, err := w.c.Read(ctx)
		if err != nil {
			return out
		}
		out = append(out, string(b))
	}
}

const chromeLinuxUA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"

// TestDashboardBrowser drives the dashboard in chromium as an agent would,
// while a visitor (played over the API and the widget socket) chats.
func TestDashboardBrowser(t *testing.T) {
	base := apiServer(t)
	b := newBrowser(t)
	tab := b.Tab()
	const wait = 10 * time.Second

	// Sign up through the page: it logs in and lands in the inbox, live.
	signUpInPage(t, tab, base, "Acme Shoes", "Ada Lovelace", "ada@acme.example")
	waitText(t, tab, "#conn-status", "Live", wait)
	waitText(t, tab, "#me-name", "Ada Lovelace", wait)
	waitText(t, tab, "#org-name", "Acme Shoes", wait)
	do(t, tab, "mark the page", chromedp.Evaluate[chromedp.Void](`window.stillThisPage = true`))

	// The test's own session, to check what the dashboard did.
	agent := newClient(t, base)
	status, out := agent.call("POST", "/api/v1/login", map[string]string{"email": "ada@acme.example", "password": "correct horse battery"})
	if status != http.StatusOK {
		t.Fatalf("login = %d %v", status, out)
	}
	agent.csrf = out["csrf_token"].(string)
	agentID := out["agent_id"].(string)
	status, out = agent.call("GET", "/api/v1/settings", nil)
	if status != http.StatusOK {
		t.Fatalf("GET settings = %d %v", status, out)
	}
	widgetKey := out["widget_key"].(string)

	// A visitor on a Chrome on Linux opens the pricing page and writes.
	req, _ := http.NewRequest("POST", base+"/api/v1/widget/sessions", jsonBody(map[string]string{"widget_key": widgetKey}))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", chromeLinuxUA)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("widget session = %v %v", resp, err)
	}
	sess := decodeBody(t, resp)
	vtoken := sess["visitor_token"].(string)
	vws := dialSocket(t, base, "/ws/widget?token="+vtoken, nil)
	vws.send(map[string]string{"type": "page_view", "url": "https://shop.example/pricing", "title": "Pricing", "referrer": "https://search.example/"})
	visitor := newClient(t, base)
	visitor.auth = vtoken
	status, out = visitor.call("POST", "/api/v1/widget/messages", map[string]string{"client_id": "v1", "body": "Hello, is anyone there?"})
	if status != http.StatusCreated {
		t.Fatalf("visitor post = %d %v", status, out)
	}
	conv := out["conversation_id"].(string)

	// It appears in the inbox without a reload.
	waitText(t, tab, "#conversations", "Hello, is anyone there?", wait)
	do(t, tab, "open the conversation", chromedp.Click(chromedp.CSS(`.conv-item[data-id="`+conv+`"]`)))
	waitText(t, tab, "#messages", "Hello, is anyone there?", wait)
	waitEval(t, tab, `location.search === "?c=`+conv+`"`, wait)
	waitText(t, tab, "#v-page", "Pricing", wait)
	waitText(t, tab, "#v-browser", "Chrome", wait)
	waitText(t, tab, "#v-os", "Linux", wait)

	// The visitor's socket watches the conversation: typing both ways.
	vws.send(map[string]any{"type": "resume", "conversation_id": conv, "after": 0})
	vws.send(map[string]any{"type": "typing", "conversation_id": conv})
	waitText(t, tab, "#typing", "is typing", wait)
	status, out = visitor.call("POST", "/api/v1/widget/messages", map[string]string{"conversation_id": conv, "client_id": "v2", "body": "I need help with my order"})
	if status != http.StatusCreated {
		t.Fatalf("visitor's second post = %d %v", status, out)
	}
	waitText(t, tab, "#messages", "I need help with my order", wait)
	waitText(t, tab, `.conv-item[data-id="`+conv+`"] .preview`, "I need help with my order", wait)

	// The agent answers through the reply box; the visitor gets it.
	do(t, tab, "type a reply", chromedp.SendKeys(chromedp.CSS("#reply"), "Happy to help! What is the order number?"))
	if f := vws.next("typing"); f["conversation_id"] != conv {
		t.Fatalf("visitor's typing frame %v; want the agent typing in %s", f, conv)
	}
	do(t, tab, "send the reply", chromedp.Click(chromedp.CSS("#send")))
	waitText(t, tab, "#messages .msg-agent .msg-status", "Sent", wait)
	var replySeq float64
	for deadline := time.Now().Add(wait); replySeq == 0; {
		for _, m := range visitorMessages(t, base, vtoken, conv) {
			if m["body"] == "Happy to help! What is the order number?" {
				replySeq = m["seq"].(float64)
			}
		}
		if replySeq == 0 && time.Now().After(deadline) {
			t.Fatalf("the visitor does not see the reply within %v", wait)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The visitor reads it: the dashboard says so.
	vws.send(map[string]any{"type": "read", "conversation_id": conv, "seq": replySeq})
	waitText(t, tab, "#messages .msg-agent .msg-status", "Seen", wait)

	// An internal note shows in the dashboard, and never to the visitor.
	const note = "VIP customer: a refund is fine"
	do(t, tab, "write an internal note",
		chromedp.Click(chromedp.CSS("#note-toggle")),
		chromedp.SendKeys(chromedp.CSS("#reply"), note),
		chromedp.Click(chromedp.CSS("#send")),
	)
	waitText(t, tab, "#messages .msg-note", note, wait)
	waitText(t, tab, "#messages .msg-note .msg-author", "Internal note", wait)
	waitText(t, tab, "#messages .msg-note .msg-status", "Saved", wait)
	for _, m := range visitorMessages(t, base, vtoken, conv) {
		if strings.Contains(m["body"].(string), "VIP") || m["internal"] != nil {
			t.Fatalf("the visitor's messages include the note: %v", m)
		}
	}
	for _, f := range framesFor(vws, 500*time.Millisecond) {
		if strings.Contains(f, "VIP") {
			t.Fatalf("the visitor's socket got the note: %s", f)
		}
	}
	waitEval(t, tab, `document.querySelector("#messages .msg-note").matches(".msg-note:not(.msg-agent)")`, wait)
	screenshot(t, tab, "dashboard")

	// Assign to oneself, then close.
	do(t, tab, "assign to me", chromedp.Click(chromedp.CSS("#assign-me")))
	waitText(t, tab, `.conv-item[data-id="`+conv+`"] .assignee`, "You", wait)
	do(t, tab, "close", chromedp.Click(chromedp.CSS("#status-closed")))
	waitText(t, tab, "#conv-status", "Closed", wait)
	status, out = agent.call("GET", "/api/v1/conversations?status=all", nil)
	if status != http.StatusOK {
		t.Fatalf("GET conversations = %d %v", status, out)
	}
	found := false
	for _, c := range out["conversations"].([]any) {
		c := c.(map[string]any)
		if c["id"] == conv {
			found = true
			if c["assignee_id"] != agentID || c["status"] != "closed" {
				t.Fatalf("conversation after assign and close = %v; want assigned to %s and closed", c, agentID)
			}
		}
	}
	if !found {
		t.Fatalf("conversation %s is not in the list %v", conv, out)
	}
	// The closed conversation moved to the Closed tab.
	do(t, tab, "show closed ones", chromedp.Click(chromedp.CSS(`.tab[data-status="closed"]`)))
	waitEval(t, tab, `!!document.querySelector('.conv-item[data-id="`+conv+`"]')`, wait)
	if !eval[bool](t, tab, `window.stillThisPage === true`) {
		t.Fatal("the inbox reloaded; everything should have come live")
	}

	// Settings: the snippet with this tenant's key; a greeting is saved,
	// a bad origin is refused beside its field.
	do(t, tab, "open settings", chromedp.Navigate(base+"/app/settings"))
	waitText(t, tab, "#snippet", `<script src="`+base+`/widget.js" data-key="`+widgetKey+`" async></script>`, wait)
	do(t, tab, "enter a bad origin",
		chromedp.SetValue(chromedp.CSS("#origins"), "not an origin"),
		chromedp.Click(chromedp.CSS(`#settings-form button[type="submit"]`)),
	)
	waitText(t, tab, "#err-allowed_origins", "not an origin", wait)
	do(t, tab, "set the greeting",
		chromedp.SetValue(chromedp.CSS("#origins"), "https://shop.example"),
		chromedp.SetValue(chromedp.CSS("#greeting"), "Hi! How can we help?"),
		chromedp.Click(chromedp.CSS(`#settings-form button[type="submit"]`)),
	)
	waitText(t, tab, "#settings-status", "Saved", wait)
	status, out = agent.call("GET", "/api/v1/settings", nil)
	if status != http.StatusOK || out["widget_greeting"] != "Hi! How can we help?" {
		t.Fatalf("settings after saving = %d %v; want the greeting", status, out)
	}
	do(t, tab, "scroll up", chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
	screenshot(t, tab, "settings")

	// On a phone, a link to the conversation opens it, full width.
	do(t, tab, "open the conversation on a phone",
		chromedp.EmulateViewport(390, 844),
		chromedp.Navigate(base+"/app?c="+conv),
	)
	waitText(t, tab, "#messages", "I need help with my order", wait)
	if eval[bool](t, tab, `getComputedStyle(document.querySelector(".list-pane")).display !== "none"`) {
		t.Error("on a phone the open conversation should replace the list")
	}
	screenshot(t, tab, "dashboard-phone")

	// Everything came from ChatPacket itself.
	for _, u := range b.Requests() {
		if !strings.HasPrefix(u, base+"/") && !strings.HasPrefix(u, "ws"+strings.TrimPrefix(base, "http")+"/") && !strings.HasPrefix(u, "data:") {
			t.Errorf("a request to %s: the dashboard asks only its own origin", u)
		}
	}
}

// TestDashboardTeamInvite: an owner logs in through /login, invites an
// agent on the team page and logs out; the invitation link signs the new
// agent up and into the inbox.
func TestDashboardTeamInvite(t *testing.T) {
	base := apiServer(t)
	owner := newClient(t, base)
	if status, out := owner.call("POST", "/api/v1/signup", map[string]string{"organization": "Acme Shoes", "name": "Ada Lovelace", "email": "ada@acme.example", "password": "correct horse battery"}); status != http.StatusCreated {
		t.Fatalf("signup = %d %v", status, out)
	}
	b := newBrowser(t)
	tab := b.Tab()
	const wait = 10 * time.Second

	do(t, tab, "log in",
		chromedp.Navigate(base+"/app/team"), // logged out: to /login, and back after
		chromedp.SendKeys(chromedp.CSS("#email"), "ada@acme.example"),
		chromedp.SendKeys(chromedp.CSS("#password"), "wrong password!"),
		chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)),
	)
	waitText(t, tab, "#form-error", "wrong email or password", wait)
	do(t, tab, "log in again",
		chromedp.SetValue(chromedp.CSS("#password"), "correct horse battery"),
		chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)),
	)
	waitEval(t, tab, `location.pathname === "/app/team"`, wait)
	waitText(t, tab, "#team-rows", "ada@acme.example", wait)

	do(t, tab, "invite Grace",
		chromedp.SendKeys(chromedp.CSS("#invite-email"), "grace@acme.example"),
		chromedp.Click(chromedp.CSS(`#invite-form button[type="submit"]`)),
	)
	waitText(t, tab, "#invite-url", base+"/invite/", wait)
	link := eval[string](t, tab, `document.getElementById("invite-url").textContent`)

	do(t, tab, "log out", chromedp.Click(chromedp.CSS("#logout")))
	waitEval(t, tab, `location.pathname === "/login"`, wait)

	do(t, tab, "open the invitation", chromedp.Navigate(link))
	waitText(t, tab, "#invite-org", "Acme Shoes", wait)
	waitText(t, tab, "#invite-email", "grace@acme.example", wait)
	waitText(t, tab, "#invite-role", "agent", wait)
	do(t, tab, "accept",
		chromedp.SendKeys(chromedp.CSS("#name"), "Grace Hopper"),
		chromedp.SendKeys(chromedp.CSS("#password"), "another good password"),
		chromedp.Click(chromedp.CSS(`#invite-form button[type="submit"]`)),
	)
	waitEval(t, tab, `location.pathname === "/app"`, wait)
	waitText(t, tab, "#me-name", "Grace Hopper", wait)
	waitText(t, tab, ".who .role", "agent", wait)
	waitText(t, tab, "#conn-status", "Live", wait)

	// The link is spent.
	do(t, tab, "open the invitation again", chromedp.Navigate(link))
	waitText(t, tab, "#invite-info", "not valid", wait)
}
