package transport

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/cluster/admin"
)

// TestPolicyNotice: a date 13 days out is refused and 14 accepted (from
// the API's clock, late in the day); the owners of both tenants, and no
// one else, receive the email; GET /api/v1/policy and every page announce
// the change until it is 30 days old.
func TestPolicyNotice(t *testing.T) {
	e := newAccountEnv(t)
	e.signup("ada@example.com")
	e.signup("grace@example.com")
	owner := newClient(t, e.base)
	e.login(owner, "ada@example.com", goodPassword)
	invitedAgent(t, e.base, owner, "bob@example.com", "agent")
	e.api.WaitMail()
	before := len(e.mails())

	y, m, d := e.clock.Now().UTC().Date()
	e.clock.Add(time.Date(y, m, d, 23, 30, 0, 0, time.UTC).Sub(e.clock.Now())) // late in the day: the rule counts dates, not hours
	day := func(n int) string { return time.Date(y, m, d+n, 0, 0, 0, 0, time.UTC).Format(time.DateOnly) }
	ctx := context.Background()
	for _, bad := range []admin.PolicyPublish{
		{EffectiveDate: day(13), Summary: "We keep chats for 6 months."},
		{EffectiveDate: "next month", Summary: "We keep chats for 6 months."},
		{EffectiveDate: day(20), Summary: ""},
		{EffectiveDate: day(20), Summary: "ok", URL: "javascript:alert(1)"},
	} {
		if _, err := e.api.PublishPolicy(ctx, bad); !errors.Is(err, admin.ErrInvalid) {
			t.Fatalf("PublishPolicy(%+v) = %v; want ErrInvalid", bad, err)
		}
	}
	if _, err := e.api.PublishPolicy(ctx, admin.PolicyPublish{EffectiveDate: day(13), Summary: "x"}); err == nil || !strings.Contains(err.Error(), "at least 14 days") || !strings.Contains(err.Error(), day(14)) {
		t.Fatalf("13 days out = %v; want the rule and the earliest date %s", err, day(14))
	}
	if status, out := newClient(t, e.base).call("GET", "/api/v1/policy", nil); status != http.StatusOK || out["notice"] != nil {
		t.Fatalf("GET /api/v1/policy before = %d %v; want no notice", status, out)
	}

	res, err := e.api.PublishPolicy(ctx, admin.PolicyPublish{EffectiveDate: day(14), Summary: "We keep chats for 6 months.", URL: "https://chatpacket.test/privacy"})
	if err != nil || !res.Done || res.Owners != 2 || res.Sent != 2 || res.Failed != 0 {
		t.Fatalf("PublishPolicy 14 days out = %+v, %v; want done, 2 owners emailed", res, err)
	}
	got := map[string]string{}
	for _, m := range e.mails()[before:] {
		got[m.to] = m.subject
		if !strings.Contains(m.text, "We keep chats for 6 months.") || !strings.Contains(m.text, "https://chatpacket.test/privacy") {
			t.Errorf("mail to %s = %q", m.to, m.text)
		}
	}
	if len(got) != 2 || !strings.HasPrefix(got["ada@example.com"], "Our privacy policy changes on") || got["grace@example.com"] == "" {
		t.Fatalf("policy mails = %v; want one to each owner, none to the agent", got)
	}

	anon := newClient(t, e.base)
	status, out := anon.call("GET", "/api/v1/policy", nil)
	notice, _ := out["notice"].(map[string]any)
	if status != http.StatusOK || notice["effective_date"] != day(14) || notice["state"] != "upcoming" || notice["url"] != "https://chatpacket.test/privacy" {
		t.Fatalf("GET /api/v1/policy = %d %v; want the upcoming notice", status, out)
	}
	for _, c := range []*client{anon, owner} {
		path := "/signup"
		if c == owner {
			path = "/app/account"
		}
		if _, page := c.page(path); !strings.Contains(page, `id="policy-banner"`) || !strings.Contains(page, "Our privacy policy changes on") ||
			!strings.Contains(page, "We keep chats for 6 months.") {
			t.Fatalf("%s shows no banner:\n%s", path, page)
		}
	}

	e.clock.Add(15 * 24 * time.Hour)
	if _, out := anon.call("GET", "/api/v1/policy", nil); out["notice"].(map[string]any)["state"] != "changed" {
		t.Fatalf("after the date: %v; want changed", out)
	}
	if _, page := owner.page("/app"); !strings.Contains(page, "Our privacy policy changed on") {
		t.Fatalf("the inbox does not say the policy changed")
	}
	e.clock.Add(30 * 24 * time.Hour)
	if _, out := anon.call("GET", "/api/v1/policy", nil); out["notice"] != nil {
		t.Fatalf("30 days after the date: %v; want no notice", out)
	}
	if notices, err := e.api.PolicyNotices(ctx); err != nil || len(notices) != 1 || notices[0].State != "changed" {
		t.Fatalf("PolicyNotices = %+v, %v; want the one, changed", notices, err)
	}
}
