// Package shard is the state machine of the grains' shards: every change of
// state (a conversation's messages, a tenant's settings and team, tokens,
// visitors, blind indexes) is a Command applied here, in order, per shard.
// Grains never write the store themselves; they propose commands.
//
// Each shard is a raft group (cluster/replica): a Command is proposed to
// its shard's log, and once a majority of the shard's replicas have it on
// disk, every replica's FSM applies it with the same code. Applying is
// therefore deterministic: ids and times come in the command, chosen by
// the proposer. One node is the same code with one replica per shard.
//
// Group commit comes from raft: the leader appends every command proposed
// while its previous append was in flight with one synced write, and the
// FSM applies each committed run of entries in one store batch.
//
// A command that fails (bad input, an erased visitor) is dropped whole and
// answered with its error; the rest of its batch still applies.
//
// Concurrency: a Machine is safe for concurrent use. Apply blocks until the
// command is applied or has failed.
package shard

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
	"google.golang.org/protobuf/proto"
)

// Tables of the shard state machine, after storage's own.
const (
	TableConversation        = storage.TableFirstUser + iota // ConversationRecord by conversation id
	TableMessage                                             // MessageRecord by conversation id, seq
	TableClientID                                            // ClientIDRecord by conversation id, blind(client_id)
	TableIndex                                               // IndexRecord by blind index token
	TableTenant                                              // TenantRecord by tenant id
	TableAgent                                               // AgentRecord by tenant id, agent id
	TableToken                                               // TokenRecord by SHA-256 of the token
	TableVisitor                                             // VisitorRecord by visitor id
	TableInbox                                               // InboxEntry by tenant id, conversation id
	TablePageView                                            // PageViewRecord by visitor id, time
	TableVisitorConversation                                 // VisitorConversation by visitor id, conversation id
	TableApplied                                             // AppliedRecord: the shard's last applied raft index
	TableAgentSession                                        // (accounts) an agent's sessions and tokens, by tenant id, agent id, token hash
	TableLoginEvent                                          // (accounts) LoginEvent by tenant id, agent id, time
	TableTeam                                                // (teams) TeamRecord by tenant id, team id
	TableAudit                                               // (audit) AuditEvent by tenant id, time
	TablePrivacyRequest                                      // (privacy) PrivacyRequest by tenant id, request id
	TableTenantVisitor                                       // (export) TenantVisitor by tenant id, visitor id, on the visitor's shard
	TableInvitation                                          // (export) InvitationRecord by tenant id, token hash
	TablePolicyNotice                                        // (policy) PolicyNotice by effective time, on policyRoute's shard
	TableAnalytics                                           // (retention) AnalyticsEvent by tenant id, month, time, event id (in the visitor's shard)
	TableJobRun                                              // (retention) JobRunRecord by job name
)

// Limits on what a command may carry.
const (
	MaxBodyBytes     = 16 << 10
	MaxClientIDBytes = 128
)

var (
	// ErrNotFound answers a command or read about a conversation that does
	// not exist in the caller's tenant (another tenant's id included).
	ErrNotFound = errors.New("shard: not found")
	// ErrInvalid answers a command whose fields are wrong; it changes nothing.
	ErrInvalid = errors.New("shard: invalid command")
	// ErrStopped answers calls after Close.
	ErrStopped = errors.New("shard: machine stopped")
	// ErrUnavailable answers a command whose shard has no reachable leader
	// (an election is running, or this node is cut off): try again.
	ErrUnavailable = errors.New("shard: unavailable")
	// ErrNoReplica is what a Log's ReadIndex answers on a node that holds
	// no replica of the shard: reads go to the shard's leader (Log.Read).
	ErrNoReplica = errors.New("shard: no replica of the shard on this node")
	// ErrExists answers a command that would create what exists already
	// (an email claimed by another account, a tenant id taken).
	ErrExists = errors.New("shard: exists")
)

// cachedConversations bounds each FSM's cache of committed conversation
// records.
const cachedConversations = 1024

// Log is the replicated log of every shard: Propose appends data to shard's
// log (on its leader, wherever that is) and returns what the shard's FSM
// answered, an *actorspb.Reply, once the entry is committed and applied.
// ReadIndex is how far this node's replica of shard must have applied
// before a read of it sees every write acknowledged so far (0 when this
// node leads the shard: its state machine applied each of them before it
// was acknowledged).
// A node that holds no replica of a shard (more nodes than replicas) reads
// it through its leader: Read carries a marshaled actorspb.RecordRead to
// the leader's Machine.ServeRead and brings back its answer.
type Log interface {
	Propose(ctx context.Context, shard uint16, data []byte) (any, error)
	ReadIndex(ctx context.Context, shard uint16) (uint64, error)
	Read(ctx context.Context, shard uint16, read []byte) ([]byte, error)
}

