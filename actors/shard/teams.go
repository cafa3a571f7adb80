package shard

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
	"google.golang.org/protobuf/proto"
)

// Teams, roles and the audit log of a tenant. Teams and audit events live
// on their tenant's shard, sealed under the tenant key; a conversation's
// team is a field of the conversation, on the conversation's shard, so the
// proposer checks that a team exists before it moves a conversation to it.

// Limits on teams and audit events.
const (
	MaxTeams          = 100
	MaxTeamMembers    = 1000
	MaxTeamNameBytes  = 100
	MaxAuditDetail    = 16  // entries of an event's detail
	MaxAuditValue     = 512 // bytes of one detail value
	MaxAuditKeyBytes  = 64
	MaxAuditIPBytes   = 64
	MaxAuditAction    = 64
	maxAuditEventList = 1000
)

func teamKey(db *storage.DB, tenant, team storage.ID) []byte {
	return storage.Key(shardOf(db, tenant), TableTeam, tenant[:], team[:])
}

// auditKey orders a tenant's events newest first: the time is stored
// inverted, then the event's random id keeps events of one millisecond
// apart (and makes a retried append write the same key).
func auditKey(db *storage.DB, tenant storage.ID, unixMs int64, event storage.ID) []byte {
	inv := binary.BigEndian.AppendUint64(nil, math.MaxUint64-uint64(unixMs))
	return storage.Key(shardOf(db, tenant), TableAudit, tenant[:], inv, event[:])
}

func validTeamName(name string) bool {
	return strings.TrimSpace(name) != "" && len(name) <= MaxTeamNameBytes && utf8.ValidString(name)
}

func (s *state) putTeam(ctx context.Context, ch *change, p *actorspb.PutTeam) (*actorspb.Result, error) {
	tenant, err := idFrom(p.TenantId, "tenant_id")
	if err != nil {
		return nil, err
	}
	t := p.GetTeam()
	team, err := idFrom(t.GetId(), "team.id")
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(t.TenantId, tenant[:]) {
		return nil, fmt.Errorf("%w: team.tenant_id is not tenant_id", ErrInvalid)
	}
	if !validTeamName(t.Name) {
		return nil, fmt.Errorf("%w: team name must have 1 to %d bytes", ErrInvalid, MaxTeamNameBytes)
	}
	if len(t.MemberIds) > MaxTeamMembers {
		return nil, fmt.Errorf("%w: at most %d members", ErrInvalid, MaxTeamMembers)
	}
	seen := map[storage.ID]bool{}
	for _, m := range t.MemberIds {
		id, err := idFrom(m, "team.member_ids")
		if err != nil {
			return nil, err
		}
		if seen[id] {
			return nil, fmt.Errorf("%w: member listed twice", ErrInvalid)
		}
		seen[id] = true
	}
	key := teamKey(s.db, tenant, team)
	var have actorspb.TeamRecord
	found, err := s.exists(ctx, key, &have)
	switch {
	case err != nil:
		return nil, err
	case p.Create && found && have.Name == t.Name && have.CreatedUnixMs == t.CreatedUnixMs:
		return &actorspb.Result{}, nil // a retry
	case p.Create && found:
		return nil, fmt.Errorf("%w: team", ErrExists)
	case !p.Create && !found:
		return nil, ErrNotFound
	case !p.Create:
		t.CreatedUnixMs = have.CreatedUnixMs
	}
	if err := ch.staged.Put(ctx, key, storage.TenantKey(tenant), t); err != nil {
		return nil, err
	}
	s.stage(ch, key, t)
	return &actorspb.Result{Created: p.Create}, nil
}

func (s *state) deleteTeam(ctx context.Context, ch *change, d *actorspb.DeleteTeam) (*actorspb.Result, error) {
	tenant, err := idFrom(d.TenantId, "tenant_id")
	if err != nil {
		return nil, err
	}
	team, err := idFrom(d.TeamId, "team_id")
	if err != nil {
		return nil, err
	}
	key := teamKey(s.db, tenant, team)
	if found, err := s.exists(ctx, key, nil); err != nil {
		return nil, err
	} else if !found {
		return nil, ErrNotFound
	}
	if err := ch.staged.Delete(key); err != nil {
		return nil, err
	}
	s.stage(ch, key, nil)
	return &actorspb.Result{}, nil
}

func (s *state) setConversationTeam(ctx context.Context, ch *change, c *actorspb.SetConversationTeam) (*actorspb.Result, error) {
	conv, err := s.existing(ctx, c.TenantId, c.ConversationId)
	if err != nil {
		return nil, err
	}
	if len(c.TeamId) != 0 {
		if _, err := idFrom(c.TeamId, "team_id"); err != nil {
			return nil, err
		}
	}
	conv.TeamId = c.TeamId
	ch.conv = conv
	return &actorspb.Result{}, nil
}

