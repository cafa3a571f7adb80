package shard

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
	"google.golang.org/protobuf/proto"
)

// state is what one batch applies its commands to: the store as committed,
// plus what the batch's earlier commands changed.
type state struct {
	db        *storage.DB
	staged    map[string]proto.Message                    // records earlier commands of the batch wrote; nil: deleted
	committed map[storage.ID]*actorspb.ConversationRecord // the applier's cache; read only here
	convs     map[storage.ID]*actorspb.ConversationRecord // changed by this batch
	clientIDs map[string]uint64                           // conversation id + blind client id → seq
}

func newState(db *storage.DB, committed map[storage.ID]*actorspb.ConversationRecord) *state {
	return &state{db: db, committed: committed, staged: map[string]proto.Message{},
		convs: map[storage.ID]*actorspb.ConversationRecord{}, clientIDs: map[string]uint64{}}
}

// change is what one command does, staged until it has fully succeeded.
type change struct {
	staged   *storage.Batch
	conv     *actorspb.ConversationRecord // the conversation after the command
	clientID string                       // key in state.clientIDs, for a post
	seq      uint64
	records  []stagedRecord // account records, for later commands of the batch
}

type stagedRecord struct {
	key []byte
	msg proto.Message // nil: deleted
}

// apply stages cmd's writes and, when it succeeds whole, adds them to group
// and to the batch's view.
func (s *state) apply(ctx context.Context, group *storage.Batch, cmd *actorspb.Command) (*actorspb.Result, error) {
	ch := &change{staged: s.db.NewBatch()}
	defer ch.staged.Close()
	var res *actorspb.Result
	var err error
	switch op := cmd.GetOp().(type) {
	case *actorspb.Command_Post:
		res, err = s.post(ctx, ch, op.Post)
	case *actorspb.Command_Assign:
		res, err = s.assign(ctx, ch, op.Assign)
	case *actorspb.Command_Close:
		res, err = s.setStatus(ctx, ch, &actorspb.SetConversationStatus{
			TenantId: op.Close.TenantId, ConversationId: op.Close.ConversationId, Status: actorspb.ConversationStatus_CONVERSATION_STATUS_CLOSED})
	case *actorspb.Command_SetStatus:
		res, err = s.setStatus(ctx, ch, op.SetStatus)
	case *actorspb.Command_MarkRead:
		res, err = s.markRead(ctx, ch, op.MarkRead)
	case *actorspb.Command_ClaimIndex:
		res, err = s.claimIndex(ctx, ch, op.ClaimIndex)
	case *actorspb.Command_CreateTenant:
		res, err = s.createTenant(ctx, ch, op.CreateTenant.GetTenant())
	case *actorspb.Command_CreateAgent:
		res, err = s.createAgent(ctx, ch, op.CreateAgent.GetAgent())
	case *actorspb.Command_PutToken:
		res, err = s.putToken(ctx, ch, op.PutToken)
	case *actorspb.Command_DeleteToken:
		res, err = s.deleteToken(ch, op.DeleteToken)
	case *actorspb.Command_CreateVisitor:
		res, err = s.createVisitor(ctx, ch, op.CreateVisitor.GetVisitor())
	case *actorspb.Command_AddToInbox:
		res, err = s.addToInbox(ctx, ch, op.AddToInbox)
	case *actorspb.Command_TouchVisitor:
		res, err = s.touchVisitor(ctx, ch, op.TouchVisitor)
	case *actorspb.Command_AddPageView:
		res, err = s.addPageView(ctx, ch, op.AddPageView)
	case *actorspb.Command_SetVisitorContact:
		res, err = s.setVisitorContact(ctx, ch, op.SetVisitorContact)
	case *actorspb.Command_AddVisitorConversation:
		res, err = s.addVisitorConversation(ctx, ch, op.AddVisitorConversation)
	case *actorspb.Command_UpdateTenant:
		res, err = s.updateTenant(ctx, ch, op.UpdateTenant)
	case *actorspb.Command_AddAgentSession:
		res, err = s.addAgentSession(ctx, ch, op.AddAgentSession)
	case *actorspb.Command_RemoveAgentSessions:
		res, err = s.removeAgentSessions(ctx, ch, op.RemoveAgentSessions)
	case *actorspb.Command_SetAgentPassword:
		res, err = s.setAgentPassword(ctx, ch, op.SetAgentPassword)
	case *actorspb.Command_VerifyAgentEmail:
		res, err = s.verifyAgentEmail(ctx, ch, op.VerifyAgentEmail)
	case *actorspb.Command_SetupTwoFactor:
		res, err = s.setupTwoFactor(ctx, ch, op.SetupTwoFactor)
	case *actorspb.Command_EnableTwoFactor:
		res, err = s.enableTwoFactor(ctx, ch, op.EnableTwoFactor)
	case *actorspb.Command_DisableTwoFactor:
		res, err = s.disableTwoFactor(ctx, ch, op.DisableTwoFactor)
	case *actorspb.Command_UseSecondFactor:
		res, err = s.useSecondFactor(ctx, ch, op.UseSecondFactor)
	case *actorspb.Command_ConsumeToken:
		res, err = s.consumeToken(ctx, ch, op.ConsumeToken)
	case *actorspb.Command_PutTeam:
		res, err = s.putTeam(ctx, ch, op.PutTeam)
	case *actorspb.Command_DeleteTeam:
		res, err = s.deleteTeam(ctx, ch, op.DeleteTeam)
	case *actorspb.Command_SetConversationTeam:
		res, err = s.setConversationTeam(ctx, ch, op.SetConversationTeam)
	case *actorspb.Command_SetAgentRole:
		res, err = s.setAgentRole(ctx, ch, op.SetAgentRole)
	case *actorspb.Command_AppendAudit:
		res, err = s.appendAudit(ctx, ch, op.AppendAudit)
	case *actorspb.Command_SetVisitorRestricted:
		res, err = s.setVisitorRestricted(ctx, ch, op.SetVisitorRestricted)
	case *actorspb.Command_PutPrivacyRequest:
		res, err = s.putPrivacyRequest(ctx, ch, op.PutPrivacyRequest)
	case *actorspb.Command_ClosePrivacyRequest:
		res, err = s.closePrivacyRequest(ctx, ch, op.ClosePrivacyRequest)
	case *actorspb.Command_ShredKeys:
		res, err = s.shredKeys(ctx, op.ShredKeys)
	case *actorspb.Command_WithdrawConsent:
		res, err = s.withdrawConsent(ctx, ch, op.WithdrawConsent)
	case *actorspb.Command_PutInvitation:
		res, err = s.putInvitation(ctx, ch, op.PutInvitation)
	case *actorspb.Command_PutPolicyNotice:
		res, err = s.putPolicyNotice(ctx, ch, op.PutPolicyNotice.GetNotice())
	case *actorspb.Command_SetTermination:
		res, err = s.setTermination(ctx, ch, op.SetTermination)
	case *actorspb.Command_RecordJobRun:
		res, err = s.recordJobRun(ctx, ch, op.RecordJobRun)
	case *actorspb.Command_PurgeAnalytics:
		res, err = s.purgeAnalytics(ch, op.PurgeAnalytics)
	case *actorspb.Command_ReleaseIndex:
		res, err = s.releaseIndex(ctx, ch, op.ReleaseIndex)
	default:
		err = fmt.Errorf("%w: no operation", ErrInvalid)
	}
	if err != nil {
		return nil, err
	}
	if ch.conv != nil {
		if err := s.putConversation(ctx, ch.staged, ch.conv); err != nil {
			return nil, err
		}
	}
	if err := group.Append(ch.staged); err != nil {
		return nil, err
	}
	if ch.conv != nil {
		s.convs[storage.BytesID(ch.conv.Id)] = ch.conv
		res.Conversation = ch.conv
	}
	if ch.clientID != "" {
		s.clientIDs[ch.clientID] = ch.seq
	}
	for _, r := range ch.records {
		s.staged[string(r.key)] = r.msg
	}
	return res, nil
}