// Machine applies commands to the shards of one store through their logs,
// and reads what this node's replicas hold.
type Machine struct {
	db   *storage.DB
	fsms []*FSM

	mu     sync.RWMutex
	log    Log
	closed bool
}

// New opens the state machines of every shard of db. Commands need a Log
// (SetLog) before they can be applied.
func New(db *storage.DB) (*Machine, error) {
	m := &Machine{db: db, fsms: make([]*FSM, db.Shards())}
	for i := range m.fsms {
		f, err := NewFSM(db, uint16(i))
		if err != nil {
			return nil, err
		}
		m.fsms[i] = f
	}
	return m, nil
}

// FSM returns the state machine of shard, for its raft group.
func (m *Machine) FSM(shard uint16) *FSM { return m.fsms[shard] }

// SetLog gives the machine the log its commands go through.
func (m *Machine) SetLog(l Log) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.log = l
}

// Close makes later Applies fail with ErrStopped. The FSMs stay usable by
// their raft groups until those shut down. Close is safe to call twice.
func (m *Machine) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
}

// Apply proposes cmd to the shard it is about and answers once it is
// applied. The result's Conversation may be shared with an FSM's cache:
// read it, never modify it.
func (m *Machine) Apply(ctx context.Context, cmd *actorspb.Command) (*actorspb.Result, error) {
	route, err := routeOf(cmd)
	if err != nil {
		return nil, err
	}
	data, err := proto.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	m.mu.RLock()
	log, closed := m.log, m.closed
	m.mu.RUnlock()
	if closed || log == nil {
		return nil, ErrStopped
	}
	// Once proposed, the command may be applied whatever the caller does;
	// a retry is safe (posts by client_id, claims and creations are
	// idempotent for the same values).
	out, err := log.Propose(ctx, storage.ShardOf(route, m.db.Shards()), data)
	if err != nil {
		return nil, err
	}
	r, ok := out.(*actorspb.Reply)
	if !ok {
		return nil, fmt.Errorf("shard: the log answered %T", out)
	}
	if err := errorOf(r); err != nil {
		return nil, err
	}
	if r.Result.GetErased() {
		// Applied, as an erased stand-in: the visitor was erased first.
		return nil, fmt.Errorf("%w: the conversation's visitor was erased", storage.ErrErased)
	}
	return r.Result, nil
}

// caughtUp waits until this node's replica of the shard that key is in has
// applied every write acknowledged before the call, so that a read of key
// that follows sees them: a client that wrote through one node and reads
// through another never misses its own write.
func (m *Machine) caughtUp(ctx context.Context, key []byte) error {
	m.mu.RLock()
	log := m.log
	m.mu.RUnlock()
	if log == nil {
		return nil // no log: nothing is written but what this node applied
	}
	shard := binary.BigEndian.Uint16(key)
	if int(shard) >= len(m.fsms) {
		return fmt.Errorf("%w: key of shard %d", ErrInvalid, shard)
	}
	index, err := log.ReadIndex(ctx, shard)
	if err != nil {
		return err
	}
	return m.fsms[shard].waitApplied(ctx, index)
}

