package transport

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/chatpacket/chatpacket/transport/dashboard"
)

// The agents' dashboard: pages rendered here with the session (so the
// CSRF token, the organization and the agent are in the page before any
// script runs), and the static modules of package dashboard.

// dashboardCSP is every dashboard page's Content-Security-Policy: only
// ChatPacket's own scripts, styles and connections ('self' covers the
// same-host ws: and wss: of /ws/agent), and no framing.
const dashboardCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

const staticPrefix = "/static/dashboard/"

func (a *API) registerDashboard(s *http.ServeMux) {
	s.HandleFunc("GET /{$}", a.dashboardRoot)
	s.HandleFunc("GET /login", a.loggedOutPage("login", "Log in"))
	s.HandleFunc("GET /signup", a.loggedOutPage("signup", "Sign up"))
	s.HandleFunc("GET /forgot", a.loggedOutPage("forgot", "Forgot your password"))
	s.HandleFunc("GET /invite/{token}", a.invitePage)
	s.HandleFunc("GET /verify", tokenPage(a, "verify", "Verify your email"))
	s.HandleFunc("GET /reset", tokenPage(a, "reset", "Choose a new password"))
	s.HandleFunc("GET /app", a.appPage("inbox", "Inbox"))
	s.HandleFunc("GET /app/conversations/{id}", a.appPage("inbox", "Inbox"))
	s.HandleFunc("GET /app/settings", a.appPage("settings", "Settings"))
	s.HandleFunc("GET /app/team", a.appPage("team", "Team"))
	s.HandleFunc("GET /app/analytics", a.appPage("analytics", "Analytics"))
	s.HandleFunc("GET /app/account", a.appPage("account", "Account"))
	s.HandleFunc("GET /app/privacy", a.appPage("privacy", "Privacy"))
	s.HandleFunc("GET "+staticPrefix+"{version}/{file}", serveDashboardStatic)
}

// pageSession is the session a page request carries: nil when it has none
// (no cookie, or one that expired or was logged out). Pages take the
// cookie only: a bearer token is for scripts, and a page needs the CSRF
// token that only sessions have.
func (a *API) pageSession(r *http.Request) (*principal, error) {
	if _, err := r.Cookie(a.sessionCookieName()); err != nil {
		return nil, nil
	}
	r2 := r.Clone(r.Context())
	r2.Header.Del("Authorization")
	p, err := a.authenticate(r2)
	if errors.Is(err, errUnauthenticated) {
		return nil, nil
	}
	return p, err
}

func (a *API) dashboardRoot(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), RequestDeadline)
	defer cancel()
	p, err := a.pageSession(r.WithContext(ctx))
	if err != nil {
		a.pageError(w, r, err)
		return
	}
	if p == nil {
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/app", http.StatusSeeOther)
}

// loggedOutPage serves a page for visitors without a session; a logged-in
// agent goes to the inbox instead.
func (a *API) loggedOutPage(page, title string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), RequestDeadline)
		defer cancel()
		p, err := a.pageSession(r.WithContext(ctx))
		if err != nil {
			a.pageError(w, r, err)
			return
		}
		if p != nil {
			http.Redirect(w, r, "/app", http.StatusSeeOther)
			return
		}
		a.renderPage(w, r, page, dashboard.Data{Title: title, Next: safeNext(r.URL.Query().Get("next"))})
	}
}

// safeNext is where login may send the browser afterwards: a path of the
// app on this host, never another site ("//evil.example", "/\evil").
func safeNext(next string) string {
	if next == "/app" || strings.HasPrefix(next, "/app/") || strings.HasPrefix(next, "/app?") {
		if !strings.ContainsAny(next, "\\\r\n") {
			return next
		}
	}
	return "/app"
}

func (a *API) invitePage(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	if token == "" || len(token) > 200 {
		http.NotFound(w, r)
		return
	}
	// The page asks for the invitation itself (a public call): it works
	// whether or not someone is logged in in this browser.
	a.renderPage(w, r, "invite", dashboard.Data{Title: "Join your team", InviteToken: token})
}

// tokenPage serves a page opened from an emailed link (ORIGIN/verify?token=…,
// ORIGIN/reset?token=…). Like the invitation page, it renders without the
// session: its module makes the public call with the token, whether or not
// someone is logged in in this browser. A GET changes nothing, so a mail
// scanner that fetches the link does not spend it.
func tokenPage(a *API, page, title string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token := r.URL.Query().Get("token")
		if len(token) > 200 {
			token = ""
		}
		a.renderPage(w, r, page, dashboard.Data{Title: title, Token: token})
	}
}