func (s *state) post(ctx context.Context, ch *change, p *actorspb.PostMessage) (*actorspb.Result, error) {
	tenant, err := idFrom(p.TenantId, "tenant_id")
	if err != nil {
		return nil, err
	}
	convID, err := idFrom(p.ConversationId, "conversation_id")
	if err != nil {
		return nil, err
	}
	if err := validatePost(p); err != nil {
		return nil, err
	}
	conv, err := s.conversation(ctx, tenant, convID)
	created := false
	if errors.Is(err, errAbsent) {
		if _, err := idFrom(p.VisitorId, "visitor_id"); err != nil {
			return nil, err
		}
		conv = &actorspb.ConversationRecord{
			Id: convID[:], TenantId: tenant[:], VisitorId: p.VisitorId,
			Status: actorspb.ConversationStatus_CONVERSATION_STATUS_OPEN, CreatedUnixMs: p.UnixMs,
		}
		created = true
	} else if err != nil {
		return nil, err
	}
	subject := storage.SubjectKey(tenant, storage.BytesID(conv.VisitorId))

	blind, err := s.db.Blind(ctx, storage.TenantKey(tenant), "client_id", []byte(p.ClientId))
	if err != nil {
		return nil, err
	}
	ck := clientIDKey(s.db, convID, blind)
	if seq, ok := s.clientIDs[string(ck)]; ok {
		return &actorspb.Result{Seq: seq, Duplicate: true, Conversation: conv}, nil
	}
	// A shred of the visitor's key reaches the nodes out of this log (a
	// push, the ledger exchange), so one replica may apply this entry
	// before it learns of the shred and another after. The outcome must
	// be the same on both: a client_id record that no longer opens still
	// marks a repeat, and a message sealed under a shredded key is stored
	// as an erased stand-in that takes its seq, as the other replica's
	// sealed copy will read once the shred reaches it.
	var seen actorspb.ClientIDRecord
	switch err := s.db.Get(ctx, ck, &seen); {
	case err == nil:
		return &actorspb.Result{Seq: seen.Seq, Duplicate: true, Conversation: conv}, nil
	case errors.Is(err, storage.ErrErased):
		return &actorspb.Result{Duplicate: true, Erased: true, Conversation: conv}, nil
	case !errors.Is(err, storage.ErrNotFound):
		return nil, err
	}

	seq := conv.LastSeq + 1
	msg := &actorspb.MessageRecord{Seq: seq, Author: p.Author, Body: p.Body, ClientId: p.ClientId, CreatedUnixMs: p.UnixMs, Internal: p.Internal}
	erased, err := ch.staged.PutOrErased(ctx, messageKey(s.db, convID, seq), subject, msg)
	if err != nil {
		return nil, err
	}
	if _, err := ch.staged.PutOrErased(ctx, ck, subject, &actorspb.ClientIDRecord{Seq: seq}); err != nil {
		return nil, err
	}
	conv.LastSeq = seq
	switch {
	case p.Internal:
		// A note is for the team: it changes neither the status nor when
		// the conversation last heard from anyone.
	case p.Author.GetKind() == actorspb.AuthorKind_AUTHOR_KIND_VISITOR:
		conv.LastMessageUnixMs = p.UnixMs
		conv.Status = actorspb.ConversationStatus_CONVERSATION_STATUS_OPEN // the visitor reopens it, pending or closed
	default:
		conv.LastMessageUnixMs = p.UnixMs
		if conv.Status == actorspb.ConversationStatus_CONVERSATION_STATUS_CLOSED {
			conv.Status = actorspb.ConversationStatus_CONVERSATION_STATUS_OPEN // a reply reopens a closed one; pending stays pending
		}
	}
	ch.conv, ch.clientID, ch.seq = conv, string(ck), seq
	return &actorspb.Result{Seq: seq, Created: created, Erased: erased}, nil
}

