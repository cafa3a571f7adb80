package transport

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
)

// viewsOn answers the page views of one day through the API.
func viewsOn(t *testing.T, c *client, day time.Time) int {
	t.Helper()
	d := day.UTC().Format(time.DateOnly)
	status, out := c.call("GET", "/api/v1/analytics?from="+d+"&to="+d, nil)
	if status != http.StatusOK {
		t.Fatalf("GET /api/v1/analytics for %s = %d %v", d, status, out)
	}
	days := out["days"].([]any)
	if len(days) != 1 {
		t.Fatalf("analytics for %s = %v; want one day", d, out)
	}
	return int(days[0].(map[string]any)["page_views"].(float64))
}

// TestAnalyticsAPIAndRetention: page views read per day, with their top
// paths, referrers and devices and nothing personal; a retention pass
// shreds the views of 13 months ago and keeps those of 11 months ago; bad
// ranges are refused.
func TestAnalyticsAPIAndRetention(t *testing.T) {
	e := newAccountEnv(t)
	s := retentionOf(t, e)
	owner, wk := loggedIn(t, e.base, "ada@example.com")
	status, sess := newClient(t, e.base).call("POST", "/api/v1/widget/sessions", map[string]string{"widget_key": wk})
	if status != http.StatusOK {
		t.Fatalf("widget session = %d %v", status, sess)
	}
	visitor, err := storage.ParseID(sess["visitor_id"].(string))
	if err != nil {
		t.Fatal(err)
	}
	tenant, _ := agentIDsOf(t, e, "ada@example.com")
	now := e.clock.Now()
	old, kept := now.AddDate(0, -13, 0), now.AddDate(0, -11, 0)
	for i, at := range []time.Time{old, kept, now, now} {
		if _, err := e.node.Machine.Apply(context.Background(), &actorspb.Command{Op: &actorspb.Command_AddPageView{AddPageView: &actorspb.AddPageView{
			TenantId: tenant[:], VisitorId: visitor[:], EventId: []byte(fmt.Sprintf("event-%02d", i)),
			View: &actorspb.PageViewRecord{Url: "https://shop.example/p?email=ann@example.com", Referrer: "https://news.example/a", UnixMs: at.UnixMilli()},
		}}}); err != nil {
			t.Fatal(err)
		}
	}
	if viewsOn(t, owner, old) != 1 || viewsOn(t, owner, kept) != 1 || viewsOn(t, owner, now) != 2 {
		t.Fatalf("views 13/11/0 months ago = %d/%d/%d; want 1/1/2", viewsOn(t, owner, old), viewsOn(t, owner, kept), viewsOn(t, owner, now))
	}
	_, out := owner.call("GET", "/api/v1/analytics", nil)
	if out["page_views"] != 2.0 || len(out["days"].([]any)) != DefaultAnalyticsDays {
		t.Fatalf("default analytics = %v; want the last %d days, 2 views", out, DefaultAnalyticsDays)
	}
	for field, want := range map[string]string{"paths": "/p", "referrers": "news.example", "devices": "desktop"} {
		top := out[field].([]any)
		if len(top) != 1 || top[0].(map[string]any)["name"] != want {
			t.Fatalf("%s = %v; want %s alone", field, top, want)
		}
	}

	if st, err := s.RunOnce(context.Background()); err != nil || st.MonthsShredded != 1 {
		t.Fatalf("retention pass = %+v, %v; want one month shredded", st, err)
	}
	if viewsOn(t, owner, old) != 0 || viewsOn(t, owner, kept) != 1 || viewsOn(t, owner, now) != 2 {
		t.Fatalf("after retention, views 13/11/0 months ago = %d/%d/%d; want 0/1/2", viewsOn(t, owner, old), viewsOn(t, owner, kept), viewsOn(t, owner, now))
	}

	resp, err := owner.http.Get(e.base + "/app/analytics")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "<strong>2</strong> page views") ||
		strings.Count(string(page), "<rect ") != DefaultAnalyticsDays || !strings.Contains(string(page), "<td>/p</td>") {
		t.Fatalf("GET /app/analytics = %d:\n%s\nwant 2 page views, %d bars and /p on top", resp.StatusCode, page, DefaultAnalyticsDays)
	}

	for _, q := range []string{"from=2026-13-01", "from=2026-02-02&to=2026-02-01", "from=2024-01-01&to=2026-01-01", "to=yesterday"} {
		if status, out := owner.call("GET", "/api/v1/analytics?"+q, nil); status != http.StatusBadRequest || errCode(out) != "invalid_range" {
			t.Fatalf("GET /api/v1/analytics?%s = %d %v; want 400 invalid_range", q, status, out)
		}
	}
	if status, _ := newClient(t, e.base).call("GET", "/api/v1/analytics", nil); status != http.StatusUnauthorized {
		t.Fatalf("analytics without a session = %d; want 401", status)
	}
}
