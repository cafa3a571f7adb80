package shard

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
	"google.golang.org/protobuf/proto"
)

// Tenants, agents, tokens, visitors and blind indexes: the records that
// accounts and widget sessions are made of. Creations are checked against
// the store and against what earlier commands of the same batch staged.

// indexRoute is what places an index entry in a shard: a hash of its name
// that needs no key, so that every node, whatever its keys, sends a claim
// or a lookup of the same name to the same shard. Only the shard number is
// ever derived from it; nothing is stored under it.
func indexRoute(n *actorspb.IndexName) []byte {
	h := sha256.New()
	h.Write([]byte("chatpacket index route v1"))
	for _, part := range [][]byte{{byte(n.GetScope())}, n.GetTenantId(), []byte(n.GetPurpose()), n.GetValue()} {
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(part))))
		h.Write(part)
	}
	return h.Sum(nil)
}

// indexKey is where this node keeps the entry of n: under the HMAC of the
// value with this node's key of the scope (the tenant's, or the cluster
// index key), so the value itself is never stored and the entry dies with
// that key.
func indexKey(ctx context.Context, db *storage.DB, n *actorspb.IndexName) ([]byte, storage.KeyRef, error) {
	if n.GetPurpose() == "" || len(n.GetValue()) == 0 || len(n.GetValue()) > 1024 {
		return nil, storage.KeyRef{}, fmt.Errorf("%w: an index name needs a purpose and a value of 1 to 1024 bytes", ErrInvalid)
	}
	var tenant storage.ID
	if n.GetScope() == actorspb.IndexScope_INDEX_SCOPE_TENANT {
		var err error
		if tenant, err = idFrom(n.GetTenantId(), "name.tenant_id"); err != nil {
			return nil, storage.KeyRef{}, err
		}
	}
	ref, err := indexRef(n.GetScope(), tenant)
	if err != nil {
		return nil, storage.KeyRef{}, err
	}
	blind, err := db.Blind(ctx, ref, n.GetPurpose(), n.GetValue())
	if err != nil {
		return nil, storage.KeyRef{}, err
	}
	return storage.Key(storage.ShardOf(indexRoute(n), db.Shards()), TableIndex, blind), ref, nil
}

func tenantKey(db *storage.DB, tenant storage.ID) []byte {
	return storage.Key(shardOf(db, tenant), TableTenant, tenant[:])
}

func agentKey(db *storage.DB, tenant, agent storage.ID) []byte {
	return storage.Key(shardOf(db, tenant), TableAgent, tenant[:], agent[:])
}

func tokenKey(db *storage.DB, hash []byte) []byte {
	return storage.Key(storage.ShardOf(hash, db.Shards()), TableToken, hash)
}

func visitorKey(db *storage.DB, visitor storage.ID) []byte {
	return storage.Key(shardOf(db, visitor), TableVisitor, visitor[:])
}

func indexRef(scope actorspb.IndexScope, tenant storage.ID) (storage.KeyRef, error) {
	switch scope {
	case actorspb.IndexScope_INDEX_SCOPE_GLOBAL:
		return storage.GlobalIndexKey, nil
	case actorspb.IndexScope_INDEX_SCOPE_TENANT:
		return storage.TenantKey(tenant), nil
	}
	return storage.KeyRef{}, fmt.Errorf("%w: index scope %v", ErrInvalid, scope)
}

// staged reports whether an earlier command of this batch wrote key, and
// what (nil for a deletion).
func (s *state) stagedRecord(key []byte) (proto.Message, bool) {
	m, ok := s.staged[string(key)]
	return m, ok
}

func (s *state) stage(ch *change, key []byte, m proto.Message) {
	ch.records = append(ch.records, stagedRecord{key: key, msg: m})
}

// exists reports whether key holds a record, staged or stored. A record
// sealed under an erased key counts as existing: its id stays taken.
func (s *state) exists(ctx context.Context, key []byte, into proto.Message) (bool, error) {
	if m, ok := s.stagedRecord(key); ok {
		if m != nil && into != nil {
			proto.Merge(into, m)
		}
		return m != nil, nil
	}
	if into == nil {
		into = &actorspb.IndexRecord{} // any message: only existence matters
	}
	switch err := s.db.Get(ctx, key, into); {
	case err == nil, errors.Is(err, storage.ErrErased):
		return true, nil
	case errors.Is(err, storage.ErrNotFound):
		return false, nil
	default:
		return false, err
	}
}