// routeOf returns the id whose shard applies a command: the conversation,
// tenant, visitor, index token or token hash it is about.
func routeOf(cmd *actorspb.Command) ([]byte, error) {
	var raw []byte
	field := "conversation_id"
	switch op := cmd.GetOp().(type) {
	case *actorspb.Command_Post:
		raw = op.Post.ConversationId
	case *actorspb.Command_Assign:
		raw = op.Assign.ConversationId
	case *actorspb.Command_Close:
		raw = op.Close.ConversationId
	case *actorspb.Command_SetStatus:
		raw = op.SetStatus.ConversationId
	case *actorspb.Command_MarkRead:
		raw = op.MarkRead.ConversationId
	case *actorspb.Command_ClaimIndex:
		return indexRoute(op.ClaimIndex.GetName()), nil
	case *actorspb.Command_CreateTenant:
		raw, field = op.CreateTenant.GetTenant().GetId(), "tenant.id"
	case *actorspb.Command_CreateAgent:
		raw, field = op.CreateAgent.GetAgent().GetTenantId(), "agent.tenant_id"
	case *actorspb.Command_PutToken:
		return keyFrom(op.PutToken.Hash, "hash")
	case *actorspb.Command_DeleteToken:
		return keyFrom(op.DeleteToken.Hash, "hash")
	case *actorspb.Command_CreateVisitor:
		raw, field = op.CreateVisitor.GetVisitor().GetId(), "visitor.id"
	case *actorspb.Command_AddToInbox:
		raw, field = op.AddToInbox.TenantId, "tenant_id"
	case *actorspb.Command_TouchVisitor:
		raw, field = op.TouchVisitor.VisitorId, "visitor_id"
	case *actorspb.Command_AddPageView:
		raw, field = op.AddPageView.VisitorId, "visitor_id"
	case *actorspb.Command_SetVisitorContact:
		raw, field = op.SetVisitorContact.VisitorId, "visitor_id"
	case *actorspb.Command_AddVisitorConversation:
		raw, field = op.AddVisitorConversation.VisitorId, "visitor_id"
	case *actorspb.Command_UpdateTenant:
		raw, field = op.UpdateTenant.TenantId, "tenant_id"
	case *actorspb.Command_AddAgentSession:
		raw, field = op.AddAgentSession.TenantId, "tenant_id"
	case *actorspb.Command_RemoveAgentSessions:
		raw, field = op.RemoveAgentSessions.TenantId, "tenant_id"
	case *actorspb.Command_SetAgentPassword:
		raw, field = op.SetAgentPassword.TenantId, "tenant_id"
	case *actorspb.Command_VerifyAgentEmail:
		raw, field = op.VerifyAgentEmail.TenantId, "tenant_id"
	case *actorspb.Command_SetupTwoFactor:
		raw, field = op.SetupTwoFactor.TenantId, "tenant_id"
	case *actorspb.Command_EnableTwoFactor:
		raw, field = op.EnableTwoFactor.TenantId, "tenant_id"
	case *actorspb.Command_DisableTwoFactor:
		raw, field = op.DisableTwoFactor.TenantId, "tenant_id"
	case *actorspb.Command_UseSecondFactor:
		raw, field = op.UseSecondFactor.TenantId, "tenant_id"
	case *actorspb.Command_ConsumeToken:
		return keyFrom(op.ConsumeToken.Hash, "hash")
	case *actorspb.Command_PutTeam:
		raw, field = op.PutTeam.TenantId, "tenant_id"
	case *actorspb.Command_DeleteTeam:
		raw, field = op.DeleteTeam.TenantId, "tenant_id"
	case *actorspb.Command_SetConversationTeam:
		raw = op.SetConversationTeam.ConversationId
	case *actorspb.Command_SetAgentRole:
		raw, field = op.SetAgentRole.TenantId, "tenant_id"
	case *actorspb.Command_AppendAudit:
		raw, field = op.AppendAudit.TenantId, "tenant_id"
	case *actorspb.Command_SetVisitorRestricted:
		raw, field = op.SetVisitorRestricted.VisitorId, "visitor_id"
	case *actorspb.Command_PutPrivacyRequest:
		raw, field = op.PutPrivacyRequest.TenantId, "tenant_id"
	case *actorspb.Command_ClosePrivacyRequest:
		raw, field = op.ClosePrivacyRequest.TenantId, "tenant_id"
	case *actorspb.Command_ShredKeys:
		raw, field = op.ShredKeys.Route, "route"
	case *actorspb.Command_WithdrawConsent:
		raw, field = op.WithdrawConsent.VisitorId, "visitor_id"
	case *actorspb.Command_PutInvitation:
		raw, field = op.PutInvitation.TenantId, "tenant_id"
	case *actorspb.Command_PutPolicyNotice:
		return policyRoute[:], nil
	case *actorspb.Command_SetTermination:
		raw, field = op.SetTermination.TenantId, "tenant_id"
	case *actorspb.Command_RecordJobRun:
		raw, field = op.RecordJobRun.Route, "route"
	case *actorspb.Command_PurgeAnalytics:
		raw, field = op.PurgeAnalytics.Route, "route"
	case *actorspb.Command_ReleaseIndex:
		return indexRoute(op.ReleaseIndex.GetName()), nil
	default:
		return nil, fmt.Errorf("%w: no operation", ErrInvalid)
	}
	id, err := idFrom(raw, field)
	return id[:], err
}

// keyFrom checks a 32-byte blind index token or token hash.
func keyFrom(raw []byte, field string) ([]byte, error) {
	if len(raw) != 32 {
		return nil, fmt.Errorf("%w: %s has %d bytes; want 32", ErrInvalid, field, len(raw))
	}
	return raw, nil
}

func idFrom(raw []byte, field string) (storage.ID, error) {
	if len(raw) != len(storage.ID{}) {
		return storage.ID{}, fmt.Errorf("%w: %s has %d bytes; want 16", ErrInvalid, field, len(raw))
	}
	return storage.BytesID(raw), nil
}
