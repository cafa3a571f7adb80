package transport

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/retention"
	"github.com/chatpacket/chatpacket/storage"
	"github.com/coder/websocket"
)

// retentionOf is a retention scheduler on the env's node and clock.
func retentionOf(t *testing.T, e *accountEnv) *retention.Scheduler {
	t.Helper()
	s, err := retention.New(retention.Config{Machine: e.node.Machine, Leads: e.node.Shards().Groups.IsLeader, Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestTerminationGraceCancelAndErasure walks an organization through its
// termination: only its owner may ask (with the CSRF token); its agents
// are logged out and kept out, invitations refused, the widget answers 410, the owner is
// emailed and it is audited; 29 days later it is all still there and the
// owner cancels, which lets everyone back; terminated again, 30 days later
// a retention pass erases it: no one logs in, the widget key is unknown,
// the tenant's records read as erased, and the owner's email can sign up
// again.
func TestTerminationGraceCancelAndErasure(t *testing.T) {
	e := newAccountEnv(t)
	s := retentionOf(t, e)
	ctx := context.Background()
	owner, wk := loggedIn(t, e.base, "owner@example.com")
	bob, _ := invitedAgent(t, e.base, owner, "bob@example.com", "admin")
	visitor := visitorClient(t, e.base, wk)
	tenant, _ := agentIDsOf(t, e, "owner@example.com")

	if status, out := bob.call("POST", "/api/v1/account/terminate", nil); status != http.StatusForbidden {
		t.Fatalf("an admin's terminate = %d %v; want 403", status, out)
	}
	noCSRF := *owner
	noCSRF.csrf = ""
	if status, out := noCSRF.call("POST", "/api/v1/account/terminate", nil); status != http.StatusForbidden || errCode(out) != "csrf" {
		t.Fatalf("terminate without the CSRF token = %d %v; want 403 csrf", status, out)
	}
	status, inv := owner.call("POST", "/api/v1/invitations", map[string]string{"email": "carol@example.com", "role": "agent"})
	if status != http.StatusCreated {
		t.Fatalf("POST /api/v1/invitations = %d %v", status, inv)
	}
	start := e.clock.Now()
	status, out := owner.call("POST", "/api/v1/account/terminate", nil)
	want := start.Add(retention.GracePeriod).UTC().Format(time.RFC3339)
	if status != http.StatusAccepted || out["delete_after"] != want {
		t.Fatalf("terminate = %d %v; want 202 delete_after %s", status, out, want)
	}
	e.clock.Add(time.Hour)
	if status, out := owner.call("POST", "/api/v1/account/terminate", nil); status != http.StatusAccepted || out["delete_after"] != want {
		t.Fatalf("terminate again = %d %v; want 202 with the same delete_after %s", status, out, want)
	}
	mail := e.nextMail("owner@example.com", "will be deleted")
	if !strings.Contains(mail.text, "/app/account") {
		t.Fatalf("termination mail = %q; want the link to cancel", mail.text)
	}
	checkGrace := func() {
		t.Helper()
		if status, out := bob.call("GET", "/api/v1/me", nil); status != http.StatusUnauthorized {
			t.Fatalf("the admin's old session = %d %v; want 401", status, out)
		}
		if status, out := newClient(t, e.base).call("POST", "/api/v1/login", map[string]string{"email": "bob@example.com", "password": goodPassword}); status != http.StatusForbidden || errCode(out) != "tenant_terminating" {
			t.Fatalf("the admin's login = %d %v; want 403 tenant_terminating", status, out)
		}
		if status, out := newClient(t, e.base).call("GET", "/api/v1/widget/config?widget_key="+wk, nil); status != http.StatusGone || errCode(out) != "tenant_terminating" {
			t.Fatalf("widget config = %d %v; want 410 tenant_terminating", status, out)
		}
		if status, out := newClient(t, e.base).call("POST", "/api/v1/widget/sessions", map[string]string{"widget_key": wk}); status != http.StatusGone {
			t.Fatalf("widget session = %d %v; want 410", status, out)
		}
		if status, out := owner.call("GET", "/api/v1/account/termination", nil); status != http.StatusOK || out["delete_after"] != want || out["terminating"] != true {
			t.Fatalf("termination = %d %v; want terminating until %s", status, out, want)
		}
	}
	checkGrace()
	if status, out := newClient(t, e.base).call("POST", "/api/v1/invitations/"+inv["token"].(string)+"/accept", map[string]string{"name": "Carol", "password": goodPassword}); status != http.StatusForbidden || errCode(out) != "tenant_terminating" {
		t.Fatalf("accepting an invitation during the grace = %d %v; want 403 tenant_terminating", status, out)
	}
	if status, out := visitor.call("POST", "/api/v1/widget/messages", map[string]string{"client_id": "c", "body": "hi"}); status != http.StatusGone {
		t.Fatalf("a visitor's message = %d %v; want 410", status, out)
	}
	audited(t, owner, AuditTerminated, want)

	e.clock.Add(29 * 24 * time.Hour)
	if st, err := s.RunOnce(ctx); err != nil || st.TenantsErased != 0 {
		t.Fatalf("retention at +29 days = %+v, %v; want nothing erased", st, err)
	}
	checkGrace()
	if status, out := owner.call("GET", "/api/v1/settings", nil); status != http.StatusOK {
		t.Fatalf("the owner's settings at +29 days = %d %v; want 200", status, out)
	}
	if status, out := bob.call("POST", "/api/v1/account/terminate/cancel", nil); status != http.StatusUnauthorized {
		t.Fatalf("the logged-out admin's cancel = %d %v; want 401", status, out)
	}
	if status, out := owner.call("POST", "/api/v1/account/terminate/cancel", nil); status != http.StatusOK || out["terminating"] != false {
		t.Fatalf("cancel = %d %v; want 200 not terminating", status, out)
	}
	e.login(bob, "bob@example.com", goodPassword)
	if status, out := newClient(t, e.base).call("GET", "/api/v1/widget/config?widget_key="+wk, nil); status != http.StatusOK {
		t.Fatalf("widget config after cancel = %d %v; want 200", status, out)
	}
	audited(t, owner, AuditTerminationCancelled, want)

	if status, out := owner.call("POST", "/api/v1/account/terminate", nil); status != http.StatusAccepted {
		t.Fatalf("terminate after cancel = %d %v; want 202", status, out)
	}
	e.clock.Add(retention.GracePeriod)
	if st, err := s.RunOnce(ctx); err != nil || st.TenantsErased != 1 {
		t.Fatalf("retention at the end of the grace = %+v, %v; want the tenant erased", st, err)
	}
	for _, email := range []string{"owner@example.com", "bob@example.com"} {
		if status, out := newClient(t, e.base).call("POST", "/api/v1/login", map[string]string{"email": email, "password": goodPassword}); status != http.StatusUnauthorized || errCode(out) != "invalid_credentials" {
			t.Fatalf("login of %s after erasure = %d %v; want 401 invalid_credentials", email, status, out)
		}
	}
	if status, out := newClient(t, e.base).call("GET", "/api/v1/widget/config?widget_key="+wk, nil); status != http.StatusNotFound {
		t.Fatalf("widget config after erasure = %d %v; want 404", status, out)
	}
	if _, err := e.node.Machine.Tenant(ctx, tenant); !errors.Is(err, storage.ErrErased) {
		t.Fatalf("tenant record after erasure = %v; want erased", err)
	}
	e.signup("owner@example.com")
}

// audited fails unless the audit log has an event of action about
// deleteAfter.
func audited(t *testing.T, owner *client, action, deleteAfter string) {
	t.Helper()
	_, out := owner.call("GET", "/api/v1/audit", nil)
	for _, ev := range out["events"].([]any) {
		ev := ev.(map[string]any)
		if ev["action"] == action && ev["detail"].(map[string]any)["delete_after"] == deleteAfter {
			return
		}
	}
	t.Fatalf("audit log = %v; want a %s event for %s", out, action, deleteAfter)
}

// TestTerminationClosesWidgetSockets: the widget sockets of a terminating
// tenant close with 1008 tenant_terminating, and a new one is refused;
// the owner's agent socket stays open.
func TestTerminationClosesWidgetSockets(t *testing.T) {
	base := apiServer(t)
	owner, wk := loggedIn(t, base, "ada@example.com")
	visitor := visitorClient(t, base, wk)
	ws := dialSocket(t, base, "/ws/widget?token="+visitor.auth, nil)
	agentWS := dialSocket(t, base, "/ws/agent", sessionHeader(t, owner))
	if status, out := owner.call("POST", "/api/v1/account/terminate", nil); status != http.StatusAccepted {
		t.Fatalf("terminate = %d %v; want 202", status, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err := ws.c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Fatalf("widget socket read after terminate = %v; want close 1008", err)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	if _, resp, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(base, "http")+"/ws/widget?token="+visitor.auth, nil); err == nil || resp == nil || resp.StatusCode != http.StatusGone {
		t.Fatalf("a new widget socket = %v, %v; want HTTP 410", resp, err)
	}
	agentWS.send(map[string]any{"type": "typing", "conversation_id": "nope"})
	if f := agentWS.next("error"); f["code"] == nil {
		t.Fatalf("owner's socket answered %v; want an error frame on an open socket", f)
	}
}