func (s *state) claimIndex(ctx context.Context, ch *change, c *actorspb.ClaimIndex) (*actorspb.Result, error) {
	if _, err := idFrom(c.GetRecord().GetTenantId(), "record.tenant_id"); err != nil {
		return nil, err
	}
	if _, err := idFrom(c.GetRecord().GetTargetId(), "record.target_id"); err != nil {
		return nil, err
	}
	if c.GetName().GetScope() == actorspb.IndexScope_INDEX_SCOPE_TENANT && !bytes.Equal(c.GetName().GetTenantId(), c.GetRecord().GetTenantId()) {
		return nil, fmt.Errorf("%w: a tenant index entry must name its own tenant", ErrInvalid)
	}
	key, ref, err := indexKey(ctx, s.db, c.GetName())
	if err != nil {
		return nil, err
	}
	var have actorspb.IndexRecord
	switch found, err := s.exists(ctx, key, &have); {
	case err != nil:
		return nil, err
	case found && proto.Equal(&have, c.Record):
		return &actorspb.Result{}, nil // a retry
	case found && (c.Replace == nil || !proto.Equal(&have, c.Replace)):
		return nil, fmt.Errorf("%w: index entry taken", ErrExists)
	}
	if err := ch.staged.Put(ctx, key, ref, c.Record); err != nil {
		return nil, err
	}
	s.stage(ch, key, c.Record)
	return &actorspb.Result{Created: true}, nil
}

func (s *state) createTenant(ctx context.Context, ch *change, t *actorspb.TenantRecord) (*actorspb.Result, error) {
	tenant, err := idFrom(t.GetId(), "tenant.id")
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(t.Name) == "" || len(t.Name) > 200 {
		return nil, fmt.Errorf("%w: tenant name must have 1 to 200 bytes", ErrInvalid)
	}
	if len(t.WidgetKey) < 16 {
		return nil, fmt.Errorf("%w: widget key too short", ErrInvalid)
	}
	key := tenantKey(s.db, tenant)
	if found, err := s.exists(ctx, key, nil); err != nil {
		return nil, err
	} else if found {
		return nil, fmt.Errorf("%w: tenant", ErrExists)
	}
	if err := ch.staged.Put(ctx, key, storage.TenantKey(tenant), t); err != nil {
		return nil, err
	}
	s.stage(ch, key, t)
	return &actorspb.Result{Created: true}, nil
}

func (s *state) createAgent(ctx context.Context, ch *change, a *actorspb.AgentRecord) (*actorspb.Result, error) {
	tenant, err := idFrom(a.GetTenantId(), "agent.tenant_id")
	if err != nil {
		return nil, err
	}
	agent, err := idFrom(a.GetId(), "agent.id")
	if err != nil {
		return nil, err
	}
	switch {
	case strings.TrimSpace(a.Name) == "" || len(a.Name) > 200:
		return nil, fmt.Errorf("%w: agent name must have 1 to 200 bytes", ErrInvalid)
	case !strings.Contains(a.Email, "@") || len(a.Email) > 254:
		return nil, fmt.Errorf("%w: agent email", ErrInvalid)
	case !strings.HasPrefix(a.PasswordHash, "$argon2id$"):
		return nil, fmt.Errorf("%w: password hash must be argon2id", ErrInvalid)
	case a.Role == actorspb.Role_ROLE_UNSPECIFIED:
		return nil, fmt.Errorf("%w: agent role", ErrInvalid)
	}
	if found, err := s.exists(ctx, tenantKey(s.db, tenant), nil); err != nil {
		return nil, err
	} else if !found {
		return nil, ErrNotFound
	}
	key := agentKey(s.db, tenant, agent)
	if found, err := s.exists(ctx, key, nil); err != nil {
		return nil, err
	} else if found {
		return nil, fmt.Errorf("%w: agent", ErrExists)
	}
	if err := ch.staged.Put(ctx, key, storage.SubjectKey(tenant, agent), a); err != nil {
		return nil, err
	}
	s.stage(ch, key, a)
	return &actorspb.Result{Created: true}, nil
}

func (s *state) putToken(ctx context.Context, ch *change, p *actorspb.PutToken) (*actorspb.Result, error) {
	tenant, err := idFrom(p.GetToken().GetTenantId(), "token.tenant_id")
	if err != nil {
		return nil, err
	}
	subject, err := idFrom(p.GetToken().GetSubjectId(), "token.subject_id")
	if err != nil {
		return nil, err
	}
	if p.Token.Kind == actorspb.TokenKind_TOKEN_KIND_UNSPECIFIED {
		return nil, fmt.Errorf("%w: token kind", ErrInvalid)
	}
	// A token is its holder's: sealed under their key, it stops working
	// the moment they are erased.
	key := tokenKey(s.db, p.Hash)
	if err := ch.staged.Put(ctx, key, storage.SubjectKey(tenant, subject), p.Token); err != nil {
		return nil, err
	}
	s.stage(ch, key, p.Token)
	return &actorspb.Result{}, nil
}

func (s *state) deleteToken(ch *change, d *actorspb.DeleteToken) (*actorspb.Result, error) {
	key := tokenKey(s.db, d.Hash)
	if err := ch.staged.Delete(key); err != nil {
		return nil, err
	}
	s.stage(ch, key, nil)
	return &actorspb.Result{}, nil
}