// appPage serves a page of the logged-in app; without a session the
// browser goes to log in and comes back.
func (a *API) appPage(page, title string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), RequestDeadline)
		defer cancel()
		r = r.WithContext(ctx)
		p, err := a.pageSession(r)
		if err != nil {
			a.pageError(w, r, err)
			return
		}
		if p == nil {
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		agent, err := a.Machine.Agent(ctx, p.tenant, p.agent)
		if err != nil {
			a.pageError(w, r, err)
			return
		}
		t, err := a.settings(p.tenant)
		if err != nil {
			a.pageError(w, r, err)
			return
		}
		d := dashboard.Data{
			Title: title, CSRF: p.csrf, Org: t.Name, Manager: p.manager(),
			Agent: &dashboard.Agent{ID: p.agent.String(), Name: agent.Name, Role: roleName(p.role)},
			Owner: roleName(p.role) == "owner",
		}
		if term := terminationOf(t); term.Terminating {
			d.DeleteAfter = term.DeleteAfter
			d.DeleteAfterText = time.UnixMilli(t.DeleteAfterUnixMs).UTC().Format("2 January 2006, 15:04 UTC")
		}
		switch page {
		case "inbox":
			d.Conversation = r.PathValue("id")
			if d.Conversation == "" {
				d.Conversation = r.URL.Query().Get("c")
			}
			if len(d.Conversation) > 100 {
				d.Conversation = ""
			}
		case "settings":
			st := settingsOf(t)
			d.Origin, d.WidgetKey, d.OrgName = a.ownOrigin(r), st.WidgetKey, st.Name
			d.WidgetColor, d.WidgetGreeting = st.WidgetColor, st.WidgetGreeting
			d.AllowedOrigins = strings.Join(st.AllowedOrigins, "\n")
		case "analytics":
			today := a.Now().UTC().Truncate(24 * time.Hour)
			an, err := a.readAnalytics(ctx, p.tenant, today.AddDate(0, 0, -(DefaultAnalyticsDays-1)), today)
			if err != nil {
				a.pageError(w, r, err)
				return
			}
			d.Analytics = chartOf(an)
		case "account":
			acc, err := a.Machine.Account(ctx, p.tenant, p.agent)
			if err != nil {
				a.pageError(w, r, err)
				return
			}
			d.Email, d.EmailVerified, d.TwoFactor = agent.Email, acc.EmailVerified, acc.TotpSecret != ""
		}
		a.renderPage(w, r, page, d)
	}
}

// pageHeaders are every dashboard page's security headers. Pages carry the
// session's CSRF token, so no cache keeps them.
func pageHeaders(h http.Header) {
	h.Set("Content-Security-Policy", dashboardCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

func (a *API) renderPage(w http.ResponseWriter, r *http.Request, page string, d dashboard.Data) {
	d.Page = page
	d.Static = staticPrefix + dashboard.Version + "/"
	d.Policy = a.policyBanner(r.Context())
	var buf bytes.Buffer
	if err := dashboard.Render(&buf, page, d); err != nil {
		a.pageError(w, r, err)
		return
	}
	pageHeaders(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(buf.Bytes())
}

// pageError answers a page that could not be built: 503 when the cluster
// did not answer (a reload will do), 500 otherwise, as plain text.
func (a *API) pageError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := http.StatusInternalServerError, "Something went wrong; try again."
	var ae *apiError
	if errors.As(err, &ae) && ae.status == http.StatusServiceUnavailable || r.Context().Err() != nil {
		status, msg = http.StatusServiceUnavailable, "ChatPacket could not answer in time; reload the page in a moment."
		w.Header().Set("Retry-After", "1")
	} else {
		a.Log.Error("dashboard page failed", "path", r.URL.Path, "err", err)
	}
	pageHeaders(w.Header())
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	w.Write([]byte(msg + "\n"))
}

// serveDashboardStatic serves an asset. The current version's files are
// immutable; a request for another version (a page of an older or newer
// node of the cluster) gets this node's file, uncached.
func serveDashboardStatic(w http.ResponseWriter, r *http.Request) {
	file := r.PathValue("file")
	if file == "" || file != path.Base(file) || strings.HasPrefix(file, ".") {
		http.NotFound(w, r)
		return
	}
	b, err := fs.ReadFile(dashboard.Static, file)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	if ct := mime.TypeByExtension(path.Ext(file)); ct != "" {
		h.Set("Content-Type", ct)
	}
	if path.Ext(file) == ".js" {
		h.Set("Content-Type", "text/javascript; charset=utf-8")
	}
	h.Set("X-Content-Type-Options", "nosniff")
	if r.PathValue("version") == dashboard.Version {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	http.ServeContent(w, r, file, time.Time{}, bytes.NewReader(b))
}
