package transport

import (
	"errors"
	"net"
	"net/http"
	"net/mail"
	"strings"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/grainpb"
	"github.com/chatpacket/chatpacket/actors/grains"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/storage"
)

// The visitor panel's data: technical data taken at each session start and
// the pages the visitor opened, all sealed under the visitor's own key.

func (a *API) registerVisitors(s *http.ServeMux) {
	s.Handle("GET /api/v1/visitors/{id}", a.handler(a.authenticated(a.getVisitor)))
	s.Handle("POST /api/v1/widget/contact", a.handler(a.visitorOnly(a.setContact)))
}

type contactRequest struct {
	Name  string `json:"name"`
	Email string `json:"email"`
}

// setContact records the name and email a visitor chose to give.
func (a *API) setContact(_ http.ResponseWriter, r *http.Request, v visitor) (int, any, error) {
	var req contactRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	email, err := contactEmail(req.Email)
	if err != nil {
		return 0, nil, err
	}
	if _, err := grainpb.GetVisitorGrainClient(a.Cluster, v.id.String()).SetContact(&grainpb.ContactRequest{
		TenantId: v.tenant[:], Name: strings.TrimSpace(req.Name), Email: email,
	}); err != nil {
		return 0, nil, grainError(err)
	}
	return http.StatusNoContent, nil, nil
}

// contactEmail checks an email a visitor gave, or an agent corrected: a
// plain address, or none.
func contactEmail(raw string) (string, error) {
	email := strings.TrimSpace(raw)
	if email != "" {
		if addr, err := mail.ParseAddress(email); err != nil || addr.Address != email {
			return "", errorf(http.StatusBadRequest, "invalid_email", "give a plain email address, or none")
		}
	}
	return email, nil
}

// techOf reads a request's technical data. The IP is the connection's peer:
// a proxy's forwarding headers are not trusted, since anyone can send them.
func techOf(r *http.Request) *actorspb.VisitorTech {
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = r.RemoteAddr
	}
	ua := r.UserAgent()
	if len(ua) > shard.MaxUABytes {
		ua = ua[:shard.MaxUABytes]
	}
	ref := r.Referer()
	if len(ref) > shard.MaxURLBytes {
		ref = ""
	}
	browser, os := parseUserAgent(ua)
	return &actorspb.VisitorTech{Ip: ip, UserAgent: ua, Browser: browser, Os: os, Referrer: ref}
}

// parseUserAgent names the browser and operating system of a User-Agent
// header, for the agent's eyes only: the common families, checked in the
// order that disambiguates them (Edge and Opera say "Chrome", Chrome says
// "Safari", iOS says "Mac OS X"). The full header is kept beside it.
func parseUserAgent(ua string) (browser, os string) {
	for _, b := range []struct{ token, name string }{
		{"Edg/", "Edge"}, {"OPR/", "Opera"}, {"Firefox/", "Firefox"}, {"FxiOS/", "Firefox"},
		{"CriOS/", "Chrome"}, {"Chrome/", "Chrome"}, {"Safari/", "Safari"},
	} {
		if strings.Contains(ua, b.token) {
			browser = b.name
			break
		}
	}
	for _, o := range []struct{ token, name string }{
		{"Android", "Android"}, {"iPhone", "iOS"}, {"iPad", "iOS"}, {"Windows", "Windows"},
		{"Mac OS X", "macOS"}, {"CrOS", "ChromeOS"}, {"Linux", "Linux"},
	} {
		if strings.Contains(ua, o.token) {
			os = o.name
			break
		}
	}
	return browser, os
}

type pageViewJSON struct {
	URL      string `json:"url"`
	Title    string `json:"title,omitempty"`
	Referrer string `json:"referrer,omitempty"`
	At       string `json:"at"`
}

// MaxPageViews bounds the page views a visitor panel shows.
const MaxPageViews = 50

func (a *API) getVisitor(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	id, err := storage.ParseID(r.PathValue("id"))
	if err != nil {
		return 0, nil, errorf(http.StatusNotFound, "not_found", "no such visitor")
	}
	rec, err := a.Machine.Visitor(r.Context(), p.tenant, id)
	if err == nil || errors.Is(err, storage.ErrErased) {
		switch ok, verr := a.seesVisitor(r, p, id); {
		case verr != nil:
			return 0, nil, verr
		case !ok:
			err = shard.ErrNotFound
		}
	}
	switch {
	case errors.Is(err, shard.ErrNotFound):
		return 0, nil, errorf(http.StatusNotFound, "not_found", "no such visitor")
	case errors.Is(err, storage.ErrErased):
		return http.StatusOK, map[string]any{"id": id.String(), "erased": true}, nil
	case err != nil:
		return 0, nil, err
	}
	views, err := a.Machine.PageViews(r.Context(), p.tenant, id, MaxPageViews)
	if err != nil {
		return 0, nil, err
	}
	out := make([]pageViewJSON, 0, len(views))
	for _, v := range views {
		out = append(out, pageViewJSON{URL: v.Url, Title: v.Title, Referrer: v.Referrer, At: time.UnixMilli(v.UnixMs).UTC().Format(time.RFC3339)})
	}
	t := rec.GetTech()
	body := map[string]any{
		"id": id.String(), "browser": t.GetBrowser(), "os": t.GetOs(), "ip": t.GetIp(),
		"user_agent": t.GetUserAgent(), "referrer": t.GetReferrer(), "page_views": out,
		"name": rec.ContactName, "email": rec.ContactEmail, "restricted": rec.Restricted,
	}
	if rec.LastSeenUnixMs > 0 {
		body["last_seen_at"] = time.UnixMilli(rec.LastSeenUnixMs).UTC().Format(time.RFC3339)
	}
	return http.StatusOK, body, nil
}

// seesVisitor reports whether p may read a visitor of its tenant: owners
// and admins may read any; an agent one with at least one conversation
// the agent sees (a visitor who has not chatted yet is for owners and
// admins only).
func (a *API) seesVisitor(r *http.Request, p *principal, id storage.ID) (bool, error) {
	ac, err := a.access(r, p)
	if err != nil || ac.all {
		return ac.all, err
	}
	// An erased visitor's list is gone with it: agents get 404.
	list, err := a.Machine.VisitorConversations(r.Context(), p.tenant, id, grains.MaxVisitorConversations)
	switch {
	case errors.Is(err, shard.ErrNotFound), errors.Is(err, storage.ErrErased):
		return false, nil
	case err != nil:
		return false, err
	}
	for _, c := range list {
		rec, err := a.Machine.Conversation(r.Context(), p.tenant, storage.BytesID(c.ConversationId))
		if err == nil && ac.sees(rec) {
			return true, nil
		}
	}
	return false, nil
}
