package shard

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
	"google.golang.org/protobuf/proto"
)

// Account security: an agent's email verification, two-factor state, the
// index of their sessions and their login history. All of it lives in the
// shard of the agent's tenant, beside the agent record, sealed under the
// agent's subject key, so that a login's records (session index, event,
// login count) change in one command.
//
//	TableAgentSession | tenant | agent | 'a'        → AccountRecord
//	TableAgentSession | tenant | agent | 's' | hash → AgentSession
//	TableLoginEvent   | tenant | agent | slot      → LoginEvent
//
// Login events go round a ring of MaxLoginEvents slots (the login count
// modulo the ring's size), so an agent's history stays bounded without
// the state machine ever scanning.

// MaxLoginEvents is how many logins an agent's history keeps.
const MaxLoginEvents = 50

// Limits on what account commands carry.
const (
	maxSecretBytes       = 128
	maxRecoveryCodes     = 20
	maxSessionsPerRemove = 10_000
)

func accountKey(db *storage.DB, tenant, agent storage.ID) []byte {
	return storage.Key(shardOf(db, tenant), TableAgentSession, tenant[:], agent[:], []byte{'a'})
}

func agentSessionPrefix(db *storage.DB, tenant, agent storage.ID) []byte {
	return storage.Key(shardOf(db, tenant), TableAgentSession, tenant[:], agent[:], []byte{'s'})
}

func agentSessionKey(db *storage.DB, tenant, agent storage.ID, hash []byte) []byte {
	return append(agentSessionPrefix(db, tenant, agent), hash...)
}

func loginEventKey(db *storage.DB, tenant, agent storage.ID, slot uint16) []byte {
	return storage.Key(shardOf(db, tenant), TableLoginEvent, tenant[:], agent[:], binary.BigEndian.AppendUint16(nil, slot))
}

// agentIDs checks a command's tenant and agent ids and that the agent
// exists (erased or not: an erased agent's records cannot be opened, and
// the edit fails on them).
func (s *state) agentIDs(ctx context.Context, tenantRaw, agentRaw []byte) (storage.ID, storage.ID, error) {
	tenant, err := idFrom(tenantRaw, "tenant_id")
	if err != nil {
		return tenant, storage.ID{}, err
	}
	agent, err := idFrom(agentRaw, "agent_id")
	if err != nil {
		return tenant, agent, err
	}
	found, err := s.exists(ctx, agentKey(s.db, tenant, agent), nil)
	if err == nil && !found {
		err = ErrNotFound
	}
	return tenant, agent, err
}

// account reads an agent's account record as the batch sees it: empty
// when there is none yet, storage.ErrErased when the agent was erased.
func (s *state) account(ctx context.Context, tenant, agent storage.ID) (*actorspb.AccountRecord, error) {
	key := accountKey(s.db, tenant, agent)
	rec := &actorspb.AccountRecord{}
	if m, ok := s.stagedRecord(key); ok {
		if m != nil {
			proto.Merge(rec, m)
		}
		return rec, nil
	}
	err := s.db.Get(ctx, key, rec)
	if errors.Is(err, storage.ErrNotFound) {
		return &actorspb.AccountRecord{}, nil
	}
	return rec, err
}

func (s *state) putAccount(ctx context.Context, ch *change, tenant, agent storage.ID, rec *actorspb.AccountRecord) error {
	key := accountKey(s.db, tenant, agent)
	if err := ch.staged.Put(ctx, key, storage.SubjectKey(tenant, agent), rec); err != nil {
		return err
	}
	s.stage(ch, key, rec)
	return nil
}

// editAccount applies edit to an agent's account record and stages it.
func (s *state) editAccount(ctx context.Context, ch *change, tenantRaw, agentRaw []byte, edit func(*actorspb.AccountRecord) error) (*actorspb.Result, error) {
	tenant, agent, err := s.agentIDs(ctx, tenantRaw, agentRaw)
	if err != nil {
		return nil, err
	}
	rec, err := s.account(ctx, tenant, agent)
	if err != nil {
		return nil, err
	}
	if err := edit(rec); err != nil {
		return nil, err
	}
	return &actorspb.Result{}, s.putAccount(ctx, ch, tenant, agent, rec)
}

