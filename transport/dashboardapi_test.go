package transport

import (
	"net/http"
	"strings"
	"testing"
)

// TestStatusAssignAndNotes: pending and closed conversations, reopened by
// the visitor; assignment to an agent of the team only; internal notes
// that agents see and the visitor never does, over REST and the socket.
func TestStatusAssignAndNotes(t *testing.T) {
	base := apiServer(t)
	agent, wk := loggedIn(t, base, "ada@example.com")
	v := visitorClient(t, base, wk)
	_, first := v.call("POST", "/api/v1/widget/messages", map[string]string{"client_id": "c1", "body": "hello"})
	conv := first["conversation_id"].(string)
	_, me := agent.call("GET", "/api/v1/me", nil)
	if me["role"] != "owner" || me["organization"] != "Acme" || me["email"] != "ada@example.com" {
		t.Fatalf("me = %v", me)
	}

	status, out := agent.call("POST", "/api/v1/conversations/"+conv+"/status", map[string]string{"status": "pending"})
	if status != http.StatusOK || out["status"] != "pending" || out["last_seq"] != float64(1) {
		t.Fatalf("status pending = %d %v", status, out)
	}
	if _, inbox := agent.call("GET", "/api/v1/conversations?status=pending", nil); len(inbox["conversations"].([]any)) != 1 {
		t.Fatalf("pending inbox = %v; want the conversation", inbox)
	}
	if status, out := agent.call("POST", "/api/v1/conversations/"+conv+"/status", map[string]string{"status": "snoozed"}); status != http.StatusBadRequest || errCode(out) != "invalid_status" {
		t.Fatalf("status snoozed = %d %v; want 400 invalid_status", status, out)
	}
	// An agent's reply leaves it pending; the visitor's next message reopens it.
	agent.call("POST", "/api/v1/conversations/"+conv+"/messages", map[string]string{"client_id": "a1", "body": "anything else?"})
	if _, inbox := agent.call("GET", "/api/v1/conversations?status=pending", nil); len(inbox["conversations"].([]any)) != 1 {
		t.Fatalf("pending inbox after a reply = %v; want the conversation still", inbox)
	}
	v.call("POST", "/api/v1/widget/messages", map[string]string{"conversation_id": conv, "client_id": "c2", "body": "yes"})
	if _, inbox := agent.call("GET", "/api/v1/conversations?status=open", nil); len(inbox["conversations"].([]any)) != 1 {
		t.Fatalf("open inbox after the visitor wrote = %v; want the conversation", inbox)
	}

	status, out = agent.call("POST", "/api/v1/conversations/"+conv+"/assign", map[string]string{"assignee_id": me["agent_id"].(string)})
	if status != http.StatusOK || out["assignee_id"] != me["agent_id"] {
		t.Fatalf("assign = %d %v", status, out)
	}
	eve, _ := loggedIn(t, base, "eve@example.com")
	_, eveMe := eve.call("GET", "/api/v1/me", nil)
	if status, out := agent.call("POST", "/api/v1/conversations/"+conv+"/assign", map[string]string{"assignee_id": eveMe["agent_id"].(string)}); status != http.StatusBadRequest || errCode(out) != "invalid_assignee" {
		t.Fatalf("assign to another tenant's agent = %d %v; want 400 invalid_assignee", status, out)
	}
	if status, _ := eve.call("POST", "/api/v1/conversations/"+conv+"/assign", map[string]string{"assignee_id": ""}); status != http.StatusNotFound {
		t.Fatalf("another tenant unassigns = %d; want 404", status)
	}
	if status, out := agent.call("POST", "/api/v1/conversations/"+conv+"/assign", map[string]string{"assignee_id": ""}); status != http.StatusOK || out["assignee_id"] != nil {
		t.Fatalf("unassign = %d %v", status, out)
	}

	// A visitor socket watches the conversation before the note.
	sess := v.auth
	vs := dialSocket(t, base, "/ws/widget?token="+sess, nil)
	vs.send(map[string]any{"type": "resume", "conversation_id": conv, "after": 3})
	status, out = agent.call("POST", "/api/v1/conversations/"+conv+"/notes", map[string]string{"client_id": "n1", "body": "VIP customer"})
	if status != http.StatusCreated || out["seq"] != float64(4) {
		t.Fatalf("note = %d %v; want seq 4", status, out)
	}
	agent.call("POST", "/api/v1/conversations/"+conv+"/messages", map[string]string{"client_id": "a2", "body": "on it"})
	if f := vs.next("message"); f["seq"] != float64(5) || f["body"] != "on it" {
		t.Fatalf("the visitor's socket got %v first; want the reply (seq 5), never the note", f)
	}
	_, msgs := agent.call("GET", "/api/v1/conversations/"+conv+"/messages", nil)
	all := msgs["messages"].([]any)
	if len(all) != 5 || all[3].(map[string]any)["internal"] != true || all[3].(map[string]any)["body"] != "VIP customer" {
		t.Fatalf("agent's messages = %v; want 5 with the note at seq 4", msgs)
	}
	// The visitor's pages skip the note and still fill up.
	_, vmsgs := v.call("GET", "/api/v1/widget/conversations/"+conv+"/messages?after=3&limit=1", nil)
	page := vmsgs["messages"].([]any)
	if len(page) != 1 || page[0].(map[string]any)["seq"] != float64(5) {
		t.Fatalf("visitor's page after 3 of 1 = %v; want the reply at seq 5", vmsgs)
	}
	_, vall := v.call("GET", "/api/v1/widget/conversations/"+conv+"/messages", nil)
	for _, m := range vall["messages"].([]any) {
		if strings.Contains(m.(map[string]any)["body"].(string), "VIP") {
			t.Fatalf("the visitor sees the note: %v", vall)
		}
	}
}

