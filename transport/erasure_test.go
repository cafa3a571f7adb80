package transport

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// newVisitor opens a widget session and returns the visitor's id and a
// client holding its token.
func newVisitor(t *testing.T, base, wk string) (string, *client) {
	t.Helper()
	resp, err := http.Post(base+"/api/v1/widget/sessions", "application/json", jsonBody(map[string]string{"widget_key": wk}))
	if err != nil {
		t.Fatal(err)
	}
	sess := decodeBody(t, resp)
	v := newClient(t, base)
	v.auth = sess["visitor_token"].(string)
	return sess["visitor_id"].(string), v
}

// visitorPosts has the visitor write body, and returns the conversation.
func visitorPosts(t *testing.T, v *client, conv, clientID, body string) string {
	t.Helper()
	req := map[string]string{"client_id": clientID, "body": body}
	if conv != "" {
		req["conversation_id"] = conv
	}
	status, out := v.call("POST", "/api/v1/widget/messages", req)
	if status != http.StatusCreated {
		t.Fatalf("POST /api/v1/widget/messages = %d %v; want 201", status, out)
	}
	return out["conversation_id"].(string)
}

// TestVisitorDeletion: after DELETE, every read of the visitor is 404 or
// shows the messages as erased, the visitor's token no longer works, a
// repeat is 404, the requests ledger holds the done deletion, and another
// visitor of the tenant is untouched. Agents may not delete.
func TestVisitorDeletion(t *testing.T) {
	base := apiServer(t)
	owner, wk := loggedIn(t, base, "erase@example.com")
	agent, _ := invitedAgent(t, base, owner, "agent@example.com", "agent")

	vid, v := newVisitor(t, base, wk)
	conv := visitorPosts(t, v, "", "c1", "my secret canary-7f3a")
	if status, out := v.call("POST", "/api/v1/widget/contact", map[string]string{"name": "Eve", "email": "eve@example.com"}); status != http.StatusNoContent {
		t.Fatalf("contact = %d %v", status, out)
	}
	if status, out := owner.call("POST", "/api/v1/conversations/"+conv+"/messages", map[string]string{"client_id": "a1", "body": "agent reply"}); status != http.StatusCreated {
		t.Fatalf("reply = %d %v", status, out)
	}
	otherID, other := newVisitor(t, base, wk)
	otherConv := visitorPosts(t, other, "", "o1", "still here")

	if status, out := agent.call("DELETE", "/api/v1/visitors/"+vid, nil); status != http.StatusForbidden {
		t.Fatalf("an agent's DELETE = %d %v; want 403", status, out)
	}
	if status, out := owner.call("DELETE", "/api/v1/visitors/"+vid, nil); status != http.StatusNoContent {
		t.Fatalf("DELETE = %d %v; want 204", status, out)
	}

	// The panel shows the visitor as erased; the export has nothing.
	if status, out := owner.call("GET", "/api/v1/visitors/"+vid, nil); status != http.StatusOK || out["erased"] != true || len(out) != 2 {
		t.Errorf("the panel after deletion = %d %v; want only the id and erased", status, out)
	}
	if status, out := owner.call("GET", "/api/v1/visitors/"+vid+"/export", nil); status != http.StatusNotFound {
		t.Errorf("the export after deletion = %d %v; want 404", status, out)
	}
	status, out := owner.call("GET", "/api/v1/conversations/"+conv+"/messages", nil)
	if status != http.StatusOK {
		t.Fatalf("messages = %d %v", status, out)
	}
	msgs := out["messages"].([]any)
	if len(msgs) != 2 {
		t.Fatalf("messages after deletion: %v; want the erased one and the reply", msgs)
	}
	if m := msgs[0].(map[string]any); m["erased"] != true || m["body"] != nil && m["body"] != "" {
		t.Errorf("the visitor's message after deletion = %v; want erased, no body", m)
	}
	if strings.Contains(fmt.Sprint(out), "canary-7f3a") {
		t.Errorf("the canary is still readable: %v", out)
	}
	if status, out := v.call("GET", "/api/v1/widget/conversations", nil); status != http.StatusUnauthorized {
		t.Errorf("the erased visitor's token = %d %v; want 401", status, out)
	}
	if status, _ := owner.call("DELETE", "/api/v1/visitors/"+vid, nil); status != http.StatusNotFound {
		t.Errorf("a second DELETE = %d; want 404", status)
	}

	// The other visitor is untouched.
	if status, out := owner.call("GET", "/api/v1/visitors/"+otherID, nil); status != http.StatusOK {
		t.Errorf("the other visitor = %d %v", status, out)
	}
	if status, out := other.call("GET", "/api/v1/widget/conversations/"+otherConv+"/messages", nil); status != http.StatusOK || !strings.Contains(fmt.Sprint(out), "still here") {
		t.Errorf("the other visitor's messages = %d %v", status, out)
	}

	status, out = owner.call("GET", "/api/v1/privacy/requests", nil)
	reqs, _ := out["requests"].([]any)
	if status != http.StatusOK || len(reqs) != 1 {
		t.Fatalf("requests = %d %v; want the deletion", status, out)
	}
	if r := reqs[0].(map[string]any); r["kind"] != "deletion" || r["visitor_id"] != vid || r["done_at"] == nil {
		t.Errorf("the request = %v; want a done deletion of %s", r, vid)
	}
}

