package transport

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/grainpb"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/storage"
)

// A tenant's settings (name, the widget's look, allowed origins) and its
// team roster, through the Tenant grain.

func (a *API) registerSettings(s *http.ServeMux) {
	s.Handle("GET /api/v1/settings", a.handler(a.authenticated(a.getSettings)))
	s.Handle("PATCH /api/v1/settings", a.handler(a.authenticated(a.patchSettings)))
	s.Handle("GET /api/v1/agents", a.handler(a.authenticated(a.listAgents)))
}

type settingsJSON struct {
	Name           string   `json:"name"`
	WidgetKey      string   `json:"widget_key"`
	WidgetColor    string   `json:"widget_color"`
	WidgetGreeting string   `json:"widget_greeting"`
	AllowedOrigins []string `json:"allowed_origins"`
}

func settingsOf(t *actorspb.TenantRecord) settingsJSON {
	return settingsJSON{
		Name: t.Name, WidgetKey: t.WidgetKey, WidgetColor: t.WidgetColor, WidgetGreeting: t.WidgetGreeting,
		AllowedOrigins: append([]string{}, t.AllowedOrigins...),
	}
}

func (a *API) settings(tenant storage.ID) (*actorspb.TenantRecord, error) {
	res, err := grainpb.GetTenantGrainClient(a.Cluster, tenant.String()).Settings(&grainpb.TenantRequest{TenantId: tenant[:]})
	if err != nil {
		return nil, grainError(err)
	}
	return res.Tenant, nil
}

func (a *API) getSettings(_ http.ResponseWriter, _ *http.Request, p *principal) (int, any, error) {
	t, err := a.settings(p.tenant)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, settingsOf(t), nil
}

// settingsPatch changes the fields it has; absent ones keep their values.
type settingsPatch struct {
	Name           *string   `json:"name"`
	WidgetColor    *string   `json:"widget_color"`
	WidgetGreeting *string   `json:"widget_greeting"`
	AllowedOrigins *[]string `json:"allowed_origins"`
}

func (a *API) patchSettings(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	if !p.manager() {
		return 0, nil, errorf(http.StatusForbidden, "forbidden", "only owners and admins change settings")
	}
	var req settingsPatch
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	t, err := a.settings(p.tenant)
	if err != nil {
		return 0, nil, err
	}
	u := &actorspb.UpdateTenant{TenantId: p.tenant[:], Name: t.Name, WidgetColor: t.WidgetColor, WidgetGreeting: t.WidgetGreeting, AllowedOrigins: t.AllowedOrigins}
	if req.Name != nil {
		u.Name = strings.TrimSpace(*req.Name)
	}
	if req.WidgetColor != nil {
		u.WidgetColor = strings.ToLower(*req.WidgetColor)
	}
	if req.WidgetGreeting != nil {
		u.WidgetGreeting = strings.TrimSpace(*req.WidgetGreeting)
	}
	if req.AllowedOrigins != nil {
		u.AllowedOrigins = nil
		for _, o := range *req.AllowedOrigins {
			o = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(o)), "/")
			if !shard.ValidOrigin(o) {
				return 0, nil, errorf(http.StatusBadRequest, "invalid_origin", "%q is not an origin: give scheme://host[:port], as https://shop.example", o)
			}
			if !slices.Contains(u.AllowedOrigins, o) {
				u.AllowedOrigins = append(u.AllowedOrigins, o)
			}
		}
	}
	res, err := grainpb.GetTenantGrainClient(a.Cluster, p.tenant.String()).UpdateSettings(&grainpb.UpdateSettingsRequest{Settings: u})
	if err != nil {
		return 0, nil, grainError(err)
	}
	var fields []string
	for _, f := range []struct {
		name    string
		changed bool
	}{
		{"name", u.Name != t.Name}, {"widget_color", u.WidgetColor != t.WidgetColor},
		{"widget_greeting", u.WidgetGreeting != t.WidgetGreeting}, {"allowed_origins", !slices.Equal(u.AllowedOrigins, t.AllowedOrigins)},
	} {
		if f.changed {
			fields = append(fields, f.name)
		}
	}
	if len(fields) > 0 {
		a.audit(r, p, AuditSettingsChanged, map[string]string{"fields": strings.Join(fields, ",")})
	}
	return http.StatusOK, settingsOf(res.Tenant), nil
}

type agentJSON struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Email     string `json:"email"`
	Role      string `json:"role"`
	CreatedAt string `json:"created_at"`
}

func (a *API) listAgents(_ http.ResponseWriter, _ *http.Request, p *principal) (int, any, error) {
	res, err := grainpb.GetTenantGrainClient(a.Cluster, p.tenant.String()).Agents(&grainpb.TenantRequest{TenantId: p.tenant[:]})
	if err != nil {
		return 0, nil, grainError(err)
	}
	out := make([]agentJSON, 0, len(res.Agents))
	for _, ag := range res.Agents {
		out = append(out, agentJSONOf(ag))
	}
	return http.StatusOK, map[string]any{"agents": out}, nil
}

func agentJSONOf(ag *actorspb.AgentRecord) agentJSON {
	return agentJSON{
		ID: idString(ag.Id), Name: ag.Name, Email: ag.Email, Role: roleName(ag.Role),
		CreatedAt: time.UnixMilli(ag.CreatedUnixMs).UTC().Format(time.RFC3339),
	}
}

func roleName(r actorspb.Role) string {
	switch r {
	case actorspb.Role_ROLE_OWNER:
		return "owner"
	case actorspb.Role_ROLE_ADMIN:
		return "admin"
	}
	return "agent"
}

// originAllowed reports whether a browser request may act for tenant t's
// widget: requests without an Origin (not from a browser page), from
// ChatPacket's own origin (the widget frame), or from one of the tenant's
// allowed origins. A tenant that has set none allows any, so a new
// business's first embed works before it configures anything.
func (a *API) originAllowed(r *http.Request, t *actorspb.TenantRecord) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || len(t.AllowedOrigins) == 0 || origin == a.ownOrigin(r) {
		return true
	}
	return slices.Contains(t.AllowedOrigins, origin)
}

// ownOrigin is the origin this request was addressed to.
func (a *API) ownOrigin(r *http.Request) string {
	if a.TLS {
		return "https://" + strings.ToLower(r.Host)
	}
	return "http://" + strings.ToLower(r.Host)
}

var errOriginNotAllowed = errorf(http.StatusForbidden, "origin_not_allowed", "this site is not among the widget's allowed origins")
