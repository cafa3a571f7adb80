package transport

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// chattyVisitor is a visitor with a browser, a contact, 60 page views and
// two conversations, each with an agent's reply and an agent's note.
func chattyVisitor(t *testing.T, base, wk string, owner *client) (vid string, convs [2]string) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/api/v1/widget/sessions", jsonBody(map[string]string{"widget_key": wk}))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sess := decodeBody(t, resp)
	vid = sess["visitor_id"].(string)
	v := newClient(t, base)
	v.auth = sess["visitor_token"].(string)

	vs := dialSocket(t, base, "/ws/widget?token="+v.auth, nil)
	for i := range 60 {
		vs.send(map[string]string{"type": "page_view", "url": fmt.Sprintf("https://shop.example/p/%d", i), "title": fmt.Sprintf("Page %d", i)})
	}
	// A socket's frames are handled in order: once the last view shows,
	// every one is stored.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, panel := owner.call("GET", "/api/v1/visitors/"+vid, nil)
		if views, _ := panel["page_views"].([]any); len(views) > 0 && views[0].(map[string]any)["url"] == "https://shop.example/p/59" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the 60th page view never showed: %v", panel)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if status, out := v.call("POST", "/api/v1/widget/contact", map[string]string{"name": "Grace", "email": "grace@example.com"}); status != http.StatusNoContent {
		t.Fatalf("contact = %d %v; want 204", status, out)
	}
	for i := range convs {
		status, out := v.call("POST", "/api/v1/widget/messages", map[string]string{"client_id": fmt.Sprintf("v%d-1", i), "body": fmt.Sprintf("hello %d", i)})
		if status != http.StatusCreated {
			t.Fatalf("POST /api/v1/widget/messages = %d %v; want 201", status, out)
		}
		convs[i] = out["conversation_id"].(string)
		steps := []struct {
			who        *client
			path, body string
		}{
			{owner, "/api/v1/conversations/" + convs[i] + "/messages", fmt.Sprintf("reply %d", i)},
			{owner, "/api/v1/conversations/" + convs[i] + "/notes", fmt.Sprintf("secret note %d", i)},
			{v, "/api/v1/widget/messages", fmt.Sprintf("thanks %d", i)},
		}
		for j, s := range steps {
			body := map[string]string{"client_id": fmt.Sprintf("s%d-%d", i, j), "body": s.body, "conversation_id": convs[i]}
			if status, out := s.who.call("POST", s.path, body); status != http.StatusCreated {
				t.Fatalf("POST %s = %d %v; want 201", s.path, status, out)
			}
		}
	}
	return vid, convs
}