// TestVisitorUnder16: marking a visitor as under 16 erases them at once,
// and the ledger says why.
func TestVisitorUnder16(t *testing.T) {
	base := apiServer(t)
	owner, wk := loggedIn(t, base, "kids@example.com")
	vid, v := newVisitor(t, base, wk)
	visitorPosts(t, v, "", "c1", "i am 12")
	if status, out := owner.call("POST", "/api/v1/visitors/"+vid+"/under-16", nil); status != http.StatusNoContent {
		t.Fatalf("under-16 = %d %v; want 204", status, out)
	}
	if _, out := owner.call("GET", "/api/v1/visitors/"+vid, nil); out["erased"] != true {
		t.Errorf("the visitor after under-16 = %v; want erased", out)
	}
	if status, _ := v.call("GET", "/api/v1/widget/conversations", nil); status != http.StatusUnauthorized {
		t.Errorf("their token = %d; want 401", status)
	}
	_, out := owner.call("GET", "/api/v1/privacy/requests", nil)
	if !strings.Contains(fmt.Sprint(out), "under 16") {
		t.Errorf("requests = %v; want the under-16 note", out)
	}
}

// TestConsentWithdrawal: withdrawing consent from the widget deletes the
// visitor's page views, keeps no new ones, and restricts them; their
// conversation stays.
func TestConsentWithdrawal(t *testing.T) {
	base := apiServer(t)
	owner, wk := loggedIn(t, base, "consent@example.com")
	vid, v := newVisitor(t, base, wk)
	conv := visitorPosts(t, v, "", "c1", "hello")
	ws := dialSocket(t, base, "/ws/widget?token="+v.auth, nil)
	ws.send(map[string]string{"type": "page_view", "url": "https://shop.example/tracked", "title": "Tracked"})
	waitPanel := func(want func(map[string]any) bool) map[string]any {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, panel := owner.call("GET", "/api/v1/visitors/"+vid, nil)
			if want(panel) {
				return panel
			}
			if time.Now().After(deadline) {
				t.Fatalf("the visitor panel never changed as expected: %v", panel)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	views := func(panel map[string]any) int { l, _ := panel["page_views"].([]any); return len(l) }
	waitPanel(func(p map[string]any) bool { return views(p) == 1 })

	if status, out := v.call("POST", "/api/v1/widget/consent/withdraw", nil); status != http.StatusNoContent {
		t.Fatalf("withdraw = %d %v; want 204", status, out)
	}
	panel := waitPanel(func(p map[string]any) bool { return views(p) == 0 })
	if panel["restricted"] != true {
		t.Errorf("panel after withdrawal = %v; want restricted", panel)
	}
	ws.send(map[string]string{"type": "page_view", "url": "https://shop.example/after", "title": "After"})
	visitorPosts(t, v, conv, "c2", "still talking") // the socket's frames are handled in order; this one goes by REST
	status, out := owner.call("GET", "/api/v1/visitors/"+vid+"/export", nil)
	if status != http.StatusOK || strings.Contains(fmt.Sprint(out), "shop.example") || out["visitor"].(map[string]any)["consent_withdrawn"] != true {
		t.Errorf("export after withdrawal = %d %v; want no page views and consent_withdrawn", status, out)
	}
	if status, out := owner.call("GET", "/api/v1/conversations/"+conv+"/messages", nil); !strings.Contains(fmt.Sprint(out), "still talking") {
		t.Errorf("the conversation after withdrawal = %d %v", status, out)
	}
	_, out = owner.call("GET", "/api/v1/privacy/requests", nil)
	if !strings.Contains(fmt.Sprint(out), "consent_withdrawal") {
		t.Errorf("requests = %v; want the withdrawal", out)
	}
}
