package transport

import (
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestDashboardPrivacy: an owner erases a visitor from the conversation's
// visitor pane, sees their messages as erased, finds the erasure on the
// Privacy page, and records a request received by phone, open with its
// 30 days.
func TestDashboardPrivacy(t *testing.T) {
	base := apiServer(t)
	b := newBrowser(t)
	tab := b.Tab()
	const wait = 10 * time.Second

	signUpInPage(t, tab, base, "Acme Privacy", "Olive Owner", "olive@acme.example")
	waitText(t, tab, "#conn-status", "Live", wait)

	owner := newClient(t, base)
	status, out := owner.call("POST", "/api/v1/login", map[string]string{"email": "olive@acme.example", "password": "correct horse battery"})
	if status != http.StatusOK {
		t.Fatalf("login = %d %v", status, out)
	}
	owner.csrf = out["csrf_token"].(string)
	_, settings := owner.call("GET", "/api/v1/settings", nil)
	vid, v := newVisitor(t, base, settings["widget_key"].(string))
	conv := visitorPosts(t, v, "", "c1", "Please forget me")

	waitText(t, tab, "#conversations", "Please forget me", wait)
	do(t, tab, "open the conversation", chromedp.Click(chromedp.CSS(`.conv-item[data-id="`+conv+`"]`)))
	waitText(t, tab, "#messages", "Please forget me", wait)
	waitEval(t, tab, `!document.getElementById("v-privacy").hidden && document.getElementById("v-export").href.endsWith("/api/v1/visitors/`+vid+`/export")`, wait)
	do(t, tab, "erase the visitor, confirming",
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(chromedp.CSS("#v-erase")),
	)
	waitText(t, tab, "#v-name", "Erased at the visitor’s request", wait)
	waitText(t, tab, "#messages", "(erased at the visitor’s request)", wait)
	waitEval(t, tab, `!document.getElementById("messages").textContent.includes("Please forget me") && document.getElementById("v-privacy").hidden`, wait)
	if status, _ := v.call("GET", "/api/v1/widget/conversations", nil); status != http.StatusUnauthorized {
		t.Errorf("the erased visitor's token = %d; want 401", status)
	}

	do(t, tab, "open the Privacy page", chromedp.Click(chromedp.CSS(`a[href="/app/privacy"]`)))
	waitEval(t, tab, `location.pathname === "/app/privacy"`, wait)
	waitEval(t, tab, `!document.getElementById("requests-empty").hidden`, wait) // nothing open: the erasure is done
	do(t, tab, "show every request", chromedp.Click(chromedp.CSS("#open-only")))
	waitText(t, tab, "#request-rows", "Erasure", wait)
	waitText(t, tab, "#request-rows", vid, wait)
	waitText(t, tab, "#request-rows", "Done", wait)

	do(t, tab, "record a request received by phone",
		chromedp.SetValue(chromedp.CSS("#request-kind"), "export"),
		chromedp.SendKeys(chromedp.CSS("#request-note"), "asked by phone"),
		chromedp.Click(chromedp.CSS(`#request-form button[type="submit"]`)),
	)
	waitText(t, tab, "#request-rows", "asked by phone", wait)
	waitText(t, tab, "#request-rows", "30 days left", wait)
	screenshot(t, tab, "privacy")
}
