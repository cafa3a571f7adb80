package transport

import (
	"net/http"
	"net/url"
	"testing"
)

// invitedAgent brings a second agent into owner's tenant through an
// invitation, logged in with a session; it returns the client and its id.
func invitedAgent(t *testing.T, base string, owner *client, email, role string) (*client, string) {
	t.Helper()
	status, out := owner.call("POST", "/api/v1/invitations", map[string]string{"email": email, "role": role})
	if status != http.StatusCreated {
		t.Fatalf("POST /api/v1/invitations = %d %v; want 201", status, out)
	}
	c := newClient(t, base)
	status, out = c.call("POST", "/api/v1/invitations/"+out["token"].(string)+"/accept", map[string]string{"name": "Bob", "password": "correct horse battery"})
	if status != http.StatusCreated {
		t.Fatalf("accept = %d %v; want 201", status, out)
	}
	c.csrf = out["csrf_token"].(string)
	return c, out["agent_id"].(string)
}

// startConversation has a new visitor of wk write once; it returns the
// visitor, its id and the conversation's id.
func startConversation(t *testing.T, base, wk, body string) (*client, string, string) {
	t.Helper()
	v := visitorClient(t, base, wk)
	status, out := v.call("POST", "/api/v1/widget/messages", map[string]string{"client_id": "first", "body": body})
	if status != http.StatusCreated {
		t.Fatalf("POST /api/v1/widget/messages = %d %v; want 201", status, out)
	}
	conv := out["conversation_id"].(string)
	_, list := v.call("GET", "/api/v1/widget/conversations", nil)
	convs, _ := list["conversations"].([]any)
	if len(convs) != 1 {
		t.Fatalf("visitor's conversations = %v; want one", list)
	}
	return v, convs[0].(map[string]any)["visitor_id"].(string), conv
}

func inboxIDs(t *testing.T, c *client) map[string]map[string]any {
	t.Helper()
	status, out := c.call("GET", "/api/v1/conversations?status=all", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /api/v1/conversations = %d %v", status, out)
	}
	ids := map[string]map[string]any{}
	for _, c := range out["conversations"].([]any) {
		m := c.(map[string]any)
		ids[m["id"].(string)] = m
	}
	return ids
}

func sessionHeader(t *testing.T, c *client) http.Header {
	t.Helper()
	u, _ := url.Parse(c.base)
	h := http.Header{}
	for _, k := range c.http.Jar.Cookies(u) {
		h.Add("Cookie", k.Name+"="+k.Value)
	}
	return h
}

