package transport

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/transport/widgetui"
)

// registerWidgetUI serves the widget: the loader a business pastes into
// its site, and the chat frame it opens.
func (a *API) registerWidgetUI(s *http.ServeMux) {
	s.HandleFunc("GET /widget.js", a.widgetLoader)
	s.HandleFunc("GET /widget/frame", a.widgetFrame)
	s.HandleFunc("GET /widget/frame.css", a.widgetAsset(widgetui.FrameCSS))
	s.HandleFunc("GET /widget/frame.js", a.widgetAsset(widgetui.FrameJS))
}

// widgetLoader serves the script of the snippet. Any site may load it (it
// is public, like the widget key): no frame or resource policy narrows it.
func (a *API) widgetLoader(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("Cross-Origin-Resource-Policy", "cross-origin")
	serveAsset(w, r, widgetui.Lookup(widgetui.Loader))
}

// widgetAsset serves one of the frame's files, which only the frame (on
// ChatPacket's origin) uses.
func (a *API) widgetAsset(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "public, max-age=300")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Referrer-Policy", "no-referrer")
		serveAsset(w, r, widgetui.Lookup(name))
	}
}

// widgetFrame serves the chat frame for ?key=WIDGET_KEY&origin=HOST_ORIGIN.
// The host origin is where the frame sends its postMessages and the only
// origin it takes them from; when the tenant lists allowed origins it must
// be one of them, and only they may frame the page. A page opened from a
// file (origin "null": the README's "paste the snippet into a local HTML
// file") may embed the widget of a tenant that lists no origins.
func (a *API) widgetFrame(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	ctx, cancel := context.WithTimeout(r.Context(), RequestDeadline)
	defer cancel()
	r = r.WithContext(ctx)
	tenant, err := a.tenantOfWidgetKey(r, r.URL.Query().Get("key"))
	if ae, ok := err.(*apiError); ok && ae.status == http.StatusBadRequest {
		err = errorf(http.StatusNotFound, "unknown_widget_key", "no widget has this key")
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	settings, err := a.widgetSettings(tenant)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	origin := strings.TrimSuffix(strings.ToLower(r.URL.Query().Get("origin")), "/")
	if origin == "null" && len(settings.AllowedOrigins) > 0 {
		a.writeError(w, r, errOriginNotAllowed)
		return
	}
	if origin != "null" && !shard.ValidOrigin(origin) {
		a.writeError(w, r, errorf(http.StatusBadRequest, "invalid_origin", "origin is the embedding page's origin, as https://shop.example"))
		return
	}
	// Without allowed origins any page may frame it: no frame-ancestors at
	// all, since "*" would not match a file's page.
	ancestors := ""
	if len(settings.AllowedOrigins) > 0 {
		if !slices.Contains(settings.AllowedOrigins, origin) {
			a.writeError(w, r, errOriginNotAllowed)
			return
		}
		ancestors = "; frame-ancestors " + strings.Join(settings.AllowedOrigins, " ")
	}
	// 'self' covers the socket's ws: URL in CSP 3; older browsers need it
	// named. A Host that is not a plain host[:port] is not written into the
	// policy.
	connect := "'self'"
	if plainHost(r.Host) {
		connect += " ws://" + r.Host
		if a.TLS {
			connect = "'self' wss://" + r.Host
		}
	}
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src "+connect+"; base-uri 'none'; form-action 'none'"+ancestors)
	serveAsset(w, r, widgetui.Lookup(widgetui.FrameHTML))
}

// serveAsset writes f, gzipped when the client takes gzip, or 304 when the
// client has it already.
func serveAsset(w http.ResponseWriter, r *http.Request, f *widgetui.File) {
	h := w.Header()
	h.Set("Content-Type", f.ContentType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Vary", "Accept-Encoding")
	body, etag := f.Body, f.ETag
	gz := acceptsGzip(r)
	if gz {
		// Another representation: another validator.
		body, etag = f.Gzip, strings.TrimSuffix(f.ETag, `"`)+`-gz"`
	}
	h.Set("ETag", etag)
	if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if gz {
		h.Set("Content-Encoding", "gzip")
	}
	w.Write(body)
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.TrimSpace(enc) == "gzip" && strings.ReplaceAll(q, " ", "") != "q=0" {
			return true
		}
	}
	return false
}

// plainHost reports whether host is letters, digits, dots, dashes, colons
// and brackets only: a host[:port] that is safe inside a header's list.
func plainHost(host string) bool {
	for _, c := range host {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(".-:[]", c)) {
			return false
		}
	}
	return host != ""
}
