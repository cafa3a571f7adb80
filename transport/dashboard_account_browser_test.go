package transport

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/transport/mail"
	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"
)

// mailLink waits for an email to to whose subject contains subject and
// returns the link of path ("verify", "reset") it holds. seen keeps the
// outbox files already returned, so a later call finds a later email.
func mailLink(t *testing.T, outbox *mail.Outbox, seen map[string]bool, to, subject, path string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		files, err := outbox.List()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if seen[f] {
				continue
			}
			m := readMail(t, f)
			if m.to != to || !strings.Contains(m.subject, subject) {
				continue
			}
			seen[f] = true
			found := linkToken.FindStringSubmatch(m.text)
			if found == nil || found[2] != path {
				t.Fatalf("email %q has no /%s link:\n%s", m.subject, path, m.text)
			}
			return found[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no email to %s about %q in the outbox within 10s", to, subject)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// totpCode is the code of secret at time at.
func totpCode(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	code, err := totp.GenerateCode(secret, at)
	if err != nil {
		t.Fatalf("totp.GenerateCode: %v", err)
	}
	return code
}

// TestDashboardAccount walks an account's life in chromium: signup, the
// verification link, two-factor set up on the Account page, a login that
// asks for the code, a forgotten password reset through its emailed link,
// and the login history.
func TestDashboardAccount(t *testing.T) {
	base, outbox := apiServerWithMail(t)
	b := newBrowser(t)
	tab := b.Tab()
	const wait = 10 * time.Second
	const email, password, newPassword = "ada@acme.example", "correct horse battery", "a brand new passphrase"
	seen := map[string]bool{}

	do(t, tab, "sign up",
		chromedp.Navigate(base+"/signup"),
		chromedp.SendKeys(chromedp.CSS("#organization"), "Acme Shoes"),
		chromedp.SendKeys(chromedp.CSS("#name"), "Ada Lovelace"),
		chromedp.SendKeys(chromedp.CSS("#email"), email),
		chromedp.SendKeys(chromedp.CSS("#password"), password),
		chromedp.Click(chromedp.CSS(`#signup-form button[type="submit"]`)),
	)
	waitEval(t, tab, `location.pathname === "/app"`, wait)

	// Unverified at first; the emailed link verifies.
	do(t, tab, "open the account page", chromedp.Click(chromedp.CSS(`nav a[href="/app/account"]`)))
	waitEval(t, tab, `location.pathname === "/app/account"`, wait)
	waitText(t, tab, "#acct-email", email, wait)
	waitText(t, tab, "#unverified", "not verified yet", wait)
	do(t, tab, "ask for the link again", chromedp.Click(chromedp.CSS("#resend-verify")))
	waitText(t, tab, "#resend-status", "Sent", wait)
	do(t, tab, "open the verification link", chromedp.Navigate(mailLink(t, outbox, seen, email, "Verify", "verify")))
	waitText(t, tab, "#verify-status", "Your email is verified", wait)
	do(t, tab, "back to the account page", chromedp.Navigate(base+"/app/account"))
	waitText(t, tab, "#tf-state", "is off", wait)
	if eval[bool](t, tab, `!!document.getElementById("unverified")`) {
		t.Error("the account page still says the email is not verified")
	}

	// Two-factor: the QR and the key, a code from the key, ten recovery
	// codes.
	do(t, tab, "set up two-factor", chromedp.Click(chromedp.CSS("#tf-setup")))
	waitEval(t, tab, `document.getElementById("tf-qr").src.startsWith("data:image/png;base64,iVBOR") && document.getElementById("tf-qr").naturalWidth > 0`, wait)
	waitEval(t, tab, `document.getElementById("tf-secret").textContent.length >= 16`, wait)
	secret := eval[string](t, tab, `document.getElementById("tf-secret").textContent`)
	do(t, tab, "enter a wrong code",
		chromedp.SendKeys(chromedp.CSS("#tf-code"), "000000"),
		chromedp.Click(chromedp.CSS(`#tf-enable-form button[type="submit"]`)),
	)
	waitText(t, tab, "#tf-enable-error", "wrong", wait)
	do(t, tab, "enter the code",
		chromedp.SetValue(chromedp.CSS("#tf-code"), totpCode(t, secret, time.Now())),
		chromedp.Click(chromedp.CSS(`#tf-enable-form button[type="submit"]`)),
	)
	waitText(t, tab, "#tf-state", "is on", wait)
	waitEval(t, tab, `document.getElementById("recovery-codes").textContent.split("\n").length === 10`, wait)
	recovery := strings.Split(eval[string](t, tab, `document.getElementById("recovery-codes").textContent`), "\n")
	if eval[bool](t, tab, `!document.getElementById("tf-disable-form").hidden`) != true {
		t.Error("with two-factor on, the page offers no way to turn it off")
	}
	do(t, tab, "scroll to two-factor", chromedp.Evaluate[chromedp.Void](`document.getElementById("two-factor").scrollIntoView()`))
	screenshot(t, tab, "account")

	// Log out, log in: the code field appears after the password.
	do(t, tab, "log out", chromedp.Click(chromedp.CSS("#logout")))
	waitEval(t, tab, `location.pathname === "/login"`, wait)
	do(t, tab, "log in with the password",
		chromedp.SendKeys(chromedp.CSS("#email"), email),
		chromedp.SendKeys(chromedp.CSS("#password"), password),
		chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)),
	)
	waitEval(t, tab, `!document.getElementById("totp-row").hidden && document.activeElement.id === "totp"`, wait)
	if !eval[bool](t, tab, `document.getElementById("form-error").hidden`) {
		t.Error("the code field comes with an error; it is a second step, not a mistake")
	}
	// The code that turned two-factor on is spent; the next step's is
	// accepted (one step of skew), and later than the last used.
	do(t, tab, "enter the next code",
		chromedp.SendKeys(chromedp.CSS("#totp"), totpCode(t, secret, time.Now().Add(30*time.Second))),
		chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)),
	)
	waitEval(t, tab, `location.pathname === "/app"`, wait)
	waitText(t, tab, "#me-name", "Ada Lovelace", wait)
	do(t, tab, "log out again", chromedp.Click(chromedp.CSS("#logout")))
	waitEval(t, tab, `location.pathname === "/login"`, wait)

	// Forgot the password: the link from the login page, then the emailed
	// one.
	do(t, tab, "follow Forgot your password?", chromedp.Click(chromedp.CSS("#forgot-link")))
	waitEval(t, tab, `location.pathname === "/forgot"`, wait)
	do(t, tab, "ask for a reset link",
		chromedp.SendKeys(chromedp.CSS("#email"), email),
		chromedp.Click(chromedp.CSS(`#forgot-form button[type="submit"]`)),
	)
	waitText(t, tab, "#forgot-done", "If an account exists", wait)
	resetLink := mailLink(t, outbox, seen, email, "Reset", "reset")
	if !strings.HasPrefix(resetLink, base+"/reset?token=") {
		t.Fatalf("reset link %s; want one to %s/reset", resetLink, base)
	}
	do(t, tab, "open the reset link", chromedp.Navigate(resetLink))
	do(t, tab, "mistype the second password",
		chromedp.SendKeys(chromedp.CSS("#password"), newPassword),
		chromedp.SendKeys(chromedp.CSS("#password2"), newPassword+"!"),
		chromedp.Click(chromedp.CSS(`#reset-form button[type="submit"]`)),
	)
	waitText(t, tab, "#form-error", "differ", wait)
	do(t, tab, "set the new password",
		chromedp.SetValue(chromedp.CSS("#password2"), newPassword),
		chromedp.Click(chromedp.CSS(`#reset-form button[type="submit"]`)),
	)
	waitText(t, tab, "#reset-login", "Log in with your new password", wait)
	do(t, tab, "go to log in", chromedp.Click(chromedp.CSS("#reset-login")))
	waitEval(t, tab, `location.pathname === "/login"`, wait)
	do(t, tab, "log in with the new password",
		chromedp.SendKeys(chromedp.CSS("#email"), email),
		chromedp.SendKeys(chromedp.CSS("#password"), newPassword),
		chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)),
	)
	waitEval(t, tab, `!document.getElementById("totp-row").hidden`, wait)
	// A wrong code is refused beside the field; a recovery code (the
	// same field) logs in without waiting for the next TOTP step.
	do(t, tab, "enter a wrong code",
		chromedp.SendKeys(chromedp.CSS("#totp"), "123456"),
		chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)),
	)
	waitText(t, tab, "#form-error", "code is wrong", wait)
	do(t, tab, "enter a recovery code",
		chromedp.SetValue(chromedp.CSS("#totp"), recovery[0]),
		chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)),
	)
	waitEval(t, tab, `location.pathname === "/app"`, wait)

	// The old password is gone for good.
	if status, out := newClient(t, base).call("POST", "/api/v1/login", map[string]string{"email": email, "password": password, "totp": recovery[1]}); status != http.StatusUnauthorized {
		t.Fatalf("login with the old password = %d %v; want 401", status, out)
	}

	// The history: the signup's login, the code's and the recovery code's.
	do(t, tab, "open the account page again", chromedp.Navigate(base+"/app/account"))
	waitText(t, tab, "#tf-state", "is on", wait)
	waitEval(t, tab, `document.querySelectorAll("#login-rows tr").length >= 3`, wait)
	waitText(t, tab, "#login-rows", "127.0.0.1", wait)
	if !eval[bool](t, tab, `document.querySelectorAll("#login-rows time[datetime]").length >= 3`) {
		t.Error("login rows carry no time")
	}

	// Log out everywhere ends this session too.
	do(t, tab, "log out everywhere", chromedp.Click(chromedp.CSS("#logout-all")))
	waitEval(t, tab, `location.pathname === "/login"`, wait)
	do(t, tab, "try the app", chromedp.Navigate(base+"/app/account"))
	waitEval(t, tab, `location.pathname === "/login"`, wait)
}