// TestTeamVisibility: an agent sees only the conversations of their teams,
// over every route; owners see all; moving a conversation moves who sees it.
func TestTeamVisibility(t *testing.T) {
	base := apiServer(t)
	owner, wk := loggedIn(t, base, "ada@example.com")
	bob, bobID := invitedAgent(t, base, owner, "bob@example.com", "agent")
	_, v1, c1 := startConversation(t, base, wk, "about sales")
	_, v2, c2 := startConversation(t, base, wk, "about support")

	// No team yet: the owner sees both, the agent nothing.
	if ids := inboxIDs(t, owner); ids[c1] == nil || ids[c2] == nil || ids[c1]["team_id"] != "" {
		t.Fatalf("owner's inbox = %v; want both, without a team", ids)
	}
	if ids := inboxIDs(t, bob); len(ids) != 0 {
		t.Fatalf("agent's inbox without teams = %v; want empty", ids)
	}

	status, out := owner.call("POST", "/api/v1/teams", map[string]string{"name": " Sales "})
	if status != http.StatusCreated || out["name"] != "Sales" || out["id"] == "" {
		t.Fatalf("POST /api/v1/teams = %d %v; want 201 Sales", status, out)
	}
	sales := out["id"].(string)
	if status, out := owner.call("POST", "/api/v1/teams", map[string]string{"name": ""}); status != http.StatusBadRequest || errCode(out) != "invalid_name" {
		t.Fatalf("POST /api/v1/teams without a name = %d %v; want 400 invalid_name", status, out)
	}
	if status, out := owner.call("PUT", "/api/v1/teams/"+sales+"/members", map[string]any{"agent_ids": []string{bobID, "nope"}}); status != http.StatusBadRequest || errCode(out) != "invalid_agent" {
		t.Fatalf("PUT members with a bad id = %d %v; want 400 invalid_agent", status, out)
	}
	status, out = owner.call("PUT", "/api/v1/teams/"+sales+"/members", map[string]any{"agent_ids": []string{bobID, bobID}})
	if status != http.StatusOK || len(out["member_ids"].([]any)) != 1 || out["member_ids"].([]any)[0] != bobID {
		t.Fatalf("PUT members = %d %v; want bob once", status, out)
	}
	if status, out := owner.call("POST", "/api/v1/conversations/"+c1+"/team", map[string]string{"team_id": "aaaaaaaaaaaaaaaaaaaaaaaaaa"}); status != http.StatusBadRequest || errCode(out) != "invalid_team" {
		t.Fatalf("POST team with an unknown team = %d %v; want 400 invalid_team", status, out)
	}
	status, out = owner.call("POST", "/api/v1/conversations/"+c1+"/team", map[string]string{"team_id": sales})
	if status != http.StatusOK || out["team_id"] != sales || out["id"] != c1 {
		t.Fatalf("POST team = %d %v; want the conversation in Sales", status, out)
	}

	// Bob sees c1 and its visitor, and nothing of c2.
	if ids := inboxIDs(t, bob); len(ids) != 1 || ids[c1] == nil || ids[c1]["team_id"] != sales {
		t.Fatalf("agent's inbox = %v; want c1 only", ids)
	}
	for _, tc := range []struct {
		method, path string
		body         any
		want         int
	}{
		{"GET", "/api/v1/conversations/" + c1 + "/messages", nil, http.StatusOK},
		{"POST", "/api/v1/conversations/" + c1 + "/messages", map[string]string{"client_id": "b1", "body": "hi"}, http.StatusCreated},
		{"POST", "/api/v1/conversations/" + c1 + "/notes", map[string]string{"client_id": "n1", "body": "vip"}, http.StatusCreated},
		{"POST", "/api/v1/conversations/" + c1 + "/status", map[string]string{"status": "pending"}, http.StatusOK},
		{"POST", "/api/v1/conversations/" + c1 + "/assign", map[string]string{"assignee_id": bobID}, http.StatusOK},
		{"GET", "/api/v1/visitors/" + v1, nil, http.StatusOK},
		{"GET", "/api/v1/conversations/" + c2 + "/messages", nil, http.StatusNotFound},
		{"POST", "/api/v1/conversations/" + c2 + "/messages", map[string]string{"client_id": "b1", "body": "hi"}, http.StatusNotFound},
		{"POST", "/api/v1/conversations/" + c2 + "/notes", map[string]string{"client_id": "n1", "body": "x"}, http.StatusNotFound},
		{"POST", "/api/v1/conversations/" + c2 + "/status", map[string]string{"status": "closed"}, http.StatusNotFound},
		{"POST", "/api/v1/conversations/" + c2 + "/assign", map[string]string{"assignee_id": bobID}, http.StatusNotFound},
		{"POST", "/api/v1/conversations/" + c2 + "/close", nil, http.StatusNotFound},
		{"POST", "/api/v1/conversations/" + c2 + "/team", map[string]string{"team_id": sales}, http.StatusNotFound},
		{"GET", "/api/v1/visitors/" + v2, nil, http.StatusNotFound},
		// Managing teams is for owners and admins.
		{"POST", "/api/v1/teams", map[string]string{"name": "Mine"}, http.StatusForbidden},
		{"PUT", "/api/v1/teams/" + sales + "/members", map[string]any{"agent_ids": []string{}}, http.StatusForbidden},
		{"DELETE", "/api/v1/teams/" + sales, nil, http.StatusForbidden},
		{"PATCH", "/api/v1/settings", map[string]string{"name": "Bob's"}, http.StatusForbidden},
		{"POST", "/api/v1/invitations", map[string]string{"email": "c@example.com"}, http.StatusForbidden},
		{"POST", "/api/v1/tokens", map[string]string{"name": "x"}, http.StatusForbidden},
		{"GET", "/api/v1/audit", nil, http.StatusForbidden},
	} {
		if status, out := bob.call(tc.method, tc.path, tc.body); status != tc.want {
			t.Errorf("agent %s %s = %d %v; want %d", tc.method, tc.path, status, out, tc.want)
		}
	}
	if _, out := bob.call("GET", "/api/v1/teams", nil); len(out["teams"].([]any)) != 1 {
		t.Fatalf("GET /api/v1/teams as an agent = %v; want Sales", out)
	}

	// Bob hands c1 back to no team: it leaves his view.
	if status, out := bob.call("POST", "/api/v1/conversations/"+c1+"/team", map[string]string{"team_id": ""}); status != http.StatusOK || out["team_id"] != "" {
		t.Fatalf("agent moves c1 out = %d %v", status, out)
	}
	if status, _ := bob.call("GET", "/api/v1/conversations/"+c1+"/messages", nil); status != http.StatusNotFound {
		t.Fatalf("agent reads c1 after moving it out = %d; want 404", status)
	}

	// Membership decides, not who moved what: out of the team, out of view.
	owner.call("POST", "/api/v1/conversations/"+c1+"/team", map[string]string{"team_id": sales})
	if ids := inboxIDs(t, bob); ids[c1] == nil {
		t.Fatalf("agent's inbox = %v; want c1 back", ids)
	}
	owner.call("PUT", "/api/v1/teams/"+sales+"/members", map[string]any{"agent_ids": []string{}})
	if ids := inboxIDs(t, bob); len(ids) != 0 {
		t.Fatalf("agent's inbox after leaving the team = %v; want empty", ids)
	}

	// A deleted team's conversations are the managers' alone.
	owner.call("PUT", "/api/v1/teams/"+sales+"/members", map[string]any{"agent_ids": []string{bobID}})
	if status, _ := owner.call("DELETE", "/api/v1/teams/"+sales, nil); status != http.StatusNoContent {
		t.Fatalf("DELETE team = %d; want 204", status)
	}
	if status, _ := owner.call("DELETE", "/api/v1/teams/"+sales, nil); status != http.StatusNotFound {
		t.Fatalf("DELETE team again = %d; want 404", status)
	}
	if ids := inboxIDs(t, bob); len(ids) != 0 {
		t.Fatalf("agent's inbox after the team was deleted = %v; want empty", ids)
	}
	if ids := inboxIDs(t, owner); ids[c1] == nil || ids[c1]["team_id"] != sales {
		t.Fatalf("owner's inbox = %v; want c1, still naming the deleted team", ids)
	}
	if _, out := owner.call("GET", "/api/v1/teams", nil); len(out["teams"].([]any)) != 0 {
		t.Fatalf("GET /api/v1/teams after delete = %v; want none", out)
	}
}