func (s *state) createVisitor(ctx context.Context, ch *change, v *actorspb.VisitorRecord) (*actorspb.Result, error) {
	visitor, err := idFrom(v.GetId(), "visitor.id")
	if err != nil {
		return nil, err
	}
	tenant, err := idFrom(v.GetTenantId(), "visitor.tenant_id")
	if err != nil {
		return nil, err
	}
	key := visitorKey(s.db, visitor)
	var have actorspb.VisitorRecord
	switch found, err := s.exists(ctx, key, &have); {
	case err != nil:
		return nil, err
	case found && bytes.Equal(have.TenantId, tenant[:]):
		return &actorspb.Result{}, nil // a retry
	case found:
		return nil, fmt.Errorf("%w: visitor", ErrExists)
	}
	if err := ch.staged.Put(ctx, key, storage.SubjectKey(tenant, visitor), v); err != nil {
		return nil, err
	}
	s.stage(ch, key, v)
	// The tenant's visitor index, in the same batch: a visitor is never
	// without its entry.
	entry := &actorspb.TenantVisitor{CreatedUnixMs: v.CreatedUnixMs}
	ikey := tenantVisitorKey(s.db, tenant, visitor)
	if err := ch.staged.Put(ctx, ikey, storage.TenantKey(tenant), entry); err != nil {
		return nil, err
	}
	s.stage(ch, ikey, entry)
	return &actorspb.Result{Created: true}, nil
}

// Reads of the account records. Each answers ErrNotFound when there is
// nothing, and passes storage.ErrErased through.

// Index returns the entry of an index name.
func (m *Machine) Index(ctx context.Context, name *actorspb.IndexName) (*actorspb.IndexRecord, error) {
	key, _, err := indexKey(ctx, m.db, name)
	if err != nil {
		return nil, err
	}
	var rec actorspb.IndexRecord
	return &rec, m.read(ctx, key, &rec)
}

// Tenant returns a tenant's record.
func (m *Machine) Tenant(ctx context.Context, tenant storage.ID) (*actorspb.TenantRecord, error) {
	var rec actorspb.TenantRecord
	return &rec, m.read(ctx, tenantKey(m.db, tenant), &rec)
}

// Agent returns an agent of tenant.
func (m *Machine) Agent(ctx context.Context, tenant, agent storage.ID) (*actorspb.AgentRecord, error) {
	var rec actorspb.AgentRecord
	return &rec, m.read(ctx, agentKey(m.db, tenant, agent), &rec)
}

// Token returns the record of a token's SHA-256.
func (m *Machine) Token(ctx context.Context, hash []byte) (*actorspb.TokenRecord, error) {
	var rec actorspb.TokenRecord
	return &rec, m.read(ctx, tokenKey(m.db, hash), &rec)
}

// Visitor returns a visitor of tenant.
func (m *Machine) Visitor(ctx context.Context, tenant, visitor storage.ID) (*actorspb.VisitorRecord, error) {
	var rec actorspb.VisitorRecord
	if err := m.read(ctx, visitorKey(m.db, visitor), &rec); err != nil {
		return nil, err
	}
	if !bytes.Equal(rec.TenantId, tenant[:]) {
		return nil, ErrNotFound
	}
	return &rec, nil
}

func (m *Machine) read(ctx context.Context, key []byte, into proto.Message) error {
	return m.get(ctx, key, into)
}

func inboxKey(db *storage.DB, tenant, conv storage.ID) []byte {
	return storage.Key(shardOf(db, tenant), TableInbox, tenant[:], conv[:])
}

// addToInbox lists a conversation in its tenant's inbox; adding it again
// changes nothing.
func (s *state) addToInbox(ctx context.Context, ch *change, a *actorspb.AddToInbox) (*actorspb.Result, error) {
	tenant, err := idFrom(a.TenantId, "tenant_id")
	if err != nil {
		return nil, err
	}
	conv, err := idFrom(a.GetEntry().GetConversationId(), "entry.conversation_id")
	if err != nil {
		return nil, err
	}
	key := inboxKey(s.db, tenant, conv)
	if found, err := s.exists(ctx, key, nil); err != nil || found {
		return &actorspb.Result{}, err
	}
	if err := ch.staged.Put(ctx, key, storage.TenantKey(tenant), a.Entry); err != nil {
		return nil, err
	}
	s.stage(ch, key, a.Entry)
	return &actorspb.Result{Created: true}, nil
}

// Inbox returns up to limit conversations of tenant's inbox, in id order
// after the conversation id after (empty: from the start).
func (m *Machine) Inbox(ctx context.Context, tenant storage.ID, after storage.ID, limit int) ([]*actorspb.InboxEntry, error) {
	prefix := storage.Key(shardOf(m.db, tenant), TableInbox, tenant[:])
	lower := prefix
	if after != (storage.ID{}) {
		lower = append(inboxKey(m.db, tenant, after), 0)
	}
	var out []*actorspb.InboxEntry
	err := m.scan(ctx, lower, storage.PrefixEnd(prefix), limit, func(_ []byte, open func(proto.Message) error) error {
		var e actorspb.InboxEntry
		if err := open(&e); err != nil {
			return err
		}
		out = append(out, &e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
