package transport

import (
	"net/http"
	"testing"
)

// TestTenantIsolation walks every route that takes an id with tenant B's
// ids, as tenant A's owner (who sees everything of A) and as A's agent:
// each answers exactly as for an id that does not exist, over REST and
// WebSocket, and B's data stays out of A's lists and sockets.
func TestTenantIsolation(t *testing.T) {
	base := apiServer(t)

	// Tenant B: a team, a visitor with a conversation in it, a note.
	bOwner, bWK := loggedIn(t, base, "eve@example.com")
	_, me := bOwner.call("GET", "/api/v1/me", nil)
	bOwnerID := me["agent_id"].(string)
	_, out := bOwner.call("POST", "/api/v1/teams", map[string]string{"name": "B team"})
	bTeam := out["id"].(string)
	bVisitorClient, bVisitor, bConv := startConversation(t, base, bWK, "B's secret")
	bOwner.call("POST", "/api/v1/conversations/"+bConv+"/team", map[string]string{"team_id": bTeam})
	if status, _ := bOwner.call("POST", "/api/v1/conversations/"+bConv+"/notes", map[string]string{"client_id": "n", "body": "B's note"}); status != http.StatusCreated {
		t.Fatalf("B's note = %d", status)
	}

	// Tenant A: its owner, and an agent in a team of A.
	aOwner, aWK := loggedIn(t, base, "ada@example.com")
	aAgent, aAgentID := invitedAgent(t, base, aOwner, "bob@example.com", "agent")
	_, out = aOwner.call("POST", "/api/v1/teams", map[string]string{"name": "A team"})
	aTeam := out["id"].(string)
	aOwner.call("PUT", "/api/v1/teams/"+aTeam+"/members", map[string]any{"agent_ids": []string{aAgentID}})
	_, _, aConv := startConversation(t, base, aWK, "A's own")
	aOwner.call("POST", "/api/v1/conversations/"+aConv+"/team", map[string]string{"team_id": aTeam})

	routes := []struct {
		method, path string
		body         any
		manager      bool // owners (and admins) only: an agent gets 403 whatever the id
	}{
		{"GET", "/api/v1/conversations/" + bConv + "/messages", nil, false},
		{"GET", "/api/v1/conversations/" + bConv + "/messages?after=0&limit=10", nil, false},
		{"POST", "/api/v1/conversations/" + bConv + "/messages", map[string]string{"client_id": "x", "body": "hi"}, false},
		{"POST", "/api/v1/conversations/" + bConv + "/notes", map[string]string{"client_id": "x", "body": "hi"}, false},
		{"POST", "/api/v1/conversations/" + bConv + "/status", map[string]string{"status": "closed"}, false},
		{"POST", "/api/v1/conversations/" + bConv + "/assign", map[string]string{"assignee_id": ""}, false},
		{"POST", "/api/v1/conversations/" + bConv + "/close", nil, false},
		{"POST", "/api/v1/conversations/" + bConv + "/team", map[string]string{"team_id": ""}, false},
		{"GET", "/api/v1/visitors/" + bVisitor, nil, false},
		{"PUT", "/api/v1/teams/" + bTeam + "/members", map[string]any{"agent_ids": []string{}}, true},
		{"DELETE", "/api/v1/teams/" + bTeam, nil, true},
		{"PUT", "/api/v1/agents/" + bOwnerID + "/role", map[string]string{"role": "agent"}, true},
	}
	for _, who := range []struct {
		name    string
		c       *client
		manager bool
	}{{"A's owner", aOwner, true}, {"A's agent", aAgent, false}} {
		for _, r := range routes {
			want, code := http.StatusNotFound, "not_found"
			if r.manager && !who.manager {
				want, code = http.StatusForbidden, "forbidden"
			}
			if status, out := who.c.call(r.method, r.path, r.body); status != want || errCode(out) != code {
				t.Errorf("%s: %s %s = %d %v; want %d %s", who.name, r.method, r.path, status, out, want, code)
			}
		}
		// B's team cannot take A's conversation either.
		if status, out := who.c.call("POST", "/api/v1/conversations/"+aConv+"/team", map[string]string{"team_id": bTeam}); status != http.StatusBadRequest || errCode(out) != "invalid_team" {
			t.Errorf("%s: move A's conversation into B's team = %d %v; want 400 invalid_team", who.name, status, out)
		}
		// And B's agents cannot join A's team.
		if who.manager {
			if status, out := who.c.call("PUT", "/api/v1/teams/"+aTeam+"/members", map[string]any{"agent_ids": []string{bOwnerID}}); status != http.StatusBadRequest || errCode(out) != "invalid_agent" {
				t.Errorf("%s: B's owner into A's team = %d %v; want 400 invalid_agent", who.name, status, out)
			}
			// Give the agent back its team for the rest of the walk.
			who.c.call("PUT", "/api/v1/teams/"+aTeam+"/members", map[string]any{"agent_ids": []string{aAgentID}})
		}
		if ids := inboxIDs(t, who.c); ids[bConv] != nil || ids[aConv] == nil {
			t.Errorf("%s: inbox = %v; want A's conversation and not B's", who.name, ids)
		}
		_, teams := who.c.call("GET", "/api/v1/teams", nil)
		for _, tm := range teams["teams"].([]any) {
			if tm.(map[string]any)["id"] == bTeam {
				t.Errorf("%s: GET /api/v1/teams lists B's team", who.name)
			}
		}

		// Over the socket: every frame about B's conversation is not_found,
		// and B's traffic never reaches it.
		as := dialSocket(t, base, "/ws/agent", sessionHeader(t, who.c))
		for _, f := range []map[string]any{
			{"type": "resume", "conversation_id": bConv, "after": 0},
			{"type": "send", "conversation_id": bConv, "client_id": "x", "body": "hi"},
			{"type": "typing", "conversation_id": bConv},
			{"type": "read", "conversation_id": bConv, "seq": 1},
		} {
			as.send(f)
			if e := as.next("error", "message", "conversation"); e["type"] != "error" || e["code"] != "not_found" {
				t.Fatalf("%s: socket %v on B's conversation = %v; want error not_found", who.name, f["type"], e)
			}
		}
		bVisitorClient.call("POST", "/api/v1/widget/messages", map[string]string{"conversation_id": bConv, "client_id": "more-" + who.name, "body": "more of B"})
		// A sentinel: the next frame this socket gets must be A's own.
		as.send(map[string]any{"type": "send", "conversation_id": aConv, "client_id": "sentinel-" + who.name, "body": "A's reply"})
		for {
			f := as.next("message", "conversation", "ack", "typing", "read")
			if f["conversation_id"] == bConv {
				t.Fatalf("%s: socket got %v of B's conversation", who.name, f)
			}
			if f["type"] == "message" && f["client_id"] == "sentinel-"+who.name {
				break
			}
		}
	}

	// Nothing A's callers tried changed B's conversation.
	_, msgs := bOwner.call("GET", "/api/v1/conversations/"+bConv+"/messages", nil)
	if got := len(msgs["messages"].([]any)); got != 4 {
		t.Fatalf("B's conversation has %d messages; want 4 (first, note, two more from B's visitor)", got)
	}
	if ids := inboxIDs(t, bOwner); ids[bConv]["status"] != "open" || ids[bConv]["team_id"] != bTeam {
		t.Fatalf("B's conversation = %v; want open, in B's team", ids[bConv])
	}
}
