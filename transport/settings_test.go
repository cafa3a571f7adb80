package transport

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestSettingsAndAllowedOrigins: an owner reads and changes the settings;
// a bad origin is refused and changes nothing; once origins are set, a
// widget on another site gets neither a session nor a socket, while the
// allowed site, non-browser clients and ChatPacket's own frame do.
func TestSettingsAndAllowedOrigins(t *testing.T) {
	base := apiServer(t)
	owner, wk := loggedIn(t, base, "ada@example.com")
	status, got := owner.call("GET", "/api/v1/settings", nil)
	if status != http.StatusOK || got["widget_key"] != wk || len(got["allowed_origins"].([]any)) != 0 {
		t.Fatalf("settings = %d %v", status, got)
	}
	for _, bad := range []string{"https://shop.example/path", "ftp://shop.example", "shop.example", "https://user@shop.example"} {
		status, out := owner.call("PATCH", "/api/v1/settings", map[string]any{"allowed_origins": []string{bad}})
		if status != http.StatusBadRequest || errCode(out) != "invalid_origin" {
			t.Fatalf("origin %q = %d %v; want 400 invalid_origin", bad, status, out)
		}
	}
	if status, out := owner.call("PATCH", "/api/v1/settings", map[string]any{"widget_color": "red"}); status != http.StatusBadRequest {
		t.Fatalf("colour red = %d %v; want 400", status, out)
	}
	status, got = owner.call("PATCH", "/api/v1/settings", map[string]any{
		"widget_color": "#12AB34", "widget_greeting": "Hello! ", "allowed_origins": []string{"https://Shop.example/", "https://shop.example"},
	})
	if status != http.StatusOK || got["widget_color"] != "#12ab34" || got["widget_greeting"] != "Hello!" ||
		len(got["allowed_origins"].([]any)) != 1 || got["allowed_origins"].([]any)[0] != "https://shop.example" || got["name"] == "" {
		t.Fatalf("patched settings = %d %v", status, got)
	}

	session := func(origin string) int {
		c := newClient(t, base)
		c.origin = origin
		status, _ := c.call("POST", "/api/v1/widget/sessions", map[string]string{"widget_key": wk})
		return status
	}
	for origin, want := range map[string]int{
		"https://evil.example": http.StatusForbidden, "http://shop.example": http.StatusForbidden,
		"https://shop.example": http.StatusOK, "": http.StatusOK, base: http.StatusOK,
	} {
		if got := session(origin); got != want {
			t.Errorf("session from origin %q = %d; want %d", origin, got, want)
		}
	}
	v := visitorClient(t, base, wk)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(base, "http") + "/ws/widget?token=" + v.auth
	if _, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://evil.example"}}}); err == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("socket from a foreign origin = %v; want 403", err)
	}
	dialSocket(t, base, "/ws/widget?token="+v.auth, http.Header{"Origin": {"https://shop.example"}})

	status, team := owner.call("GET", "/api/v1/agents", nil)
	agents, _ := team["agents"].([]any)
	if status != http.StatusOK || len(agents) != 1 || agents[0].(map[string]any)["role"] != "owner" || agents[0].(map[string]any)["email"] != "ada@example.com" {
		t.Fatalf("agents = %d %v", status, team)
	}
	if _, leaked := agents[0].(map[string]any)["password_hash"]; leaked {
		t.Fatal("the roster shows a password hash")
	}
}

// TestAgentSocketSeesEveryConversation: an agent socket that resumed
// nothing hears of new conversations and gets all their messages, each
// once and in order.
func TestAgentSocketSeesEveryConversation(t *testing.T) {
	base := apiServer(t)
	agent, wk := loggedIn(t, base, "ada@example.com")
	_, tok := agent.call("POST", "/api/v1/tokens", map[string]string{"name": "socket"})
	as := dialSocket(t, base, "/ws/agent", http.Header{"Authorization": {"Bearer " + tok["token"].(string)}})

	const perVisitor = 6
	convs := map[string]bool{}
	for _, name := range []string{"bo", "cy"} {
		v := visitorClient(t, base, wk)
		conv := ""
		for i := range perVisitor {
			body := map[string]string{"client_id": name + string(rune('0'+i)), "body": "hello from " + name, "conversation_id": conv}
			status, out := v.call("POST", "/api/v1/widget/messages", body)
			if status != http.StatusCreated {
				t.Fatalf("post = %d %v", status, out)
			}
			conv = out["conversation_id"].(string)
		}
		convs[conv] = true
	}
	announced, last := map[string]bool{}, map[string]float64{}
	for seen := 0; seen < 2*perVisitor; {
		f := as.next("conversation", "message")
		conv := f["conversation_id"].(string)
		if !convs[conv] {
			t.Fatalf("frame for an unknown conversation: %v", f)
		}
		if f["type"] == "conversation" {
			announced[conv] = true
			continue
		}
		if !announced[conv] {
			t.Fatalf("message before its conversation was announced: %v", f)
		}
		if f["seq"] != last[conv]+1 {
			t.Fatalf("conversation %s: seq %v after %v; want each once, in order", conv, f["seq"], last[conv])
		}
		last[conv] = f["seq"].(float64)
		seen++
	}
	// Nothing more is owed: a reply is the next message frame, seq 7.
	for conv := range convs {
		as.send(map[string]string{"type": "send", "conversation_id": conv, "client_id": "a1", "body": "hi"})
		if m := as.next("message"); m["conversation_id"] != conv || m["seq"] != float64(perVisitor+1) {
			t.Fatalf("after the visitors' messages: %v; want the reply, seq %d", m, perVisitor+1)
		}
	}
}
