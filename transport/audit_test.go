package transport

import (
	"net/http"
	"testing"
	"time"
)

// TestAuditLog: the handlers record who did what from where, the owner
// reads it newest first, and no one else reads it.
func TestAuditLog(t *testing.T) {
	base := apiServer(t)
	owner, _ := loggedIn(t, base, "ada@example.com")
	_, me := owner.call("GET", "/api/v1/me", nil)
	ownerID := me["agent_id"].(string)

	owner.call("PATCH", "/api/v1/settings", map[string]any{"widget_color": "#112233", "allowed_origins": []string{"https://shop.example"}})
	owner.call("PATCH", "/api/v1/settings", map[string]any{"widget_color": "#112233"}) // no change: not recorded
	bob, bobID := invitedAgent(t, base, owner, "bob@example.com", "agent")
	owner.call("PUT", "/api/v1/agents/"+bobID+"/role", map[string]string{"role": "admin"})
	_, team := owner.call("POST", "/api/v1/teams", map[string]string{"name": "Sales"})

	status, out := owner.call("GET", "/api/v1/audit", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /api/v1/audit = %d %v", status, out)
	}
	events := out["events"].([]any)
	want := []struct {
		action, actor string
		detail        map[string]string
	}{
		{AuditTeamChanged, ownerID, map[string]string{"team_id": team["id"].(string), "change": "created", "name": "Sales"}},
		{AuditRoleChanged, ownerID, map[string]string{"agent_id": bobID, "from": "agent", "to": "admin"}},
		{AuditInvitationAccepted, bobID, map[string]string{"invited_by": ownerID, "role": "agent"}},
		{AuditInvitationCreated, ownerID, map[string]string{"email": "bob@example.com", "role": "agent"}},
		{AuditSettingsChanged, ownerID, map[string]string{"fields": "widget_color,allowed_origins"}},
		{AuditLogin, ownerID, nil}, // loggedIn's login
	}
	if len(events) != len(want) {
		t.Fatalf("audit = %v; want %d events", events, len(want))
	}
	var last time.Time
	for i, w := range want {
		e := events[i].(map[string]any)
		if e["action"] != w.action || e["actor_id"] != w.actor || e["ip"] != "127.0.0.1" || e["at"] == "" {
			t.Errorf("event %d = %v; want %s by %s from 127.0.0.1", i, e, w.action, w.actor)
		}
		d, _ := e["detail"].(map[string]any)
		for k, v := range w.detail {
			if d[k] != v {
				t.Errorf("event %d (%s) detail %s = %v; want %q", i, w.action, k, d[k], v)
			}
		}
		// As times, not strings: RFC 3339 drops trailing zeros (.73Z is
		// before .731Z).
		at, err := time.Parse(time.RFC3339Nano, e["at"].(string))
		if err != nil {
			t.Fatalf("event %d at %q: %v", i, e["at"], err)
		}
		if !last.IsZero() && at.After(last) {
			t.Errorf("event %d at %s after event %d at %s; want newest first", i, at, i-1, last)
		}
		last = at
	}

	if _, out := owner.call("GET", "/api/v1/audit?limit=2", nil); len(out["events"].([]any)) != 2 || out["events"].([]any)[0].(map[string]any)["action"] != AuditTeamChanged {
		t.Fatalf("GET /api/v1/audit?limit=2 = %v; want the two newest", out)
	}
	for _, bad := range []string{"0", "1001", "x"} {
		if status, out := owner.call("GET", "/api/v1/audit?limit="+bad, nil); status != http.StatusBadRequest || errCode(out) != "invalid_limit" {
			t.Errorf("GET /api/v1/audit?limit=%s = %d %v; want 400 invalid_limit", bad, status, out)
		}
	}
	// Admins manage, but the log is the owners'.
	if status, out := bob.call("GET", "/api/v1/audit", nil); status != http.StatusForbidden || errCode(out) != "forbidden" {
		t.Fatalf("admin reads the audit log = %d %v; want 403", status, out)
	}
	// Another tenant's owner sees only their own: their login.
	eve, _ := loggedIn(t, base, "eve@example.com")
	_, eveMe := eve.call("GET", "/api/v1/me", nil)
	if _, out := eve.call("GET", "/api/v1/audit", nil); len(out["events"].([]any)) != 1 || out["events"].([]any)[0].(map[string]any)["actor_id"] != eveMe["agent_id"] {
		t.Fatalf("another tenant's audit = %v; want only eve's login", out)
	}
}
