package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/storage"
	"github.com/pquerna/otp/totp"
)

// TestAccountExport: the owner's export holds the settings, the team, the
// pending invitation, every visitor (with and without conversations, an
// erased one as erased) with every page view and contact field, every
// message of every conversation with the notes marked; it holds no secret;
// it streams one line per conversation and visitor, as many as its header
// announced; an agent is refused.
func TestAccountExport(t *testing.T) {
	old := exportPage
	exportPage = 3 // several pages of everything
	t.Cleanup(func() { exportPage = old })

	e := newAccountEnv(t)
	owner := newClient(t, e.base)
	wk := signupWidgetKey(t, owner, "ada@example.com")
	e.login(owner, "ada@example.com", goodPassword)
	var session string
	for _, c := range owner.http.Jar.Cookies(mustURL(t, e.base)) {
		session = c.Value
	}
	_, setup := owner.call("POST", "/api/v1/2fa/setup", nil)
	secret, _ := setup["secret"].(string)
	code, _ := totp.GenerateCode(secret, e.clock.Now())
	status, enabled := owner.call("POST", "/api/v1/2fa/enable", map[string]string{"code": code})
	recovery, _ := enabled["recovery_codes"].([]any)
	if status != http.StatusOK || len(recovery) == 0 || session == "" {
		t.Fatalf("2fa enable = %d %v (session %t)", status, enabled, session != "")
	}
	if status, out := owner.call("PATCH", "/api/v1/settings", map[string]any{"widget_greeting": "Hi from Acme"}); status != http.StatusOK {
		t.Fatalf("PATCH settings = %d %v", status, out)
	}
	_, tok := owner.call("POST", "/api/v1/tokens", map[string]string{"name": "export script"})
	apiToken, _ := tok["token"].(string)
	bob, _ := invitedAgent(t, e.base, owner, "bob@example.com", "agent")
	_, inv := owner.call("POST", "/api/v1/invitations", map[string]string{"email": "zoe@example.com", "role": "admin"})
	inviteToken, _ := inv["token"].(string)
	if apiToken == "" || inviteToken == "" {
		t.Fatalf("token %v, invitation %v", tok, inv)
	}

	grace, graceConvs := chattyVisitor(t, e.base, wk, owner)
	alan, alanConvs := chattyVisitor(t, e.base, wk, owner)
	_, silent := owner.call("POST", "/api/v1/widget/sessions", map[string]string{"widget_key": wk})
	_, gone := owner.call("POST", "/api/v1/widget/sessions", map[string]string{"widget_key": wk})
	silentID, goneID := silent["visitor_id"].(string), gone["visitor_id"].(string)
	tenant, _ := agentIDsOf(t, e, "ada@example.com")
	goneVisitor, _ := storage.ParseID(goneID)
	if err := e.node.Machine.Shred(context.Background(), goneVisitor, e.clock.Now(), storage.SubjectKey(tenant, goneVisitor).ID); err != nil {
		t.Fatal(err)
	}

	// A visitor from before the tenant's visitor index: no entry. The
	// export finds it through its conversations.
	preIndex, _ := storage.ParseID(grace)
	b := e.node.DB.NewBatch()
	defer b.Close()
	if err := b.Delete(storage.Key(storage.ShardOf(preIndex[:], e.node.DB.Shards()), shard.TableTenantVisitor, tenant[:], preIndex[:])); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if listed, err := e.node.Machine.TenantVisitorListed(context.Background(), tenant, preIndex); err != nil || listed {
		t.Fatalf("TenantVisitorListed after the delete = %t, %v; want false", listed, err)
	}

	if _, page := owner.page("/app/account"); !strings.Contains(page, `id="export-all" href="/api/v1/account/export"`) {
		t.Fatalf("the owner's Account page has no export link")
	}
	if _, page := bob.page("/app/account"); strings.Contains(page, `id="export-all"`) {
		t.Fatalf("an agent's Account page offers the export")
	}
	if status, out := bob.call("GET", "/api/v1/account/export", nil); status != http.StatusForbidden {
		t.Fatalf("export by an agent = %d %v; want 403", status, out)
	}
	if status, out := owner.call("GET", "/api/v1/account/export", nil); status != http.StatusOK || out["format"] != AccountExportFormat {
		t.Fatalf("export with the session = %d %v; want 200", status, out["format"])
	}

	req, _ := http.NewRequest("GET", e.base+"/api/v1/account/export", nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("export with a token = %d, %v; want 200", resp.StatusCode, err)
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment;") {
		t.Fatalf("Content-Disposition = %q; want an attachment", cd)
	}
	// The count comes from the index: it misses the old visitor, which is
	// exported all the same.
	items, _ := strconv.Atoi(resp.Header.Get(HeaderExportItems))
	if items != 7 || bytes.Count(body, []byte("\n")) != items+2 {
		t.Fatalf("%s = %q and %d lines; want 7 items (4 conversations, 3 indexed visitors), a line each, the old visitor's and the last",
			HeaderExportItems, resp.Header.Get(HeaderExportItems), bytes.Count(body, []byte("\n")))
	}

	for name, s := range map[string]string{
		"password": goodPassword, "session token": session, "TOTP secret": secret, "recovery code": recovery[0].(string),
		"API token": apiToken, "invitation token": inviteToken, "CSRF token": owner.csrf, "password hash": "$argon2id$",
	} {
		if bytes.Contains(bytes.ToLower(body), []byte(strings.ToLower(s))) {
			t.Errorf("the export holds the %s", name)
		}
	}

	var ex struct {
		Format   string
		TenantID string `json:"tenant_id"`
		Counts   map[string]int
		Tenant   map[string]any
		Agents   []struct {
			Email, Role string
			TwoFactor   bool `json:"two_factor"`
		}
		Teams       []any
		Invitations []struct{ Email, Role string }
		Visitors    []struct {
			ID              string
			Erased          bool
			Contact         map[string]string
			Technical       map[string]string
			PageViews       []map[string]string `json:"page_views"`
			ConversationIDs []string            `json:"conversation_ids"`
		}
		Conversations []struct {
			ID        string
			VisitorID string `json:"visitor_id"`
			Messages  []struct {
				Body     string
				Internal bool
			}
		}
		AuditLog []struct{ Action string } `json:"audit_log"`
	}
	if err := json.Unmarshal(body, &ex); err != nil {
		t.Fatalf("the export is not JSON: %v", err)
	}
	if ex.Format != AccountExportFormat || ex.TenantID != tenant.String() || ex.Tenant["widget_greeting"] != "Hi from Acme" || ex.Tenant["name"] != "Acme" ||
		ex.Counts["conversations"] != 4 || ex.Counts["visitors"] != 3 || len(ex.Visitors) != 4 {
		t.Fatalf("export head = %s %s %v %v", ex.Format, ex.TenantID, ex.Tenant, ex.Counts)
	}
	roles := map[string]string{}
	for _, a := range ex.Agents {
		roles[a.Email] = a.Role
		if a.Email == "ada@example.com" && !a.TwoFactor {
			t.Errorf("the owner's two_factor is false")
		}
	}
	if len(ex.Agents) != 2 || roles["ada@example.com"] != "owner" || roles["bob@example.com"] != "agent" {
		t.Fatalf("agents = %+v; want ada the owner, bob an agent", ex.Agents)
	}
	if len(ex.Invitations) != 1 || ex.Invitations[0].Email != "zoe@example.com" || ex.Invitations[0].Role != "admin" {
		t.Fatalf("invitations = %+v; want zoe's only (bob's was accepted)", ex.Invitations)
	}
	visitors := map[string]int{}
	for i, v := range ex.Visitors {
		visitors[v.ID] = i
	}
	for _, want := range []struct {
		id    string
		convs [2]string
	}{{grace, graceConvs}, {alan, alanConvs}} {
		i, ok := visitors[want.id]
		if !ok {
			t.Fatalf("visitor %s is missing", want.id)
		}
		v := ex.Visitors[i]
		if v.Contact["name"] != "Grace" || v.Contact["email"] != "grace@example.com" || v.Technical["browser"] != "Firefox" || len(v.PageViews) != 60 ||
			v.PageViews[59]["url"] != "https://shop.example/p/59" || len(v.ConversationIDs) != 2 {
			t.Fatalf("visitor %s = %+v", want.id, v)
		}
	}
	if i, ok := visitors[silentID]; !ok || ex.Visitors[i].Erased {
		t.Fatalf("the visitor without conversations is missing")
	}
	if i, ok := visitors[goneID]; !ok || !ex.Visitors[i].Erased || ex.Visitors[i].Contact != nil {
		t.Fatalf("the erased visitor = %+v; want {id, erased}", ex.Visitors)
	}
	if len(ex.Conversations) != 4 {
		t.Fatalf("%d conversations; want 4", len(ex.Conversations))
	}
	for _, c := range ex.Conversations {
		var got []string
		for _, m := range c.Messages {
			got = append(got, fmt.Sprintf("%s/%t", m.Body, m.Internal))
		}
		i := strings.TrimPrefix(strings.Join(got, " "), "hello ")[:1]
		if want := fmt.Sprintf("hello %[1]s/false reply %[1]s/false secret note %[1]s/true thanks %[1]s/false", i); strings.Join(got, " ") != want {
			t.Fatalf("conversation %s messages = %s; want %s", c.ID, strings.Join(got, " "), want)
		}
	}
	exported := false
	for _, a := range ex.AuditLog {
		exported = exported || a.Action == AuditAccountExported
	}
	if !exported || len(ex.AuditLog) < 3 {
		t.Fatalf("audit log = %+v; want its events and the export", ex.AuditLog)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