func (s *state) addAgentSession(ctx context.Context, ch *change, a *actorspb.AddAgentSession) (*actorspb.Result, error) {
	if _, err := keyFrom(a.TokenHash, "token_hash"); err != nil {
		return nil, err
	}
	ev := a.GetEvent()
	switch {
	case a.GetSession() == nil:
		return nil, fmt.Errorf("%w: no session", ErrInvalid)
	case ev == nil || ev.UnixMs <= 0:
		return nil, fmt.Errorf("%w: a login event needs a time", ErrInvalid)
	case len(ev.UserAgent) > MaxUABytes || len(ev.Ip) > 64 || len(ev.Browser) > 64 || len(ev.Os) > 64:
		return nil, fmt.Errorf("%w: login event fields too long", ErrInvalid)
	}
	tenant, agent, err := s.agentIDs(ctx, a.TenantId, a.AgentId)
	if err != nil {
		return nil, err
	}
	rec, err := s.account(ctx, tenant, agent)
	if err != nil {
		return nil, err
	}
	subject := storage.SubjectKey(tenant, agent)
	key := agentSessionKey(s.db, tenant, agent, a.TokenHash)
	if err := ch.staged.Put(ctx, key, subject, a.Session); err != nil {
		return nil, err
	}
	s.stage(ch, key, a.Session)
	evKey := loginEventKey(s.db, tenant, agent, uint16(rec.Logins%MaxLoginEvents))
	if err := ch.staged.Put(ctx, evKey, subject, ev); err != nil {
		return nil, err
	}
	s.stage(ch, evKey, ev)
	rec.Logins++
	return &actorspb.Result{Created: true}, s.putAccount(ctx, ch, tenant, agent, rec)
}

func (s *state) removeAgentSessions(ctx context.Context, ch *change, r *actorspb.RemoveAgentSessions) (*actorspb.Result, error) {
	tenant, err := idFrom(r.TenantId, "tenant_id")
	if err != nil {
		return nil, err
	}
	agent, err := idFrom(r.AgentId, "agent_id")
	if err != nil {
		return nil, err
	}
	if len(r.TokenHashes) > maxSessionsPerRemove {
		return nil, fmt.Errorf("%w: at most %d sessions at once", ErrInvalid, maxSessionsPerRemove)
	}
	for _, h := range r.TokenHashes {
		if _, err := keyFrom(h, "token_hashes"); err != nil {
			return nil, err
		}
	}
	for _, h := range r.TokenHashes {
		key := agentSessionKey(s.db, tenant, agent, h)
		if err := ch.staged.Delete(key); err != nil {
			return nil, err
		}
		s.stage(ch, key, nil)
	}
	return &actorspb.Result{}, nil
}

func (s *state) setAgentPassword(ctx context.Context, ch *change, p *actorspb.SetAgentPassword) (*actorspb.Result, error) {
	tenant, err := idFrom(p.TenantId, "tenant_id")
	if err != nil {
		return nil, err
	}
	agent, err := idFrom(p.AgentId, "agent_id")
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(p.PasswordHash, "$argon2id$") || len(p.PasswordHash) > 512 {
		return nil, fmt.Errorf("%w: password hash must be argon2id", ErrInvalid)
	}
	key := agentKey(s.db, tenant, agent)
	var rec actorspb.AgentRecord
	if m, ok := s.stagedRecord(key); ok {
		if m == nil {
			return nil, ErrNotFound
		}
		proto.Merge(&rec, m)
	} else if err := s.db.Get(ctx, key, &rec); errors.Is(err, storage.ErrNotFound) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, err
	}
	rec.PasswordHash = p.PasswordHash
	if err := ch.staged.Put(ctx, key, storage.SubjectKey(tenant, agent), &rec); err != nil {
		return nil, err
	}
	s.stage(ch, key, &rec)
	return &actorspb.Result{}, nil
}

func (s *state) verifyAgentEmail(ctx context.Context, ch *change, v *actorspb.VerifyAgentEmail) (*actorspb.Result, error) {
	return s.editAccount(ctx, ch, v.TenantId, v.AgentId, func(rec *actorspb.AccountRecord) error {
		rec.EmailVerified = true
		return nil
	})
}

func (s *state) setupTwoFactor(ctx context.Context, ch *change, t *actorspb.SetupTwoFactor) (*actorspb.Result, error) {
	if t.PendingSecret == "" || len(t.PendingSecret) > maxSecretBytes {
		return nil, fmt.Errorf("%w: a secret of 1 to %d bytes", ErrInvalid, maxSecretBytes)
	}
	return s.editAccount(ctx, ch, t.TenantId, t.AgentId, func(rec *actorspb.AccountRecord) error {
		if rec.TotpSecret != "" {
			return fmt.Errorf("%w: two-factor is on", ErrExists)
		}
		rec.TotpPendingSecret = t.PendingSecret
		return nil
	})
}

func (s *state) enableTwoFactor(ctx context.Context, ch *change, e *actorspb.EnableTwoFactor) (*actorspb.Result, error) {
	if e.Secret == "" || len(e.RecoveryCodeHashes) == 0 || len(e.RecoveryCodeHashes) > maxRecoveryCodes {
		return nil, fmt.Errorf("%w: a secret and 1 to %d recovery codes", ErrInvalid, maxRecoveryCodes)
	}
	for _, h := range e.RecoveryCodeHashes {
		if _, err := keyFrom(h, "recovery_code_hashes"); err != nil {
			return nil, err
		}
	}
	return s.editAccount(ctx, ch, e.TenantId, e.AgentId, func(rec *actorspb.AccountRecord) error {
		switch {
		case rec.TotpSecret != "":
			return fmt.Errorf("%w: two-factor is on", ErrExists)
		case rec.TotpPendingSecret != e.Secret:
			return fmt.Errorf("%w: no such pending two-factor setup", ErrNotFound)
		}
		rec.TotpSecret, rec.TotpPendingSecret = e.Secret, ""
		rec.RecoveryCodeHashes, rec.TotpLastStep = e.RecoveryCodeHashes, e.Step
		return nil
	})
}