// TestVisitorRightsExport: an export holds every page view, every contact
// and technical field and every message of both conversations, but no
// note; correction and restriction show in the panel and the export; an
// agent and another tenant are refused.
func TestVisitorRightsExport(t *testing.T) {
	old := exportPage
	exportPage = 7 // several pages of views and of messages
	t.Cleanup(func() { exportPage = old })

	base := apiServer(t)
	owner, wk := loggedIn(t, base, "ada@example.com")
	vid, convs := chattyVisitor(t, base, wk, owner)

	status, ex := owner.call("GET", "/api/v1/visitors/"+vid+"/export", nil)
	if status != http.StatusOK {
		t.Fatalf("GET export = %d %v; want 200", status, ex)
	}
	if _, err := time.Parse(time.RFC3339, fmt.Sprint(ex["exported_at"])); err != nil {
		t.Fatalf("exported_at = %v: %v", ex["exported_at"], err)
	}
	vis := ex["visitor"].(map[string]any)
	contact := vis["contact"].(map[string]any)
	tech := vis["technical"].(map[string]any)
	if vis["id"] != vid || vis["created_at"] == "" || vis["last_seen_at"] == "" || vis["restricted"] != false ||
		contact["name"] != "Grace" || contact["email"] != "grace@example.com" ||
		tech["browser"] != "Firefox" || tech["os"] != "Linux" || tech["ip"] != "127.0.0.1" || tech["user_agent"] == "" {
		t.Fatalf("exported visitor = %v", vis)
	}
	views := ex["page_views"].([]any)
	if len(views) != 60 {
		t.Fatalf("exported %d page views; want all 60", len(views))
	}
	for i, pv := range views {
		if want := fmt.Sprintf("https://shop.example/p/%d", i); pv.(map[string]any)["url"] != want {
			t.Fatalf("page view %d = %v; want %s, oldest first", i, pv, want)
		}
	}
	cs := ex["conversations"].([]any)
	if len(cs) != 2 {
		t.Fatalf("exported conversations = %v; want 2", cs)
	}
	for i, c := range cs {
		c := c.(map[string]any)
		if c["id"] != convs[i] || c["status"] != "open" || c["created_at"] == "" {
			t.Fatalf("exported conversation %d = %v; want %s, open, oldest first", i, c, convs[i])
		}
		msgs := c["messages"].([]any)
		want := []struct {
			seq        float64
			kind, body string
		}{{1, "visitor", fmt.Sprintf("hello %d", i)}, {2, "agent", fmt.Sprintf("reply %d", i)}, {4, "visitor", fmt.Sprintf("thanks %d", i)}}
		if len(msgs) != len(want) {
			t.Fatalf("conversation %d exports %v; want the 3 messages without the note", i, msgs)
		}
		for j, w := range want {
			m := msgs[j].(map[string]any)
			if m["seq"] != w.seq || m["author"].(map[string]any)["kind"] != w.kind || m["body"] != w.body || m["internal"] != nil {
				t.Fatalf("conversation %d message %d = %v; want %v", i, j, m, w)
			}
		}
	}

	// Correction, by any agent who sees the visitor.
	bob, bobID := invitedAgent(t, base, owner, "bob@example.com", "agent")
	if status, _ := bob.call("PATCH", "/api/v1/visitors/"+vid, map[string]string{"name": "Nope"}); status != http.StatusNotFound {
		t.Fatalf("PATCH by an agent who sees none of the visitor's conversations = %d; want 404", status)
	}
	_, team := owner.call("POST", "/api/v1/teams", map[string]string{"name": "Sales"})
	owner.call("PUT", "/api/v1/teams/"+team["id"].(string)+"/members", map[string]any{"agent_ids": []string{bobID}})
	if status, out := owner.call("POST", "/api/v1/conversations/"+convs[1]+"/team", map[string]string{"team_id": team["id"].(string)}); status != http.StatusOK {
		t.Fatalf("set team = %d %v", status, out)
	}
	if status, out := bob.call("PATCH", "/api/v1/visitors/"+vid, map[string]string{"email": "not an email"}); status != http.StatusBadRequest || errCode(out) != "invalid_email" {
		t.Fatalf("PATCH with a bad email = %d %v; want 400 invalid_email", status, out)
	}
	if status, out := bob.call("PATCH", "/api/v1/visitors/"+vid, map[string]string{}); status != http.StatusBadRequest {
		t.Fatalf("PATCH with nothing = %d %v; want 400", status, out)
	}
	status, out := bob.call("PATCH", "/api/v1/visitors/"+vid, map[string]string{"email": " grace@hopper.example "})
	if status != http.StatusOK || out["name"] != "Grace" || out["email"] != "grace@hopper.example" {
		t.Fatalf("PATCH email = %d %v; want the name kept and the email corrected", status, out)
	}
	if _, panel := owner.call("GET", "/api/v1/visitors/"+vid, nil); panel["name"] != "Grace" || panel["email"] != "grace@hopper.example" || panel["restricted"] != false {
		t.Fatalf("panel after correction = %v", panel)
	}

	// Restriction, by managers only.
	if status, out := bob.call("POST", "/api/v1/visitors/"+vid+"/restrict", map[string]bool{"restricted": true}); status != http.StatusForbidden {
		t.Fatalf("an agent restricts = %d %v; want 403", status, out)
	}
	if status, out := bob.call("GET", "/api/v1/visitors/"+vid+"/export", nil); status != http.StatusForbidden {
		t.Fatalf("an agent exports = %d %v; want 403", status, out)
	}
	if status, out := owner.call("POST", "/api/v1/visitors/"+vid+"/restrict", map[string]any{}); status != http.StatusBadRequest {
		t.Fatalf("restrict without a value = %d %v; want 400", status, out)
	}
	if status, out := owner.call("POST", "/api/v1/visitors/"+vid+"/restrict", map[string]bool{"restricted": true}); status != http.StatusNoContent {
		t.Fatalf("restrict = %d %v; want 204", status, out)
	}
	if _, panel := owner.call("GET", "/api/v1/visitors/"+vid, nil); panel["restricted"] != true {
		t.Fatalf("panel after restriction = %v; want restricted", panel)
	}
	_, ex = owner.call("GET", "/api/v1/visitors/"+vid+"/export", nil)
	if vis := ex["visitor"].(map[string]any); vis["restricted"] != true || vis["contact"].(map[string]any)["email"] != "grace@hopper.example" {
		t.Fatalf("export after correction and restriction = %v", vis)
	}
	owner.call("POST", "/api/v1/visitors/"+vid+"/restrict", map[string]bool{"restricted": false})
	if _, panel := owner.call("GET", "/api/v1/visitors/"+vid, nil); panel["restricted"] != false {
		t.Fatalf("panel after lifting = %v; want not restricted", panel)
	}

	// Another tenant: 404 everywhere.
	eve, _ := loggedIn(t, base, "eve@example.com")
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/v1/visitors/" + vid + "/export"}, {"PATCH", "/api/v1/visitors/" + vid}, {"POST", "/api/v1/visitors/" + vid + "/restrict"},
	} {
		if status, out := eve.call(c.method, c.path, map[string]any{"name": "x", "restricted": true}); status != http.StatusNotFound {
			t.Fatalf("another tenant's %s %s = %d %v; want 404", c.method, c.path, status, out)
		}
	}

	// The ledger has each request, done at once, due 30 days later; the
	// audit log each action.
	_, ledger := owner.call("GET", "/api/v1/privacy/requests", nil)
	kinds := map[string]int{}
	for _, r := range ledger["requests"].([]any) {
		r := r.(map[string]any)
		kinds[r["kind"].(string)]++
		req, _ := time.Parse(time.RFC3339, r["requested_at"].(string))
		due, _ := time.Parse(time.RFC3339, r["due_at"].(string))
		if r["visitor_id"] != vid || r["done_at"] != r["requested_at"] || due.Sub(req) != 30*24*time.Hour || r["days_left"] != nil {
			t.Fatalf("ledger entry = %v; want done at once, due 30 days later", r)
		}
	}
	if kinds["export"] != 2 || kinds["correction"] != 1 || kinds["restriction"] != 2 || len(kinds) != 3 {
		t.Fatalf("ledger kinds = %v; want 2 exports, 1 correction, 2 restrictions", kinds)
	}
	if _, open := owner.call("GET", "/api/v1/privacy/requests?open=true", nil); len(open["requests"].([]any)) != 0 {
		t.Fatalf("open requests = %v; want none", open)
	}
	if _, theirs := eve.call("GET", "/api/v1/privacy/requests", nil); len(theirs["requests"].([]any)) != 0 {
		t.Fatalf("another tenant's ledger = %v; want empty", theirs)
	}
	_, audit := owner.call("GET", "/api/v1/audit", nil)
	actions := map[string]int{}
	for _, e := range audit["events"].([]any) {
		actions[e.(map[string]any)["action"].(string)]++
	}
	if actions[AuditVisitorExported] != 2 || actions[AuditVisitorCorrected] != 1 || actions[AuditVisitorRestricted] != 2 {
		t.Fatalf("audit actions = %v", actions)
	}
}