func validatePost(p *actorspb.PostMessage) error {
	switch {
	case len(p.Body) == 0:
		return fmt.Errorf("%w: empty body", ErrInvalid)
	case len(p.Body) > MaxBodyBytes:
		return fmt.Errorf("%w: body of %d bytes; at most %d", ErrInvalid, len(p.Body), MaxBodyBytes)
	case !utf8.ValidString(p.Body):
		return fmt.Errorf("%w: body is not UTF-8", ErrInvalid)
	case len(p.ClientId) == 0 || len(p.ClientId) > MaxClientIDBytes:
		return fmt.Errorf("%w: client_id must have 1 to %d bytes", ErrInvalid, MaxClientIDBytes)
	case p.UnixMs <= 0:
		return fmt.Errorf("%w: no time", ErrInvalid)
	}
	switch p.Author.GetKind() {
	case actorspb.AuthorKind_AUTHOR_KIND_VISITOR, actorspb.AuthorKind_AUTHOR_KIND_AGENT:
		if _, err := idFrom(p.Author.GetId(), "author.id"); err != nil {
			return err
		}
	case actorspb.AuthorKind_AUTHOR_KIND_SYSTEM:
	default:
		return fmt.Errorf("%w: author kind %v", ErrInvalid, p.Author.GetKind())
	}
	return nil
}

func (s *state) assign(ctx context.Context, ch *change, a *actorspb.AssignConversation) (*actorspb.Result, error) {
	conv, err := s.existing(ctx, a.TenantId, a.ConversationId)
	if err != nil {
		return nil, err
	}
	if len(a.AssigneeId) != 0 {
		if _, err := idFrom(a.AssigneeId, "assignee_id"); err != nil {
			return nil, err
		}
	}
	conv.AssigneeId = a.AssigneeId
	ch.conv = conv
	return &actorspb.Result{}, nil
}