// TestTeamSocketVisibility: an agent's socket carries only the
// conversations of the agent's teams; frames about others answer not_found,
// and a conversation moved out of the agent's teams stops at once.
func TestTeamSocketVisibility(t *testing.T) {
	base := apiServer(t)
	owner, wk := loggedIn(t, base, "ada@example.com")
	bob, bobID := invitedAgent(t, base, owner, "bob@example.com", "agent")
	_, out := owner.call("POST", "/api/v1/teams", map[string]string{"name": "Sales"})
	sales := out["id"].(string)
	owner.call("PUT", "/api/v1/teams/"+sales+"/members", map[string]any{"agent_ids": []string{bobID}})
	v1, _, c1 := startConversation(t, base, wk, "in sales")
	v2, _, c2 := startConversation(t, base, wk, "no team")
	owner.call("POST", "/api/v1/conversations/"+c1+"/team", map[string]string{"team_id": sales})

	as := dialSocket(t, base, "/ws/agent", sessionHeader(t, bob))
	for _, f := range []map[string]any{
		{"type": "resume", "conversation_id": c2, "after": 0},
		{"type": "send", "conversation_id": c2, "client_id": "b1", "body": "hi"},
		{"type": "typing", "conversation_id": c2},
		{"type": "read", "conversation_id": c2, "seq": 1},
	} {
		as.send(f)
		if e := as.next("error", "message"); e["type"] != "error" || e["code"] != "not_found" {
			t.Fatalf("agent socket %v on another team's conversation = %v; want error not_found", f["type"], e)
		}
	}
	as.send(map[string]any{"type": "resume", "conversation_id": c1, "after": 0})
	if m := as.next("message"); m["conversation_id"] != c1 || m["seq"] != float64(1) {
		t.Fatalf("resume c1 = %v; want its first message", m)
	}

	// c2's visitor writes, then c1's: only c1's message reaches the agent.
	v2.call("POST", "/api/v1/widget/messages", map[string]string{"conversation_id": c2, "client_id": "second", "body": "hello?"})
	v1.call("POST", "/api/v1/widget/messages", map[string]string{"conversation_id": c1, "client_id": "second", "body": "still there?"})
	for {
		f := as.next("message", "conversation")
		if f["conversation_id"] == c2 {
			t.Fatalf("agent socket got %v of a conversation outside the agent's teams", f)
		}
		if f["type"] == "message" && f["seq"] == float64(2) {
			break
		}
	}

	// c1 leaves the team: the socket says so and carries nothing more of it.
	owner.call("POST", "/api/v1/conversations/"+c1+"/team", map[string]string{"team_id": ""})
	if f := as.next("conversation_removed", "message"); f["type"] != "conversation_removed" || f["conversation_id"] != c1 {
		t.Fatalf("after c1 left the team: %v; want conversation_removed", f)
	}
	v1.call("POST", "/api/v1/widget/messages", map[string]string{"conversation_id": c1, "client_id": "third", "body": "hello??"})
	// c2 joins the team: announced, and its messages follow.
	owner.call("POST", "/api/v1/conversations/"+c2+"/team", map[string]string{"team_id": sales})
	v2.call("POST", "/api/v1/widget/messages", map[string]string{"conversation_id": c2, "client_id": "third", "body": "anyone?"})
	for {
		f := as.next("message", "conversation")
		if f["conversation_id"] == c1 {
			t.Fatalf("agent socket got %v of a conversation that left the agent's teams", f)
		}
		if f["type"] == "message" && f["conversation_id"] == c2 && f["body"] == "anyone?" {
			break
		}
	}
}

