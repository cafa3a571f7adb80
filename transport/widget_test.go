package transport

import (
	"net/http"
	"testing"
	"time"
)

// signupWidgetKey signs a tenant up and returns its widget key.
func signupWidgetKey(t *testing.T, c *client, email string) string {
	t.Helper()
	status, out := c.call("POST", "/api/v1/signup", map[string]string{"organization": "Acme", "name": "Ada", "email": email, "password": "correct horse battery"})
	if status != http.StatusCreated {
		t.Fatalf("signup = %d %v", status, out)
	}
	return out["widget_key"].(string)
}

func TestWidgetSessionsAndMessages(t *testing.T) {
	base := apiServer(t)
	owner := newClient(t, base)
	wk := signupWidgetKey(t, owner, "ada@example.com")
	anon := newClient(t, base)

	if status, out := anon.call("POST", "/api/v1/widget/sessions", map[string]string{"widget_key": "wk_unknown"}); status != http.StatusNotFound {
		t.Fatalf("session with an unknown widget key = %d %v; want 404", status, out)
	}
	status, sess := anon.call("POST", "/api/v1/widget/sessions", map[string]string{"widget_key": wk})
	if status != http.StatusOK || sess["visitor_token"] == nil {
		t.Fatalf("session = %d %v", status, sess)
	}
	// The same session id again is the same visitor.
	status, again := anon.call("POST", "/api/v1/widget/sessions", map[string]string{"widget_key": wk, "session_id": sess["session_id"].(string)})
	if status != http.StatusOK || again["visitor_id"] != sess["visitor_id"] {
		t.Fatalf("session again = %d %v; want visitor %v", status, again, sess["visitor_id"])
	}

	v := newClient(t, base)
	v.auth = sess["visitor_token"].(string)
	status, first := v.call("POST", "/api/v1/widget/messages", map[string]string{"client_id": "c1", "body": "hello"})
	if status != http.StatusCreated || first["seq"] != float64(1) {
		t.Fatalf("first message = %d %v", status, first)
	}
	// A retry without the conversation id finds the same conversation.
	status, retry := v.call("POST", "/api/v1/widget/messages", map[string]string{"client_id": "c1", "body": "hello"})
	if status != http.StatusCreated || retry["seq"] != float64(1) || retry["conversation_id"] != first["conversation_id"] {
		t.Fatalf("retry = %d %v; want the first answer %v", status, retry, first)
	}
	conv := first["conversation_id"].(string)
	if status, out := v.call("POST", "/api/v1/widget/messages", map[string]string{"conversation_id": conv, "client_id": "c2", "body": "anyone there?"}); status != http.StatusCreated || out["seq"] != float64(2) {
		t.Fatalf("second message = %d %v", status, out)
	}
	status, msgs := v.call("GET", "/api/v1/widget/conversations/"+conv+"/messages?after=0", nil)
	if list, _ := msgs["messages"].([]any); status != http.StatusOK || len(list) != 2 {
		t.Fatalf("messages = %d %v; want 2", status, msgs)
	}

	// Another visitor of the same tenant sees nothing of it.
	_, other := anon.call("POST", "/api/v1/widget/sessions", map[string]string{"widget_key": wk})
	o := newClient(t, base)
	o.auth = other["visitor_token"].(string)
	if status, out := o.call("GET", "/api/v1/widget/conversations/"+conv+"/messages", nil); status != http.StatusNotFound {
		t.Fatalf("another visitor's read = %d %v; want 404", status, out)
	}
	if status, out := o.call("POST", "/api/v1/widget/messages", map[string]string{"conversation_id": conv, "client_id": "x", "body": "intrusion"}); status != http.StatusNotFound {
		t.Fatalf("another visitor's post = %d %v; want 404", status, out)
	}
	if status, _ := anon.call("GET", "/api/v1/widget/conversations/"+conv+"/messages", nil); status != http.StatusUnauthorized {
		t.Fatalf("read without a token = %d; want 401", status)
	}
}

// TestWidgetConversationsList: a visitor's past conversations, newest
// first, and only their own.
func TestWidgetConversationsList(t *testing.T) {
	base := apiServer(t)
	_, wk := loggedIn(t, base, "ada@example.com")
	v, other := visitorClient(t, base, wk), visitorClient(t, base, wk)
	var ids []string
	for _, cid := range []string{"first", "second"} {
		_, out := v.call("POST", "/api/v1/widget/messages", map[string]string{"client_id": cid, "body": "hi"})
		ids = append(ids, out["conversation_id"].(string))
		time.Sleep(2 * time.Millisecond) // distinct creation times
	}
	other.call("POST", "/api/v1/widget/messages", map[string]string{"client_id": "x", "body": "hi"})
	status, out := v.call("GET", "/api/v1/widget/conversations", nil)
	list, _ := out["conversations"].([]any)
	if status != http.StatusOK || len(list) != 2 || list[0].(map[string]any)["id"] != ids[1] || list[1].(map[string]any)["id"] != ids[0] ||
		list[0].(map[string]any)["status"] != "open" {
		t.Fatalf("conversations = %d %v; want %v newest first", status, out, ids)
	}
}
