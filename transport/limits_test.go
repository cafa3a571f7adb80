package transport

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/storage"
	"golang.org/x/time/rate"
)

// TestLimitVisitorMessages: a visitor gets its burst, then 429 with
// Retry-After over REST and rate_limited error frames over its socket;
// refused messages are not stored, and a retry with the same client_id
// after the wait stores the message once.
func TestLimitVisitorMessages(t *testing.T) {
	base := apiServer(t)
	_, wk := loggedIn(t, base, "ada@example.com")

	v := visitorClient(t, base, wk)
	conv := ""
	for i := range VisitorMessageBurst {
		status, out := v.call("POST", "/api/v1/widget/messages", map[string]string{"conversation_id": conv, "client_id": "c" + strconv.Itoa(i), "body": "hi"})
		if status != http.StatusCreated {
			t.Fatalf("message %d = %d %v; want 201 within the burst", i, status, out)
		}
		conv = out["conversation_id"].(string)
	}
	req, _ := http.NewRequest("POST", base+"/api/v1/widget/messages", jsonBody(map[string]string{"conversation_id": conv, "client_id": "over", "body": "flood"}))
	req.Header.Set("Authorization", "Bearer "+v.auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out := decodeBody(t, resp)
	if resp.StatusCode != http.StatusTooManyRequests || errCode(out) != "rate_limited" {
		t.Fatalf("message over the burst = %d %v; want 429 rate_limited", resp.StatusCode, out)
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("Retry-After = %q; want whole seconds", resp.Header.Get("Retry-After"))
	}
	_, msgs := v.call("GET", "/api/v1/widget/conversations/"+conv+"/messages", nil)
	if n := len(msgs["messages"].([]any)); n != VisitorMessageBurst {
		t.Fatalf("stored %d messages; want %d (the refused one not stored)", n, VisitorMessageBurst)
	}
	// After the wait, the same client_id goes through, once.
	time.Sleep(time.Second + 50*time.Millisecond)
	if status, out := v.call("POST", "/api/v1/widget/messages", map[string]string{"conversation_id": conv, "client_id": "over", "body": "flood"}); status != http.StatusCreated || out["seq"] != float64(VisitorMessageBurst+1) {
		t.Fatalf("retry after Retry-After = %d %v; want 201 seq %d", status, out, VisitorMessageBurst+1)
	}

	// Another visitor has its own bucket; over the socket the refusal is an
	// error frame and the socket stays open.
	w := visitorClient(t, base, wk)
	ws := dialSocket(t, base, "/ws/widget?token="+w.auth, nil)
	conv = ""
	for i := range VisitorMessageBurst {
		ws.send(map[string]string{"type": "send", "conversation_id": conv, "client_id": "s" + strconv.Itoa(i), "body": "hi"})
		a := ws.next("ack", "error")
		if a["type"] != "ack" {
			t.Fatalf("socket message %d = %v; want an ack within the burst", i, a)
		}
		conv = a["conversation_id"].(string)
	}
	ws.send(map[string]string{"type": "send", "conversation_id": conv, "client_id": "over", "body": "flood"})
	if e := ws.next("ack", "error"); e["type"] != "error" || e["code"] != "rate_limited" {
		t.Fatalf("socket message over the burst = %v; want error rate_limited", e)
	}
	ws.send(map[string]any{"type": "resume", "conversation_id": conv, "after": VisitorMessageBurst - 1})
	if m := ws.next("message"); m["seq"] != float64(VisitorMessageBurst) {
		t.Fatalf("after the refusal, resume = %v; want the socket open and message %d last", m, VisitorMessageBurst)
	}
}

// TestLimitTenantAndBounds: the tenant's bucket is shared by its visitors,
// a refusal takes from neither bucket, and the sets of buckets stay
// bounded.
func TestLimitTenantAndBounds(t *testing.T) {
	l := &widgetLimits{
		visitors: newLimiterSet(rate.Limit(1), 2, 100),
		tenants:  newLimiterSet(rate.Limit(1), 3, 100),
	}
	now := time.Unix(1_700_000_000, 0)
	tenant := storage.NewID()
	a, b := visitor{tenant: tenant, id: storage.NewID()}, visitor{tenant: tenant, id: storage.NewID()}
	for i, v := range []visitor{a, a, b} {
		if ok, _ := l.allow(MessageLimits{}, v, now); !ok {
			t.Fatalf("message %d refused; want allowed", i)
		}
	}
	if ok, retry := l.allow(MessageLimits{}, b, now); ok || retry <= 0 || retry > time.Second {
		t.Fatalf("fourth message of the tenant = %v, retry %v; want refused, retry within 1 s", ok, retry)
	}
	// b's refused message took nothing from b: once the tenant refills one
	// token, b (which has one left) gets through.
	if ok, _ := l.allow(MessageLimits{}, b, now.Add(time.Second)); !ok {
		t.Fatal("after a second, b refused; want allowed")
	}
	// Another tenant is not affected.
	if ok, _ := l.allow(MessageLimits{}, visitor{tenant: storage.NewID(), id: storage.NewID()}, now); !ok {
		t.Fatal("another tenant's visitor refused")
	}
	off := &widgetLimits{}
	for i := range 2 * TenantMessageBurst {
		if ok, _ := off.allow(MessageLimits{Off: true}, a, now); !ok {
			t.Fatalf("message %d refused with the limits off", i)
		}
	}

	s := newLimiterSet(rate.Limit(1), 1, 8)
	for range 100 {
		s.get(storage.NewID(), now).AllowN(now, 1) // each drained: none refilled
	}
	if n := s.len(); n > 8 {
		t.Fatalf("limiter set holds %d buckets; want at most 8", n)
	}
}

// TestAPISecurityHeaders: every API answer, success or error, carries the
// headers; the widget frame keeps its own framing policy.
func TestAPISecurityHeaders(t *testing.T) {
	base := apiServer(t)
	_, wk := loggedIn(t, base, "ada@example.com")
	for _, path := range []string{"/api/v1/me", "/api/v1/widget/config?widget_key=" + wk} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for k, v := range map[string]string{
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "same-origin",
			"X-Frame-Options":         "DENY",
			"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
		} {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("GET %s (%d): %s = %q; want %q", path, resp.StatusCode, k, got, v)
			}
		}
	}
	resp, err := http.Get(base + "/widget/frame?key=" + wk + "&origin=https://shop.example")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Frame-Options") != "" || resp.Header.Get("Content-Security-Policy") == "default-src 'none'; frame-ancestors 'none'" {
		t.Fatalf("widget frame = %d, X-Frame-Options %q, CSP %q; want 200, framable", resp.StatusCode, resp.Header.Get("X-Frame-Options"), resp.Header.Get("Content-Security-Policy"))
	}
}
