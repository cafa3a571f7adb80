package transport

import (
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestDashboardDeleteOrganization: on the Account page an owner deletes
// the organization after typing its name; every page (the Analytics page
// here) then shows the banner, the Account page the countdown and the cancel button, which
// brings everything back.
func TestDashboardDeleteOrganization(t *testing.T) {
	base := apiServer(t)
	b := newBrowser(t)
	tab := b.Tab()
	const wait = 10 * time.Second
	signUpInPage(t, tab, base, "Acme Shoes", "Ada Lovelace", "ada@acme.example")
	do(t, tab, "open the account page", chromedp.Navigate(base+"/app/account"))
	waitEval(t, tab, `!!document.querySelector("#del-form")`, wait)
	if eval[bool](t, tab, `!!document.querySelector("#terminating-banner")`) {
		t.Fatal("a banner before any deletion")
	}
	do(t, tab, "confirm with a wrong name",
		chromedp.SendKeys(chromedp.CSS("#del-confirm"), "Acme"),
		chromedp.Click(chromedp.CSS(`#del-form button[type="submit"]`)),
	)
	waitText(t, tab, "#del-error", "exactly", wait)
	do(t, tab, "confirm with the name",
		chromedp.SendKeys(chromedp.CSS("#del-confirm"), " Shoes"),
		chromedp.Click(chromedp.CSS(`#del-form button[type="submit"]`)),
	)
	waitText(t, tab, "#del-countdown", "in 29 days and 23 hours", wait)
	screenshot(t, tab, "delete-organization")
	do(t, tab, "open the analytics page", chromedp.Navigate(base+"/app/analytics"))
	waitText(t, tab, "#terminating-banner", "will be deleted on", wait)
	waitText(t, tab, "#an-total", "0 page views", wait)
	screenshot(t, tab, "analytics-terminating")
	do(t, tab, "cancel from the banner", chromedp.Click(chromedp.CSS(`#terminating-banner a`)))
	waitEval(t, tab, `!!document.querySelector("#del-cancel")`, wait)
	do(t, tab, "cancel", chromedp.Click(chromedp.CSS("#del-cancel")))
	waitEval(t, tab, `!!document.querySelector("#del-form") && !document.querySelector("#terminating-banner")`, wait)
}

// TestWidgetShowsNothingWhileTerminating: on a business's page the widget
// of a live organization shows its launcher; once the organization is
// being deleted its frame loads the 410 and the loader keeps it hidden.
func TestWidgetShowsNothingWhileTerminating(t *testing.T) {
	base := apiServer(t)
	_, liveKey := loggedIn(t, base, "live@example.com")
	gone, goneKey := loggedIn(t, base, "gone@example.com")
	if status, out := gone.call("POST", "/api/v1/account/terminate", nil); status != http.StatusAccepted {
		t.Fatalf("terminate = %d %v; want 202", status, out)
	}
	site := hostSite(t, map[string]string{"/live": hostPage("Live", base, liveKey), "/gone": hostPage("Gone", base, goneKey)})
	b := newBrowser(t)
	tab := b.Tab()
	const wait = 10 * time.Second
	const visibility = `getComputedStyle(document.getElementById("chatpacket-frame")).visibility`
	do(t, tab, "open the live page", chromedp.Navigate(site+"/live"))
	waitEval(t, tab, `!!document.getElementById("chatpacket-frame") && `+visibility+` === "visible"`, wait)
	do(t, tab, "open the page of the organization being deleted", chromedp.Navigate(site+"/gone"))
	// The frame's document is the 410 answer, which runs no script: once it
	// has loaded, nothing can make the frame ready any more.
	waitEval(t, tab, `performance.getEntriesByType("resource").some(e => e.initiatorType === "iframe" && e.name.includes("/widget/frame"))`, wait)
	if v := eval[string](t, tab, visibility); v != "hidden" {
		t.Fatalf("the frame of a terminating organization is %s; want hidden", v)
	}
}