func relogin(t *testing.T, c *client, email string) {
	t.Helper()
	status, out := c.call("POST", "/api/v1/login", map[string]string{"email": email, "password": "correct horse battery"})
	if status != http.StatusOK {
		t.Fatalf("login = %d %v", status, out)
	}
	c.csrf = out["csrf_token"].(string)
}

// TestPrivacyRequestsLedger: a request received by email stays open, its
// days left fall as the clock moves, and done closes it.
func TestPrivacyRequestsLedger(t *testing.T) {
	e := newAccountEnv(t)
	owner, wk := loggedIn(t, e.base, "ada@example.com")
	bob, _ := invitedAgent(t, e.base, owner, "bob@example.com", "agent")
	vid := visitorClient(t, e.base, wk)
	vid.call("POST", "/api/v1/widget/messages", map[string]string{"client_id": "c1", "body": "hi"})
	_, list := vid.call("GET", "/api/v1/widget/conversations", nil)
	visitor := list["conversations"].([]any)[0].(map[string]any)["visitor_id"].(string)

	for _, bad := range []map[string]string{
		{"kind": "gossip"},
		{"kind": "deletion", "visitor_id": "not-an-id"},
		{"kind": "deletion", "visitor_id": "aaaaaaaaaaaaaaaaaaaaaaaaaa"},
	} {
		if status, out := owner.call("POST", "/api/v1/privacy/requests", bad); status != http.StatusBadRequest {
			t.Fatalf("POST privacy request %v = %d %v; want 400", bad, status, out)
		}
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/api/v1/privacy/requests"}, {"POST", "/api/v1/privacy/requests"},
	} {
		if status, out := bob.call(c.method, c.path, map[string]string{"kind": "deletion"}); status != http.StatusForbidden {
			t.Fatalf("an agent's %s %s = %d %v; want 403", c.method, c.path, status, out)
		}
	}

	status, first := owner.call("POST", "/api/v1/privacy/requests", map[string]string{"kind": "deletion", "visitor_id": visitor, "note": "asked by email"})
	if status != http.StatusCreated || first["done_at"] != nil || first["days_left"] != float64(30) || first["note"] != "asked by email" || first["visitor_id"] != visitor {
		t.Fatalf("POST privacy request = %d %v; want 201, open, 30 days left", status, first)
	}
	e.clock.Add(time.Hour)
	status, second := owner.call("POST", "/api/v1/privacy/requests", map[string]string{"kind": "export", "note": "by phone, visitor unknown yet"})
	if status != http.StatusCreated || second["visitor_id"] != nil {
		t.Fatalf("POST privacy request without a visitor = %d %v", status, second)
	}

	e.clock.Add(10 * 24 * time.Hour)
	_, open := owner.call("GET", "/api/v1/privacy/requests?open=true", nil)
	reqs := open["requests"].([]any)
	if len(reqs) != 2 || reqs[0].(map[string]any)["id"] != second["id"] || reqs[1].(map[string]any)["days_left"] != float64(20) {
		t.Fatalf("open requests 10 days on = %v; want both, newest first, the first with 20 days left", open)
	}
	e.clock.Add(21 * 24 * time.Hour)
	relogin(t, owner, "ada@example.com") // sessions do not last a month
	relogin(t, bob, "bob@example.com")
	status, open = owner.call("GET", "/api/v1/privacy/requests?open=true", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /api/v1/privacy/requests 31 days on = %d %v", status, open)
	}
	if left := open["requests"].([]any)[1].(map[string]any)["days_left"]; left != float64(-1) {
		t.Fatalf("days left 31 days on = %v; want -1 (late)", left)
	}

	// The operator sees both late, whatever the tenant.
	late, err := e.api.OverdueRequests(context.Background())
	if err != nil || len(late) != 2 || late[0].DaysLate != 1 || late[0].Kind == "" || late[0].Organization == "" {
		t.Fatalf("overdue requests 31 days on = %+v, %v; want both, 1 day late", late, err)
	}

	eve, _ := loggedIn(t, e.base, "eve@example.com")
	if status, _ := eve.call("POST", "/api/v1/privacy/requests/"+first["id"].(string)+"/done", nil); status != http.StatusNotFound {
		t.Fatalf("another tenant closes = %d; want 404", status)
	}
	if status, out := bob.call("POST", "/api/v1/privacy/requests/"+first["id"].(string)+"/done", nil); status != http.StatusForbidden {
		t.Fatalf("an agent closes = %d %v; want 403", status, out)
	}
	status, done := owner.call("POST", "/api/v1/privacy/requests/"+first["id"].(string)+"/done", nil)
	if status != http.StatusOK || done["done_at"] == nil || done["days_left"] != nil {
		t.Fatalf("done = %d %v; want closed", status, done)
	}
	if late, _ := e.api.OverdueRequests(context.Background()); len(late) != 1 || late[0].RequestID != second["id"] {
		t.Fatalf("overdue requests after one was done = %+v; want the other", late)
	}
	e.clock.Add(time.Hour)
	if _, again := owner.call("POST", "/api/v1/privacy/requests/"+first["id"].(string)+"/done", nil); again["done_at"] != done["done_at"] {
		t.Fatalf("done again = %v; want the first done_at %v", again, done["done_at"])
	}
	_, open = owner.call("GET", "/api/v1/privacy/requests?open=true", nil)
	if reqs := open["requests"].([]any); len(reqs) != 1 || reqs[0].(map[string]any)["id"] != second["id"] {
		t.Fatalf("open requests after done = %v; want the second only", open)
	}
	if _, all := owner.call("GET", "/api/v1/privacy/requests", nil); len(all["requests"].([]any)) != 2 {
		t.Fatalf("all requests = %v; want both", all)
	}
}
