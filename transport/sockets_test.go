package transport

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

type wsClient struct {
	t *testing.T
	c *websocket.Conn
}

func dialSocket(t *testing.T, base, path string, header http.Header) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+path, &websocket.DialOptions{HTTPHeader: header})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s = %v (HTTP %d)", path, err, status)
	}
	t.Cleanup(func() { c.CloseNow() })
	return &wsClient{t: t, c: c}
}

func (w *wsClient) send(frame any) {
	w.t.Helper()
	b, _ := json.Marshal(frame)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.c.Write(ctx, websocket.MessageText, b); err != nil {
		w.t.Fatalf("write %s: %v", b, err)
	}
}

// next returns the next frame of one of types, skipping others.
func (w *wsClient) next(types ...string) map[string]any {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, b, err := w.c.Read(ctx)
		if err != nil {
			w.t.Fatalf("waiting for %v: %v", types, err)
		}
		var f map[string]any
		json.Unmarshal(b, &f)
		for _, typ := range types {
			if f["type"] == typ {
				return f
			}
		}
	}
}

// TestSocketsCarryAConversation: a visitor's socket sends, an agent's
// socket resumes and sees it, the agent replies, the visitor sees the reply
// live; a reconnecting visitor resumes and gets what it missed, once.
func TestSocketsCarryAConversation(t *testing.T) {
	base := apiServer(t)
	agent, wk := loggedIn(t, base, "ada@example.com")
	_, tok := agent.call("POST", "/api/v1/tokens", map[string]string{"name": "socket"})
	v := visitorClient(t, base, wk)

	vs := dialSocket(t, base, "/ws/widget?token="+v.auth, nil)
	vs.send(map[string]string{"type": "send", "client_id": "c1", "body": "hello"})
	ack := vs.next("ack") // the first message's frame comes after: the watch starts with the ack
	conv, _ := ack["conversation_id"].(string)
	if ack["seq"] != float64(1) || conv == "" {
		t.Fatalf("ack = %v; want seq 1 and a conversation", ack)
	}
	if m := vs.next("message"); m["client_id"] != "c1" {
		t.Fatalf("the sender's own message = %v", m)
	}

	as := dialSocket(t, base, "/ws/agent", http.Header{"Authorization": {"Bearer " + tok["token"].(string)}})
	as.send(map[string]any{"type": "resume", "conversation_id": conv, "after": 0})
	if m := as.next("message"); m["seq"] != float64(1) || m["body"] != "hello" {
		t.Fatalf("agent's resume = %v; want message 1", m)
	}
	vs.send(map[string]string{"type": "typing", "conversation_id": conv})
	if f := as.next("typing"); f["conversation_id"] != conv {
		t.Fatalf("agent's typing frame = %v", f)
	}
	as.send(map[string]string{"type": "send", "conversation_id": conv, "client_id": "a1", "body": "hi there"})
	if a := as.next("ack"); a["seq"] != float64(2) {
		t.Fatalf("agent's ack = %v; want seq 2", a)
	}
	if m := vs.next("message"); m["seq"] != float64(2) || m["author"].(map[string]any)["kind"] != "agent" {
		t.Fatalf("visitor's live frame = %v; want the agent's reply", m)
	}

	// The visitor goes away; the agent writes twice; the visitor comes back
	// and resumes after what it saw.
	vs.c.Close(websocket.StatusNormalClosure, "")
	for _, id := range []string{"a2", "a3"} {
		as.send(map[string]string{"type": "send", "conversation_id": conv, "client_id": id, "body": "are you there?"})
		as.next("ack")
	}
	vs2 := dialSocket(t, base, "/ws/widget?token="+v.auth, nil)
	vs2.send(map[string]any{"type": "resume", "conversation_id": conv, "after": 2})
	for _, want := range []float64{3, 4} {
		if m := vs2.next("message"); m["seq"] != want {
			t.Fatalf("resumed frame = %v; want seq %v", m, want)
		}
	}
	vs2.send(map[string]string{"type": "send", "conversation_id": conv, "client_id": "c2", "body": "back"})
	// The ack and the message's own frame may come in either order.
	for acked, seen := false, false; !acked || !seen; {
		f := vs2.next("ack", "message")
		if f["type"] == "ack" {
			acked = true
		} else if f["seq"] != float64(5) {
			t.Fatalf("after resume, next message = %v; want seq 5 (nothing twice)", f)
		} else {
			seen = true
		}
	}

	// Bad frames get error frames and the socket stays.
	vs2.c.Write(context.Background(), websocket.MessageText, []byte(`{"type":`))
	if e := vs2.next("error"); e["code"] != "bad_json" {
		t.Fatalf("error frame = %v", e)
	}
	vs2.send(map[string]any{"type": "resume", "conversation_id": "not-an-id"})
	if e := vs2.next("error"); e["code"] != "not_found" {
		t.Fatalf("error frame = %v", e)
	}
	vs2.send(map[string]string{"type": "send", "conversation_id": conv, "client_id": "c3", "body": "still here"})
	if a := vs2.next("ack"); a["seq"] != float64(6) {
		t.Fatalf("ack after errors = %v; want seq 6", a)
	}
}

func TestSocketsRefuseBadCredentials(t *testing.T) {
	base := apiServer(t)
	for _, path := range []string{"/ws/widget?token=v_forged", "/ws/widget", "/ws/agent"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+path, nil)
		cancel()
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("dial %s = %v; want HTTP 401", path, err)
		}
	}
}