func (s *state) disableTwoFactor(ctx context.Context, ch *change, d *actorspb.DisableTwoFactor) (*actorspb.Result, error) {
	return s.editAccount(ctx, ch, d.TenantId, d.AgentId, func(rec *actorspb.AccountRecord) error {
		rec.TotpSecret, rec.TotpPendingSecret, rec.RecoveryCodeHashes, rec.TotpLastStep = "", "", nil, 0
		return nil
	})
}

func (s *state) useSecondFactor(ctx context.Context, ch *change, u *actorspb.UseSecondFactor) (*actorspb.Result, error) {
	if len(u.RecoveryCodeHash) != 0 {
		if _, err := keyFrom(u.RecoveryCodeHash, "recovery_code_hash"); err != nil {
			return nil, err
		}
	}
	return s.editAccount(ctx, ch, u.TenantId, u.AgentId, func(rec *actorspb.AccountRecord) error {
		if rec.TotpSecret == "" {
			return fmt.Errorf("%w: two-factor is off", ErrNotFound)
		}
		if len(u.RecoveryCodeHash) != 0 {
			i := slices.IndexFunc(rec.RecoveryCodeHashes, func(h []byte) bool { return bytes.Equal(h, u.RecoveryCodeHash) })
			if i < 0 {
				return fmt.Errorf("%w: no such recovery code", ErrNotFound)
			}
			rec.RecoveryCodeHashes = slices.Delete(rec.RecoveryCodeHashes, i, i+1)
			return nil
		}
		if u.Step <= rec.TotpLastStep {
			return fmt.Errorf("%w: a code of this time step was used", ErrNotFound)
		}
		rec.TotpLastStep = u.Step
		return nil
	})
}

func (s *state) consumeToken(ctx context.Context, ch *change, c *actorspb.ConsumeToken) (*actorspb.Result, error) {
	key := tokenKey(s.db, c.Hash)
	var rec actorspb.TokenRecord
	switch found, err := s.exists(ctx, key, &rec); {
	case err != nil:
		return nil, err
	case !found || rec.Kind != c.Kind:
		return nil, ErrNotFound
	}
	if err := ch.staged.Delete(key); err != nil {
		return nil, err
	}
	s.stage(ch, key, nil)
	return &actorspb.Result{}, nil
}

// Account returns an agent's account record; an agent who never changed
// it has an empty one (ErrNotFound only when the agent does not exist).
func (m *Machine) Account(ctx context.Context, tenant, agent storage.ID) (*actorspb.AccountRecord, error) {
	var rec actorspb.AccountRecord
	err := m.read(ctx, accountKey(m.db, tenant, agent), &rec)
	if errors.Is(err, ErrNotFound) {
		if _, err := m.Agent(ctx, tenant, agent); err != nil {
			return nil, err
		}
		return &actorspb.AccountRecord{}, nil
	}
	return &rec, err
}

// AgentSessions returns the token hashes of an agent's sessions, at most
// limit.
func (m *Machine) AgentSessions(ctx context.Context, tenant, agent storage.ID, limit int) ([][]byte, error) {
	prefix := agentSessionPrefix(m.db, tenant, agent)
	var out [][]byte
	err := m.scan(ctx, prefix, storage.PrefixEnd(prefix), limit, func(key []byte, _ func(proto.Message) error) error {
		out = append(out, bytes.Clone(key[len(prefix):]))
		return nil
	})
	return out, err
}

// LoginEvents returns an agent's latest logins, newest first, at most
// MaxLoginEvents.
func (m *Machine) LoginEvents(ctx context.Context, tenant, agent storage.ID) ([]*actorspb.LoginEvent, error) {
	acc, err := m.Account(ctx, tenant, agent)
	if err != nil {
		return nil, err
	}
	type slotted struct {
		age uint64 // 0: the newest
		ev  *actorspb.LoginEvent
	}
	newest := (acc.Logins + MaxLoginEvents - 1) % MaxLoginEvents
	prefix := storage.Key(shardOf(m.db, tenant), TableLoginEvent, tenant[:], agent[:])
	var all []slotted
	err = m.scan(ctx, prefix, storage.PrefixEnd(prefix), MaxLoginEvents, func(key []byte, open func(proto.Message) error) error {
		var ev actorspb.LoginEvent
		if err := open(&ev); err != nil {
			return err
		}
		slot := uint64(binary.BigEndian.Uint16(key[len(key)-2:]))
		all = append(all, slotted{age: (newest + MaxLoginEvents - slot) % MaxLoginEvents, ev: &ev})
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(all, func(a, b slotted) int { return int(a.age) - int(b.age) })
	out := make([]*actorspb.LoginEvent, len(all))
	for i, s := range all {
		out[i] = s.ev
	}
	return out, nil
}
