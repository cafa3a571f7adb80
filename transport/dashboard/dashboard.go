// Package dashboard holds the agents' dashboard: html/template pages and
// the static ES modules and stylesheet they load, embedded in the binary.
// There is no bundler and no framework: each page loads one small module
// of its own (type="module", never an inline script), which imports
// common.js; every request goes to ChatPacket's own origin.
//
// The transport package renders the pages (it knows the session) and
// serves the files; this package only parses and hashes what it embeds.
// Pages, Render and Static are safe for concurrent use once the package
// is initialized: they never change after init.
package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"sort"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Static holds the modules and the stylesheet, at their bare names
// ("inbox.js", "style.css").
var Static fs.FS

// Version is a hash of every static file. Pages name assets under it
// (/static/dashboard/VERSION/inbox.js), so an asset may be cached for good:
// a changed file changes every URL, and relative imports between modules
// stay within one version.
var Version string

// Pages names the pages Render knows, one template file each.
var Pages = []string{"login", "signup", "forgot", "verify", "reset", "invite", "inbox", "settings", "team", "account", "privacy", "analytics"}

var pages = map[string]*template.Template{}

func init() {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	Static = sub
	Version = hashFS(sub)
	layout := template.Must(template.ParseFS(templateFS, "templates/layout.html"))
	for _, name := range Pages {
		pages[name] = template.Must(template.Must(layout.Clone()).ParseFS(templateFS, "templates/"+name+".html"))
	}
}

func hashFS(fsys fs.FS) string {
	var names []string
	fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, path)
		}
		return nil
	})
	sort.Strings(names)
	h := sha256.New()
	for _, name := range names {
		f, err := fsys.Open(name)
		if err != nil {
			panic(err)
		}
		fmt.Fprintf(h, "%s\x00", name)
		io.Copy(h, f)
		f.Close()
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// Agent is who is logged in, as the layout shows it.
type Agent struct {
	ID, Name, Role string
}

// Data is what a page renders. Every string is escaped by html/template.
type Data struct {
	Title  string
	Page   string // the page's module (Page + ".js") and its nav entry
	Static string // the URL prefix of this version's assets, ending in "/"
	CSRF   string // the session's CSRF token; empty when logged out
	Org    string
	Agent  *Agent // nil when logged out
	// Manager says whether the agent may change settings, invite and
	// manage teams; Owner whether they also change roles and read the
	// audit log.
	Manager, Owner bool
	// DeleteAfter is when the organization will be erased (RFC 3339), and
	// DeleteAfterText the same for people; empty unless it is terminating.
	// Every page shows a banner then.
	DeleteAfter, DeleteAfterText string

	// Settings page.
	Origin, WidgetKey, WidgetColor, WidgetGreeting, OrgName string
	AllowedOrigins                                          string // one a line

	// Inbox page: the conversation in the URL, if any.
	Conversation string

	// Invite page.
	InviteToken string

	// Login page: where to go after logging in.
	Next string

	// Verify and reset pages: the token of the emailed link.
	Token string

	// Account page.
	Email                    string
	EmailVerified, TwoFactor bool

	// Policy is the policy change every page announces; nil: none.
	Policy *Policy

	// Analytics page.
	Analytics *Analytics
}

// Policy is a change of the service's privacy policy, coming (Changed
// false) or past less than 30 days ago.
type Policy struct {
	Date    string // e.g. 12 December 2026
	Summary string
	URL     string
	Changed bool
}

// Analytics is the Analytics page's chart of page views per day, drawn as
// server-rendered SVG bars, and its top lists.
type Analytics struct {
	From, To  string
	PageViews int
	Max       int // the tallest bar's views
	Bars      []Bar
	Paths     []Count
	Referrers []Count
	Devices   []Count
}

// Bar is one day of the chart, in the SVG's user units.
type Bar struct {
	X, Y, W, H float64
	Date       string
	PageViews  int
}

// Count is an entry of a top list.
type Count struct {
	Name      string
	PageViews int
}

// Render writes page with data, or returns an error (and writes nothing)
// when the page is unknown or fails to execute.
func Render(w io.Writer, page string, data Data) error {
	t, ok := pages[page]
	if !ok {
		return fmt.Errorf("dashboard: no page %q", page)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", data); err != nil {
		return fmt.Errorf("dashboard: render %s: %w", page, err)
	}
	_, err := w.Write(buf.Bytes())
	return err
}