// TestDashboardTeams: an owner creates a team on the team page, adds an
// invited agent, moves a conversation into it from the inbox, and reads
// the audit log.
func TestDashboardTeams(t *testing.T) {
	base := apiServer(t)
	owner, widgetKey := loggedIn(t, base, "ada@example.com")
	status, out := owner.call("POST", "/api/v1/invitations", map[string]string{"email": "grace@example.com", "role": "agent"})
	if status != http.StatusCreated {
		t.Fatalf("invite = %d %v", status, out)
	}
	status, out = newClient(t, base).call("POST", "/api/v1/invitations/"+out["token"].(string)+"/accept", map[string]string{"name": "Grace Hopper", "password": "another good password"})
	if status != http.StatusCreated {
		t.Fatalf("accept = %d %v", status, out)
	}
	grace := out["agent_id"].(string)
	visitor := visitorClient(t, base, widgetKey)
	status, out = visitor.call("POST", "/api/v1/widget/messages", map[string]string{"client_id": "v1", "body": "Where is my invoice?"})
	if status != http.StatusCreated {
		t.Fatalf("visitor post = %d %v", status, out)
	}
	conv := out["conversation_id"].(string)

	b := newBrowser(t)
	tab := b.Tab()
	const wait = 10 * time.Second
	do(t, tab, "log in",
		chromedp.Navigate(base+"/app/team"),
		chromedp.SendKeys(chromedp.CSS("#email"), "ada@example.com"),
		chromedp.SendKeys(chromedp.CSS("#password"), "correct horse battery"),
		chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)),
	)
	waitEval(t, tab, `location.pathname === "/app/team"`, wait)
	waitText(t, tab, "#team-rows", "Grace Hopper", wait)
	waitText(t, tab, "#teams-empty", "No teams yet", wait)

	// Create Billing and put Grace in it.
	do(t, tab, "create a team",
		chromedp.SendKeys(chromedp.CSS("#team-name"), "Billing"),
		chromedp.Click(chromedp.CSS(`#team-form button[type="submit"]`)),
	)
	waitText(t, tab, "#teams .team-card h3", "Billing", wait)
	team := eval[string](t, tab, `document.querySelector("#teams .team-card").dataset.team`)
	do(t, tab, "tick Grace and save",
		chromedp.Click(chromedp.CSS(`.team-card[data-team="`+team+`"] input[value="`+grace+`"]`)),
		chromedp.Click(chromedp.CSS(`.team-card[data-team="`+team+`"] button[data-save]`)),
	)
	waitText(t, tab, `.team-card[data-team="`+team+`"] .status`, "Saved", wait)
	status, out = owner.call("GET", "/api/v1/teams", nil)
	if status != http.StatusOK {
		t.Fatalf("GET teams = %d %v", status, out)
	}
	teams := out["teams"].([]any)
	if len(teams) != 1 || teams[0].(map[string]any)["name"] != "Billing" || !slicesHas(teams[0].(map[string]any)["member_ids"], grace) {
		t.Fatalf("teams = %v; want Billing with Grace", teams)
	}

	// The only owner cannot stop being one: the refusal shows in the row.
	me := eval[string](t, tab, `document.querySelector('meta[name="agent-id"]').content`)
	do(t, tab, "make oneself an agent", chromedp.Evaluate[chromedp.Void](`(() => {
		const s = document.querySelector('#team-rows select[data-agent="`+me+`"]');
		s.value = "agent";
		s.dispatchEvent(new Event("change"));
	})()`))
	waitText(t, tab, `#team-rows tr[data-agent="`+me+`"] .error`, "owner", wait)
	waitEval(t, tab, `document.querySelector('#team-rows select[data-agent="`+me+`"]').value === "owner"`, wait)
	// Grace becomes an admin.
	do(t, tab, "make Grace an admin", chromedp.Evaluate[chromedp.Void](`(() => {
		const s = document.querySelector('#team-rows select[data-agent="`+grace+`"]');
		s.value = "admin";
		s.dispatchEvent(new Event("change"));
	})()`))
	waitForREST(t, wait, "Grace is an admin", func() bool {
		_, out := owner.call("GET", "/api/v1/agents", nil)
		for _, a := range out["agents"].([]any) {
			if a := a.(map[string]any); a["id"] == grace {
				return a["role"] == "admin"
			}
		}
		return false
	})

	// The conversation moves to Billing from the inbox.
	do(t, tab, "open the conversation", chromedp.Navigate(base+"/app?c="+conv))
	waitText(t, tab, "#messages", "Where is my invoice?", wait)
	waitEval(t, tab, `!!document.querySelector('#conv-team option[value="`+team+`"]')`, wait)
	do(t, tab, "choose Billing", chromedp.Evaluate[chromedp.Void](`(() => {
		const s = document.getElementById("conv-team");
		s.value = "`+team+`";
		s.dispatchEvent(new Event("change"));
	})()`))
	waitForREST(t, wait, "the conversation is Billing's", func() bool {
		_, out := owner.call("GET", "/api/v1/conversations?status=all", nil)
		for _, c := range out["conversations"].([]any) {
			if c := c.(map[string]any); c["id"] == conv {
				return c["team_id"] == team
			}
		}
		return false
	})
	if !eval[bool](t, tab, `document.getElementById("conv-error").hidden`) {
		t.Errorf("setting the team shows an error: %s", eval[string](t, tab, `document.getElementById("conv-error").textContent`))
	}

	// The audit log: who changed which team.
	do(t, tab, "open the team page", chromedp.Navigate(base+"/app/team"))
	waitText(t, tab, "#audit-rows", "team_changed", wait)
	waitEval(t, tab, `[...document.querySelectorAll('#audit-rows tr[data-action="team_changed"]')].some(r => r.textContent.includes("Ada") && r.textContent.includes("Grace Hopper"))`, wait)
	waitText(t, tab, "#audit-rows", "role_changed", wait)
	screenshot(t, tab, "team")
}

// slicesHas says whether v (a JSON array) holds s.
func slicesHas(v any, s string) bool {
	list, _ := v.([]any)
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// waitForREST polls ok until it is true, failing after within.
func waitForREST(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %v", what, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