// TestInvitations: an owner invites, the invitee accepts once and is
// logged in as an agent of the team; agents cannot invite.
func TestInvitations(t *testing.T) {
	base := apiServer(t)
	owner, _ := loggedIn(t, base, "ada@example.com")
	status, out := owner.call("POST", "/api/v1/invitations", map[string]string{"email": "Bob@Example.com", "role": "agent"})
	if status != http.StatusCreated || !strings.HasPrefix(out["token"].(string), "i_") || !strings.HasSuffix(out["invite_url"].(string), "/invite/"+out["token"].(string)) {
		t.Fatalf("invite = %d %v", status, out)
	}
	token := out["token"].(string)
	if status, out := owner.call("POST", "/api/v1/invitations", map[string]string{"email": "x@example.com", "role": "owner"}); status != http.StatusBadRequest || errCode(out) != "invalid_role" {
		t.Fatalf("invite as owner = %d %v; want 400 invalid_role", status, out)
	}
	bob := newClient(t, base)
	status, out = bob.call("GET", "/api/v1/invitations/"+token, nil)
	if status != http.StatusOK || out["organization"] != "Acme" || out["email"] != "bob@example.com" || out["role"] != "agent" {
		t.Fatalf("invitation = %d %v", status, out)
	}
	if status, out := bob.call("POST", "/api/v1/invitations/"+token+"/accept", map[string]string{"name": "Bob", "password": "short"}); status != http.StatusBadRequest || errCode(out) != "invalid_password" {
		t.Fatalf("accept with a short password = %d %v; want 400", status, out)
	}
	status, out = bob.call("POST", "/api/v1/invitations/"+token+"/accept", map[string]string{"name": "Bob", "password": "correct horse battery"})
	if status != http.StatusCreated || out["csrf_token"] == "" {
		t.Fatalf("accept = %d %v", status, out)
	}
	bob.csrf = out["csrf_token"].(string)
	if _, me := bob.call("GET", "/api/v1/me", nil); me["role"] != "agent" || me["name"] != "Bob" {
		t.Fatalf("bob's me = %v", me)
	}
	if status, _ := newClient(t, base).call("POST", "/api/v1/invitations/"+token+"/accept", map[string]string{"name": "Mallory", "password": "correct horse battery"}); status != http.StatusNotFound {
		t.Fatalf("second accept = %d; want 404", status)
	}
	if _, agents := owner.call("GET", "/api/v1/agents", nil); len(agents["agents"].([]any)) != 2 {
		t.Fatalf("team = %v; want the owner and Bob", agents)
	}
	if status, out := bob.call("POST", "/api/v1/invitations", map[string]string{"email": "c@example.com"}); status != http.StatusForbidden {
		t.Fatalf("an agent invites = %d %v; want 403", status, out)
	}
	// Bob logs in with his password like anyone.
	again := newClient(t, base)
	if status, _ := again.call("POST", "/api/v1/login", map[string]string{"email": "bob@example.com", "password": "correct horse battery"}); status != http.StatusOK {
		t.Fatalf("bob's login = %d", status)
	}
}
