// Package shard is the state machine of the grains' shards: every change of
// state (a conversation's messages, a tenant's settings and team, tokens,
// visitors, blind indexes) is a Command applied here, in order, per shard.
// Grains never write the store themselves; they propose commands.
//
// On one node the Machine applies commands straight to the store. Step 3
// puts a raft log in front of it and the same apply code becomes each
// replica's FSM, which is why applying is deterministic: ids and times come
// in the command, chosen by the proposer.
//
// Group commit. Each shard has one applier goroutine. It takes every
// command queued while its previous commit was in flight, applies them in
// arrival order to one batch, and commits that batch with one synced write;
// only then does it answer. So a busy conversation's messages share fsyncs
// and sealing work is done by one goroutine per shard, between commits,
// instead of by every writer at the moment an fsync wakes them all
// (bench/RESULTS.md shows what the latter costs).
//
// A command that fails (bad input, an erased visitor) is dropped whole and
// answered with its error; the rest of its batch still commits. A commit
// that fails fails every command in its batch.
//
// Concurrency: a Machine is safe for concurrent use. Apply blocks until the
// command is durable or has failed.
package shard

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
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
	// ErrExists answers a command that would create what exists already
	// (an email claimed by another account, a tenant id taken).
	ErrExists = errors.New("shard: exists")
)

// maxBatch bounds how many commands one commit carries, so that one
// conversation flooding its shard cannot delay the others' answers without
// bound.
const maxBatch = 256

// cachedConversations bounds each applier's cache of committed
// conversation records. The applier is its shard's only writer, so the
// cache is exact; it saves a read and an open per command.
const cachedConversations = 1024

// Machine applies commands to the shards of one store.
type Machine struct {
	db       *storage.DB
	appliers []*applier
	stop     chan struct{}
	wg       sync.WaitGroup

	// mu is held shared while a command is queued and exclusively by Close,
	// so nothing is queued after the appliers were told to stop.
	mu     sync.RWMutex
	closed bool
}

// New starts a Machine over db, one applier per shard of db.
func New(db *storage.DB) *Machine {
	m := &Machine{db: db, stop: make(chan struct{})}
	m.appliers = make([]*applier, db.Shards())
	for i := range m.appliers {
		a := &applier{m: m, shard: uint16(i), in: make(chan *request, maxBatch), convs: map[storage.ID]*actorspb.ConversationRecord{}}
		m.appliers[i] = a
		m.wg.Go(a.run)
	}
	return m
}

// Close stops the appliers after the commands already taken are answered;
// queued ones get ErrStopped. Close is safe to call twice.
func (m *Machine) Close() {
	m.mu.Lock()
	if !m.closed {
		m.closed = true
		close(m.stop)
	}
	m.mu.Unlock()
	m.wg.Wait()
}

type request struct {
	ctx  context.Context
	cmd  *actorspb.Command
	done chan reply
}

type reply struct {
	res *actorspb.Result
	err error
}

// Apply applies cmd to the shard of its conversation and answers once the
// change is durable. The result's Conversation is shared with the
// machine's cache: read it, never modify it.
func (m *Machine) Apply(ctx context.Context, cmd *actorspb.Command) (*actorspb.Result, error) {
	route, err := routeOf(cmd)
	if err != nil {
		return nil, err
	}
	req := &request{ctx: ctx, cmd: cmd, done: make(chan reply, 1)}
	if err := m.enqueue(ctx, m.appliers[storage.ShardOf(route, m.db.Shards())], req); err != nil {
		return nil, err
	}
	// Once queued, the command may be applied whatever the caller does: wait
	// for its answer so the caller never mistakes a stored command for a lost
	// one (a retry of a post is safe anyway, by its client_id).
	r := <-req.done
	return r.res, r.err
}

func (m *Machine) enqueue(ctx context.Context, a *applier, req *request) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return ErrStopped
	}
	select {
	case a.in <- req: // the applier, still running, will answer it
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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
	case *actorspb.Command_MarkRead:
		raw = op.MarkRead.ConversationId
	case *actorspb.Command_ClaimIndex:
		return keyFrom(op.ClaimIndex.Key, "key")
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

// applier applies the commands of one shard, one batch at a time.
type applier struct {
	m     *Machine
	shard uint16
	in    chan *request
	// convs holds committed conversation records, owned by the applier's
	// goroutine. Eviction is random (Go's map order), which is enough for a
	// cache whose misses cost one read.
	convs map[storage.ID]*actorspb.ConversationRecord
}

func (a *applier) run() {
	for {
		var first *request
		select {
		case first = <-a.in:
		case <-a.m.stop:
			a.drain()
			return
		}
		batch := []*request{first}
	collect:
		for len(batch) < maxBatch {
			select {
			case r := <-a.in:
				batch = append(batch, r)
			default:
				break collect
			}
		}
		a.applyBatch(batch)
	}
}

// remember caches the conversations a committed batch changed.
func (a *applier) remember(changed map[storage.ID]*actorspb.ConversationRecord) {
	for id, conv := range changed {
		if _, ok := a.convs[id]; !ok && len(a.convs) >= cachedConversations {
			for old := range a.convs {
				delete(a.convs, old)
				break
			}
		}
		a.convs[id] = conv
	}
}

// drain answers the commands still queued at Close.
func (a *applier) drain() {
	for {
		select {
		case r := <-a.in:
			r.done <- reply{err: ErrStopped}
		default:
			return
		}
	}
}

func (a *applier) applyBatch(batch []*request) {
	group := a.m.db.NewBatch()
	defer group.Close()
	st := newState(a.m.db, a.convs)
	replies := make([]reply, len(batch))
	for i, r := range batch {
		res, err := st.apply(r.ctx, group, r.cmd)
		replies[i] = reply{res: res, err: err}
	}
	if !group.Empty() {
		// Commit with a context of its own: one caller giving up must not
		// fail the others' writes.
		if err := group.Commit(context.Background()); err != nil {
			for i := range replies {
				if replies[i].err == nil {
					replies[i] = reply{err: err}
				}
			}
			for id := range st.convs {
				delete(a.convs, id) // what is on disk is unknown now
			}
		} else {
			a.remember(st.convs)
		}
	}
	for i, r := range batch {
		r.done <- replies[i]
	}
}
