package transport

import (
	"net/http"
	"testing"
)

// loggedIn signs up and logs in an agent client.
func loggedIn(t *testing.T, base, email string) (*client, string) {
	t.Helper()
	c := newClient(t, base)
	wk := signupWidgetKey(t, c, email)
	status, out := c.call("POST", "/api/v1/login", map[string]string{"email": email, "password": "correct horse battery"})
	if status != http.StatusOK {
		t.Fatalf("login = %d %v", status, out)
	}
	c.csrf = out["csrf_token"].(string)
	return c, wk
}

func visitorClient(t *testing.T, base, wk string) *client {
	t.Helper()
	anon := newClient(t, base)
	status, sess := anon.call("POST", "/api/v1/widget/sessions", map[string]string{"widget_key": wk})
	if status != http.StatusOK {
		t.Fatalf("session = %d %v", status, sess)
	}
	anon.auth = sess["visitor_token"].(string)
	return anon
}

func TestAgentInboxReplyClose(t *testing.T) {
	base := apiServer(t)
	agent, wk := loggedIn(t, base, "ada@example.com")
	v := visitorClient(t, base, wk)
	_, first := v.call("POST", "/api/v1/widget/messages", map[string]string{"client_id": "c1", "body": "hello"})
	conv := first["conversation_id"].(string)

	status, inbox := agent.call("GET", "/api/v1/conversations?status=open", nil)
	list, _ := inbox["conversations"].([]any)
	if status != http.StatusOK || len(list) != 1 || list[0].(map[string]any)["id"] != conv {
		t.Fatalf("inbox = %d %v; want the one conversation", status, inbox)
	}
	if status, out := agent.call("POST", "/api/v1/conversations/"+conv+"/messages", map[string]string{"client_id": "a1", "body": "hi, how can I help?"}); status != http.StatusCreated || out["seq"] != float64(2) {
		t.Fatalf("agent reply = %d %v", status, out)
	}
	status, msgs := v.call("GET", "/api/v1/widget/conversations/"+conv+"/messages?after=1", nil)
	got, _ := msgs["messages"].([]any)
	if status != http.StatusOK || len(got) != 1 || got[0].(map[string]any)["author"].(map[string]any)["kind"] != "agent" {
		t.Fatalf("visitor sees = %d %v; want the agent's reply", status, msgs)
	}
	if status, _ := agent.call("POST", "/api/v1/conversations/"+conv+"/close", nil); status != http.StatusNoContent {
		t.Fatalf("close = %d; want 204", status)
	}
	if _, inbox := agent.call("GET", "/api/v1/conversations?status=open", nil); len(inbox["conversations"].([]any)) != 0 {
		t.Fatalf("open inbox after close = %v; want empty", inbox)
	}
	if _, inbox := agent.call("GET", "/api/v1/conversations?status=closed", nil); len(inbox["conversations"].([]any)) != 1 {
		t.Fatalf("closed inbox = %v; want the conversation", inbox)
	}

	// Another tenant's agent cannot see or touch it.
	eve, _ := loggedIn(t, base, "eve@example.com")
	if status, _ := eve.call("GET", "/api/v1/conversations/"+conv+"/messages", nil); status != http.StatusNotFound {
		t.Fatalf("another tenant's read = %d; want 404", status)
	}
	if status, _ := eve.call("POST", "/api/v1/conversations/"+conv+"/messages", map[string]string{"client_id": "e", "body": "x"}); status != http.StatusNotFound {
		t.Fatalf("another tenant's post = %d; want 404", status)
	}
	if _, inbox := eve.call("GET", "/api/v1/conversations?status=all", nil); len(inbox["conversations"].([]any)) != 0 {
		t.Fatalf("another tenant's inbox = %v; want empty", inbox)
	}
}