func (s *state) setStatus(ctx context.Context, ch *change, c *actorspb.SetConversationStatus) (*actorspb.Result, error) {
	switch c.Status {
	case actorspb.ConversationStatus_CONVERSATION_STATUS_OPEN, actorspb.ConversationStatus_CONVERSATION_STATUS_PENDING,
		actorspb.ConversationStatus_CONVERSATION_STATUS_CLOSED:
	default:
		return nil, fmt.Errorf("%w: status %v", ErrInvalid, c.Status)
	}
	conv, err := s.existing(ctx, c.TenantId, c.ConversationId)
	if err != nil {
		return nil, err
	}
	conv.Status = c.Status
	ch.conv = conv
	return &actorspb.Result{}, nil
}

func (s *state) markRead(ctx context.Context, ch *change, r *actorspb.MarkRead) (*actorspb.Result, error) {
	conv, err := s.existing(ctx, r.TenantId, r.ConversationId)
	if err != nil {
		return nil, err
	}
	reader, err := idFrom(r.ReaderId, "reader_id")
	if err != nil {
		return nil, err
	}
	if r.Seq > conv.LastSeq {
		return nil, fmt.Errorf("%w: read up to %d of %d messages", ErrInvalid, r.Seq, conv.LastSeq)
	}
	if conv.ReadSeq == nil {
		conv.ReadSeq = map[string]uint64{}
	}
	k := hex.EncodeToString(reader[:])
	conv.ReadSeq[k] = max(conv.ReadSeq[k], r.Seq)
	ch.conv = conv
	return &actorspb.Result{Seq: conv.ReadSeq[k]}, nil
}

// errAbsent is a conversation that exists in no tenant.
var errAbsent = errors.New("shard: absent")

// existing returns a copy of a conversation that must exist in tenant.
func (s *state) existing(ctx context.Context, tenantRaw, convRaw []byte) (*actorspb.ConversationRecord, error) {
	tenant, err := idFrom(tenantRaw, "tenant_id")
	if err != nil {
		return nil, err
	}
	convID, err := idFrom(convRaw, "conversation_id")
	if err != nil {
		return nil, err
	}
	conv, err := s.conversation(ctx, tenant, convID)
	if errors.Is(err, errAbsent) {
		return nil, ErrNotFound
	}
	return conv, err
}

// conversation returns a copy of a conversation as the batch sees it:
// errAbsent when it exists nowhere, ErrNotFound when it belongs to another
// tenant (which must look the same as absent to the caller, but must not be
// created over).
func (s *state) conversation(ctx context.Context, tenant, id storage.ID) (*actorspb.ConversationRecord, error) {
	conv, ok := s.convs[id]
	if !ok {
		conv, ok = s.committed[id]
	}
	if !ok {
		var rec actorspb.ConversationRecord
		err := readConversation(ctx, s.db, id, &rec)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, errAbsent
		}
		if err != nil {
			return nil, err
		}
		conv = &rec
	}
	if string(conv.TenantId) != string(tenant[:]) {
		return nil, ErrNotFound
	}
	return proto.Clone(conv).(*actorspb.ConversationRecord), nil
}

func (s *state) putConversation(ctx context.Context, b *storage.Batch, conv *actorspb.ConversationRecord) error {
	key := conversationKey(s.db, storage.BytesID(conv.Id))
	return b.Put(ctx, key, storage.TenantKey(storage.BytesID(conv.TenantId)), conv)
}

func readConversation(ctx context.Context, db *storage.DB, id storage.ID, rec *actorspb.ConversationRecord) error {
	return db.Get(ctx, conversationKey(db, id), rec)
}

func shardOf(db *storage.DB, conv storage.ID) uint16 { return storage.ShardOf(conv[:], db.Shards()) }

func conversationKey(db *storage.DB, conv storage.ID) []byte {
	return storage.Key(shardOf(db, conv), TableConversation, conv[:])
}

func messageKey(db *storage.DB, conv storage.ID, seq uint64) []byte {
	return storage.Key(shardOf(db, conv), TableMessage, conv[:], binary.BigEndian.AppendUint64(nil, seq))
}

func clientIDKey(db *storage.DB, conv storage.ID, blind []byte) []byte {
	return storage.Key(shardOf(db, conv), TableClientID, conv[:], blind)
}
