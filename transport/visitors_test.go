package transport

import (
	"net/http"
	"testing"
)

func TestParseUserAgent(t *testing.T) {
	for _, c := range []struct{ ua, browser, os string }{
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36", "Chrome", "Windows"},
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0", "Edge", "Windows"},
		{"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15", "Safari", "macOS"},
		{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", "Safari", "iOS"},
		{"Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0", "Firefox", "Linux"},
		{"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36", "Chrome", "Android"},
		{"curl/8.5.0", "", ""},
	} {
		if b, o := parseUserAgent(c.ua); b != c.browser || o != c.os {
			t.Errorf("parseUserAgent(%.40q…) = %q, %q; want %q, %q", c.ua, b, o, c.browser, c.os)
		}
	}
}

// TestVisitorPanel: a visitor's session records its browser and OS, its
// socket reports pages, and the tenant's agent sees them, newest first;
// another tenant's agent does not.
func TestVisitorPanel(t *testing.T) {
	base := apiServer(t)
	agent, wk := loggedIn(t, base, "ada@example.com")

	req, _ := http.NewRequest("POST", base+"/api/v1/widget/sessions", jsonBody(map[string]string{"widget_key": wk}))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sess := decodeBody(t, resp)
	vid := sess["visitor_id"].(string)

	vs := dialSocket(t, base, "/ws/widget?token="+sess["visitor_token"].(string), nil)
	vs.send(map[string]string{"type": "page_view", "url": "https://shop.example/", "title": "Home"})
	vs.send(map[string]string{"type": "page_view", "url": "https://shop.example/pricing", "title": "Pricing"})
	vs.send(map[string]string{"type": "page_view"})
	if e := vs.next("error"); e["code"] != "invalid" {
		t.Fatalf("page_view without a url = %v; want an invalid error frame", e)
	}

	vc := newClient(t, base)
	vc.auth = sess["visitor_token"].(string)
	if status, out := vc.call("POST", "/api/v1/widget/contact", map[string]string{"name": "Grace", "email": "not an email"}); status != http.StatusBadRequest {
		t.Fatalf("contact with a bad email = %d %v; want 400", status, out)
	}
	if status, out := vc.call("POST", "/api/v1/widget/contact", map[string]string{"name": "Grace", "email": "grace@example.com"}); status != http.StatusNoContent {
		t.Fatalf("contact = %d %v; want 204", status, out)
	}

	status, v := agent.call("GET", "/api/v1/visitors/"+vid, nil)
	views, _ := v["page_views"].([]any)
	if status != http.StatusOK || v["browser"] != "Firefox" || v["os"] != "Linux" || len(views) != 2 ||
		views[0].(map[string]any)["title"] != "Pricing" || v["name"] != "Grace" || v["email"] != "grace@example.com" {
		t.Fatalf("visitor = %d %v; want Firefox on Linux, two pages newest first, and the contact given", status, v)
	}
	eve, _ := loggedIn(t, base, "eve@example.com")
	if status, _ := eve.call("GET", "/api/v1/visitors/"+vid, nil); status != http.StatusNotFound {
		t.Fatalf("another tenant's agent = %d; want 404", status)
	}
}