// TestRoles: only owners change roles, the last owner stays, and a role
// takes effect on the next request.
func TestRoles(t *testing.T) {
	base := apiServer(t)
	owner, _ := loggedIn(t, base, "ada@example.com")
	_, me := owner.call("GET", "/api/v1/me", nil)
	ownerID := me["agent_id"].(string)
	bob, bobID := invitedAgent(t, base, owner, "bob@example.com", "agent")

	for _, tc := range []struct {
		who  *client
		id   string
		role string
		want int
		code string
	}{
		{bob, bobID, "admin", http.StatusForbidden, "forbidden"},
		{owner, bobID, "king", http.StatusBadRequest, "invalid_role"},
		{owner, "aaaaaaaaaaaaaaaaaaaaaaaaaa", "admin", http.StatusNotFound, "not_found"},
		{owner, "nope", "admin", http.StatusNotFound, "not_found"},
		{owner, ownerID, "admin", http.StatusConflict, "last_owner"},
	} {
		if status, out := tc.who.call("PUT", "/api/v1/agents/"+tc.id+"/role", map[string]string{"role": tc.role}); status != tc.want || errCode(out) != tc.code {
			t.Errorf("PUT role %s = %d %v; want %d %s", tc.role, status, out, tc.want, tc.code)
		}
	}
	status, out := owner.call("PUT", "/api/v1/agents/"+bobID+"/role", map[string]string{"role": "admin"})
	if status != http.StatusOK || out["role"] != "admin" || out["id"] != bobID {
		t.Fatalf("make bob admin = %d %v", status, out)
	}
	// An admin manages teams and settings, and sees every conversation,
	// but changes no roles.
	if status, out := bob.call("POST", "/api/v1/teams", map[string]string{"name": "Support"}); status != http.StatusCreated {
		t.Fatalf("admin creates a team = %d %v; want 201", status, out)
	}
	if status, _ := bob.call("PATCH", "/api/v1/settings", map[string]string{"widget_color": "#112233"}); status != http.StatusOK {
		t.Fatalf("admin patches settings = %d; want 200", status)
	}
	if status, _ := bob.call("PUT", "/api/v1/agents/"+ownerID+"/role", map[string]string{"role": "agent"}); status != http.StatusForbidden {
		t.Fatalf("admin demotes the owner = %d; want 403", status)
	}
	// With a second owner, the first may step down.
	if status, out := owner.call("PUT", "/api/v1/agents/"+bobID+"/role", map[string]string{"role": "owner"}); status != http.StatusOK || out["role"] != "owner" {
		t.Fatalf("make bob owner = %d %v", status, out)
	}
	if status, out := owner.call("PUT", "/api/v1/agents/"+ownerID+"/role", map[string]string{"role": "agent"}); status != http.StatusOK || out["role"] != "agent" {
		t.Fatalf("first owner steps down = %d %v", status, out)
	}
	if status, _ := owner.call("PUT", "/api/v1/agents/"+bobID+"/role", map[string]string{"role": "agent"}); status != http.StatusForbidden {
		t.Fatalf("a former owner changes a role = %d; want 403", status)
	}
	if status, out := bob.call("PUT", "/api/v1/agents/"+bobID+"/role", map[string]string{"role": "admin"}); status != http.StatusConflict || errCode(out) != "last_owner" {
		t.Fatalf("the last owner steps down = %d %v; want 409 last_owner", status, out)
	}
	_, agents := bob.call("GET", "/api/v1/agents", nil)
	roles := map[string]string{}
	for _, a := range agents["agents"].([]any) {
		m := a.(map[string]any)
		roles[m["id"].(string)] = m["role"].(string)
	}
	if roles[ownerID] != "agent" || roles[bobID] != "owner" {
		t.Fatalf("roles = %v; want ada agent, bob owner", roles)
	}
}