func (s *state) setAgentRole(ctx context.Context, ch *change, r *actorspb.SetAgentRole) (*actorspb.Result, error) {
	tenant, err := idFrom(r.TenantId, "tenant_id")
	if err != nil {
		return nil, err
	}
	agent, err := idFrom(r.AgentId, "agent_id")
	if err != nil {
		return nil, err
	}
	switch r.Role {
	case actorspb.Role_ROLE_OWNER, actorspb.Role_ROLE_ADMIN, actorspb.Role_ROLE_AGENT:
	default:
		return nil, fmt.Errorf("%w: role %v", ErrInvalid, r.Role)
	}
	key := agentKey(s.db, tenant, agent)
	var rec actorspb.AgentRecord
	switch err := s.getRecord(ctx, key, &rec); {
	case errors.Is(err, storage.ErrErased):
		return nil, ErrNotFound // an erased agent is no longer on the team
	case err != nil:
		return nil, err
	}
	if rec.Role == r.Role {
		return &actorspb.Result{}, nil
	}
	if rec.Role == actorspb.Role_ROLE_OWNER {
		owners, err := s.owners(ctx, tenant)
		if err != nil {
			return nil, err
		}
		if owners <= 1 {
			return nil, fmt.Errorf("%w: the last owner cannot be demoted; make another agent owner first", ErrInvalid)
		}
	}
	rec.Role = r.Role
	if err := ch.staged.Put(ctx, key, storage.SubjectKey(tenant, agent), &rec); err != nil {
		return nil, err
	}
	s.stage(ch, key, &rec)
	return &actorspb.Result{}, nil
}

// getRecord reads key as the batch sees it: ErrNotFound when there is none.
func (s *state) getRecord(ctx context.Context, key []byte, into proto.Message) error {
	if m, ok := s.stagedRecord(key); ok {
		if m == nil {
			return ErrNotFound
		}
		proto.Merge(into, m)
		return nil
	}
	err := s.db.Get(ctx, key, into)
	if errors.Is(err, storage.ErrNotFound) {
		return ErrNotFound
	}
	return err
}

// owners counts the owners of tenant as the batch sees them (stored agents,
// with this batch's changes to them).
func (s *state) owners(ctx context.Context, tenant storage.ID) (int, error) {
	prefix := storage.Key(shardOf(s.db, tenant), TableAgent, tenant[:])
	n := 0
	err := s.db.ScanPrefix(ctx, prefix, func(key []byte, open func(proto.Message) error) error {
		var a actorspb.AgentRecord
		if m, ok := s.stagedRecord(key); ok {
			if m == nil {
				return nil
			}
			proto.Merge(&a, m)
		} else if err := open(&a); errors.Is(err, storage.ErrErased) {
			return nil
		} else if err != nil {
			return err
		}
		if a.Role == actorspb.Role_ROLE_OWNER {
			n++
		}
		return nil
	})
	return n, err
}

func (s *state) appendAudit(ctx context.Context, ch *change, a *actorspb.AppendAudit) (*actorspb.Result, error) {
	tenant, err := idFrom(a.TenantId, "tenant_id")
	if err != nil {
		return nil, err
	}
	event, err := idFrom(a.EventId, "event_id")
	if err != nil {
		return nil, err
	}
	e := a.GetEvent()
	switch {
	case e.GetUnixMs() <= 0:
		return nil, fmt.Errorf("%w: no time", ErrInvalid)
	case e.GetAction() == "" || len(e.GetAction()) > MaxAuditAction:
		return nil, fmt.Errorf("%w: action must have 1 to %d bytes", ErrInvalid, MaxAuditAction)
	case len(e.GetIp()) > MaxAuditIPBytes:
		return nil, fmt.Errorf("%w: ip too long", ErrInvalid)
	case len(e.GetDetail()) > MaxAuditDetail:
		return nil, fmt.Errorf("%w: at most %d detail entries", ErrInvalid, MaxAuditDetail)
	case len(e.GetActorId()) != 0 && len(e.GetActorId()) != len(storage.ID{}):
		return nil, fmt.Errorf("%w: actor_id has %d bytes; want 16", ErrInvalid, len(e.GetActorId()))
	}
	for k, v := range e.GetDetail() {
		if len(k) == 0 || len(k) > MaxAuditKeyBytes || len(v) > MaxAuditValue {
			return nil, fmt.Errorf("%w: detail entry too long", ErrInvalid)
		}
	}
	key := auditKey(s.db, tenant, e.UnixMs, event)
	if found, err := s.exists(ctx, key, nil); err != nil || found {
		return &actorspb.Result{}, err // found: a retry
	}
	if err := ch.staged.Put(ctx, key, storage.TenantKey(tenant), e); err != nil {
		return nil, err
	}
	s.stage(ch, key, e)
	return &actorspb.Result{Created: true}, nil
}

// Teams returns the teams of tenant, in id order, at most MaxTeams.
func (m *Machine) Teams(ctx context.Context, tenant storage.ID) ([]*actorspb.TeamRecord, error) {
	return collect[actorspb.TeamRecord](ctx, m, storage.Key(shardOf(m.db, tenant), TableTeam, tenant[:]), MaxTeams, true)
}

// Team returns a team of tenant.
func (m *Machine) Team(ctx context.Context, tenant, team storage.ID) (*actorspb.TeamRecord, error) {
	var rec actorspb.TeamRecord
	if err := m.get(ctx, teamKey(m.db, tenant, team), &rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

// Audit returns up to limit events of tenant's audit log, newest first.
func (m *Machine) Audit(ctx context.Context, tenant storage.ID, limit int) ([]*actorspb.AuditEvent, error) {
	if limit <= 0 || limit > maxAuditEventList {
		limit = maxAuditEventList
	}
	return collect[actorspb.AuditEvent](ctx, m, storage.Key(shardOf(m.db, tenant), TableAudit, tenant[:]), limit, true)
}
