package shard

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
	"google.golang.org/protobuf/proto"
)

// A tenant's settings and team roster.

// Limits on a tenant's settings.
const (
	MaxOrigins       = 50
	MaxGreetingBytes = 500
)

var colorPattern = regexp.MustCompile(`^#[0-9a-fA-F]{6}$`)

// ValidOrigin reports whether s is an origin as browsers send it: http or
// https, a host, an optional port, and nothing else (no path, no trailing
// slash, no user info). The Origin header is compared with it byte for
// byte, so anything else could never match.
func ValidOrigin(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" &&
		u.User == nil && u.Path == "" && u.RawQuery == "" && u.Fragment == "" &&
		s == u.Scheme+"://"+u.Host && strings.ToLower(s) == s
}

func (s *state) updateTenant(ctx context.Context, ch *change, u *actorspb.UpdateTenant) (*actorspb.Result, error) {
	tenant, err := idFrom(u.TenantId, "tenant_id")
	if err != nil {
		return nil, err
	}
	switch {
	case strings.TrimSpace(u.Name) == "" || len(u.Name) > 200:
		return nil, fmt.Errorf("%w: tenant name must have 1 to 200 bytes", ErrInvalid)
	case u.WidgetColor != "" && !colorPattern.MatchString(u.WidgetColor):
		return nil, fmt.Errorf("%w: widget colour is #rrggbb", ErrInvalid)
	case len(u.WidgetGreeting) > MaxGreetingBytes:
		return nil, fmt.Errorf("%w: greeting over %d bytes", ErrInvalid, MaxGreetingBytes)
	case len(u.AllowedOrigins) > MaxOrigins:
		return nil, fmt.Errorf("%w: at most %d allowed origins", ErrInvalid, MaxOrigins)
	}
	for _, o := range u.AllowedOrigins {
		if !ValidOrigin(o) {
			return nil, fmt.Errorf("%w: %q is not an origin (scheme://host[:port], lower case)", ErrInvalid, o)
		}
	}
	key := tenantKey(s.db, tenant)
	var rec actorspb.TenantRecord
	if found, err := s.exists(ctx, key, &rec); err != nil {
		return nil, err
	} else if !found {
		return nil, ErrNotFound
	}
	rec.Name, rec.WidgetColor, rec.WidgetGreeting = u.Name, u.WidgetColor, u.WidgetGreeting
	rec.AllowedOrigins = u.AllowedOrigins
	if err := ch.staged.Put(ctx, key, storage.TenantKey(tenant), &rec); err != nil {
		return nil, err
	}
	s.stage(ch, key, &rec)
	return &actorspb.Result{}, nil
}

// Agents returns the team of tenant, in id order, at most limit.
func (m *Machine) Agents(ctx context.Context, tenant storage.ID, limit int) ([]*actorspb.AgentRecord, error) {
	prefix := storage.Key(shardOf(m.db, tenant), TableAgent, tenant[:])
	var out []*actorspb.AgentRecord
	err := m.scan(ctx, prefix, storage.PrefixEnd(prefix), limit, func(_ []byte, open func(proto.Message) error) error {
		var a actorspb.AgentRecord
		switch err := open(&a); {
		case err == nil:
			out = append(out, &a)
		case !errors.Is(err, storage.ErrErased): // an erased agent is no longer on the team
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
