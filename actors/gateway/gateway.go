// Package gateway is a node's hub between conversation grains and the
// client connections of that node: it subscribes to the conversations its
// connections watch (one subscription per conversation per node, renewed as
// a lease) and delivers each conversation's messages to every watcher
// exactly once and in seq order, whatever the order in which catch-up
// reads and live events arrive.
//
// How exactly-once holds. A watch registers for live events before it
// subscribes or reads, so no event can fall between its catch-up read and
// its live stream. Each watch then delivers message seq n only right after
// n-1: an older seq is a duplicate and dropped, a newer one means a gap
// (an event lost with a moved grain, a full buffer) and is filled by
// reading the conversation from where the watch is.
//
// Concurrency: a Gateway is safe for concurrent use. Each watch has one
// goroutine that alone calls its Sink, so a Sink sees one call at a time.
package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pacluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/chatpacket/chatpacket/actors/grainpb"
	"github.com/chatpacket/chatpacket/actors/grains"
	"github.com/chatpacket/chatpacket/storage"
)

// Sink receives a watch's events: messages in seq order, each once, and
// typing, read and change events as they come. Deliver must not block (a
// connection queues); an error ends the watch.
type Sink interface {
	Deliver(ev *grainpb.ConversationEvent) error
}

// Lease is how long a conversation keeps this node subscribed without a
// renewal; the gateway renews at a third of it.
const Lease = 30 * time.Second

// watchBuffer bounds the live events waiting for one watch. A watch that
// falls further behind drops them and catches up by reading.
const watchBuffer = 256

// readPage is how many messages one catch-up read asks for.
const readPage = 200

// Gateway is one node's hub.
type Gateway struct {
	cluster *pacluster.Cluster
	log     *slog.Logger
	pid     *actor.PID
	timeout time.Duration

	mu struct {
		sync.Mutex
		convs   map[storage.ID]*conversation
		tenants map[storage.ID]map[*TenantWatch]struct{}
	}
	stop chan struct{}
	wg   sync.WaitGroup
}

type conversation struct {
	tenant  storage.ID
	watches map[*Watch]struct{}
}

// New starts a gateway on the node of c.
func New(c *pacluster.Cluster, log *slog.Logger) *Gateway {
	g := &Gateway{cluster: c, log: log, timeout: 5 * time.Second, stop: make(chan struct{})}
	g.mu.convs = map[storage.ID]*conversation{}
	g.mu.tenants = map[storage.ID]map[*TenantWatch]struct{}{}
	// Named, so that grains can announce their activations to it.
	pid, err := c.ActorSystem.Root.SpawnNamed(actor.PropsFromFunc(g.receive), grains.GatewayName)
	if err != nil {
		// Only a second gateway on one node: a programming error.
		panic(fmt.Sprintf("gateway: %v", err))
	}
	g.pid = pid
	g.wg.Go(g.renewLoop)
	return g
}

// Close stops every watch and the gateway.
func (g *Gateway) Close() {
	g.mu.Lock()
	var all []interface{ Close() }
	for _, c := range g.mu.convs {
		for w := range c.watches {
			all = append(all, w)
		}
	}
	for _, set := range g.mu.tenants {
		for w := range set {
			all = append(all, w)
		}
	}
	g.mu.Unlock()
	for _, w := range all {
		w.Close()
	}
	close(g.stop)
	// The actor first: it starts the goroutines wg waits for.
	if err := g.cluster.ActorSystem.Root.StopFuture(g.pid).Wait(); err != nil {
		g.log.Warn("stopping the gateway actor", "err", err)
	}
	g.wg.Wait()
}

// receive is the gateway actor: grains send it their events.
func (g *Gateway) receive(ctx actor.Context) {
	switch ev := ctx.Message().(type) {
	case *grainpb.ConversationEvent:
		g.mu.Lock()
		defer g.mu.Unlock()
		if c, ok := g.mu.convs[storage.BytesID(ev.ConversationId)]; ok {
			for w := range c.watches {
				w.offer(ev)
			}
		}
	case *grainpb.TenantEvent:
		g.mu.Lock()
		defer g.mu.Unlock()
		g.offerTenant(ev)
	case *grainpb.Activated:
		g.reactivated(ev)
	}
}

// reactivated subscribes again to a grain this gateway watches that has a
// new activation (moved with its shard's leadership, or passivated and
// called again): the new one knows no subscribers. Messages posted in
// between are then read by the watches that missed them.
func (g *Gateway) reactivated(ev *grainpb.Activated) {
	id, err := storage.ParseID(ev.Identity)
	if err != nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch ev.Kind {
	case "Conversation":
		c, ok := g.mu.convs[id]
		if !ok {
			return
		}
		watches := make([]*Watch, 0, len(c.watches))
		for w := range c.watches {
			watches = append(watches, w)
		}
		g.wg.Go(func() {
			if err := g.subscribe(c.tenant, id); err != nil {
				g.log.Warn("subscribing to a moved conversation", "conversation", id.String(), "err", err)
				return
			}
			for _, w := range watches {
				w.catchUpSoon()
			}
		})
	case "Tenant":
		if _, ok := g.mu.tenants[id]; !ok {
			return
		}
		g.wg.Go(func() {
			if err := g.subscribeTenant(id); err != nil {
				g.log.Warn("subscribing to a moved tenant", "tenant", id.String(), "err", err)
			}
		})
	}
}

// Watch delivers conversation conv of tenant to sink: every message after
// seq `after`, once and in order, then the live ones, until the watch is
// closed or sink fails. It fails when the conversation does not exist in
// tenant.
func (g *Gateway) Watch(tenant, conv storage.ID, after uint64, sink Sink) (*Watch, error) {
	w := &Watch{
		g: g, tenant: tenant, conv: conv, sink: sink, last: after,
		events: make(chan *grainpb.ConversationEvent, watchBuffer),
		behind: make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	// Register before subscribing and reading: nothing can fall between.
	first := g.register(w)
	if first {
		if err := g.subscribe(tenant, conv); err != nil {
			g.unregister(w)
			return nil, err
		}
	} else if err := g.check(tenant, conv); err != nil {
		g.unregister(w)
		return nil, err
	}
	w.wg.Go(w.run)
	return w, nil
}

func (g *Gateway) register(w *Watch) (first bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := g.mu.convs[w.conv]
	if !ok {
		c = &conversation{tenant: w.tenant, watches: map[*Watch]struct{}{}}
		g.mu.convs[w.conv] = c
	}
	c.watches[w] = struct{}{}
	return !ok
}

// unregister removes w. A conversation's last watch leaving does not
// unsubscribe: the lease runs out within Lease and events until then are
// dropped here. An explicit Unsubscribe could arrive at the grain after a
// new watch's Subscribe (same subscriber, this gateway) and cancel it,
// which a test under load showed; letting leases lapse cannot.
func (g *Gateway) unregister(w *Watch) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.mu.convs[w.conv]; ok {
		delete(c.watches, w)
		if len(c.watches) == 0 {
			delete(g.mu.convs, w.conv)
		}
	}
}

func (g *Gateway) subscribe(tenant, conv storage.ID) error {
	client := grainpb.GetConversationGrainClient(g.cluster, conv.String())
	_, err := client.Subscribe(&grainpb.SubscribeRequest{
		TenantId: tenant[:], SubscriberAddress: g.pid.Address, SubscriberId: g.pid.Id, LeaseMs: Lease.Milliseconds(),
	}, pacluster.WithTimeout(g.timeout))
	if err != nil {
		return fmt.Errorf("gateway: subscribe to %s: %w", conv, err)
	}
	return nil
}

// check makes sure a second watcher of a conversation belongs to the tenant
// the subscription was made for.
func (g *Gateway) check(tenant, conv storage.ID) error {
	g.mu.Lock()
	c := g.mu.convs[conv]
	g.mu.Unlock()
	if c == nil || c.tenant != tenant {
		return fmt.Errorf("gateway: %s: %w", conv, errNotFound)
	}
	return nil
}

var errNotFound = pacluster.NewGrainErrorResponse(pacluster.ErrorReason_NOT_FOUND, "conversation not found")

// renewLoop renews every subscription at a third of the lease, so a grain
// that moved or restarted is subscribed to again.
func (g *Gateway) renewLoop() {
	t := time.NewTicker(Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-g.stop:
			return
		}
		g.mu.Lock()
		convs := make(map[storage.ID]storage.ID, len(g.mu.convs))
		for id, c := range g.mu.convs {
			convs[id] = c.tenant
		}
		tenants := make([]storage.ID, 0, len(g.mu.tenants))
		for id := range g.mu.tenants {
			tenants = append(tenants, id)
		}
		g.mu.Unlock()
		// Each renewal may wait out its timeout (a grain on a node that
		// stopped): look for Close between them, or a node's shutdown
		// waits for a whole pass, one timeout per subscription.
		for conv, tenant := range convs {
			if g.stopped() {
				return
			}
			if err := g.subscribe(tenant, conv); err != nil {
				g.log.Warn("renewing a subscription", "conversation", conv.String(), "err", err)
			}
		}
		for _, tenant := range tenants {
			if g.stopped() {
				return
			}
			if err := g.subscribeTenant(tenant); err != nil {
				g.log.Warn("renewing a tenant subscription", "tenant", tenant.String(), "err", err)
			}
		}
	}
}

// stopped reports whether Close began.
func (g *Gateway) stopped() bool {
	select {
	case <-g.stop:
		return true
	default:
		return false
	}
}

// Watch is one sink's view of one conversation.
type Watch struct {
	g            *Gateway
	tenant, conv storage.ID
	sink         Sink
	last         uint64 // the last seq delivered; owned by run

	events chan *grainpb.ConversationEvent
	behind chan struct{} // buffered 1: events were dropped, catch up
	done   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	err    error // why run ended; read after wg.Wait
}

// offer hands a live event to the watch without blocking the gateway.
func (w *Watch) offer(ev *grainpb.ConversationEvent) {
	select {
	case w.events <- ev:
	default:
		w.catchUpSoon()
	}
}

// catchUpSoon makes the watch read what it may have missed.
func (w *Watch) catchUpSoon() {
	select {
	case w.behind <- struct{}{}:
	default:
	}
}

// Close ends the watch; it is safe to call twice.
func (w *Watch) Close() {
	w.once.Do(func() { close(w.done) })
	w.wg.Wait()
}

// Err is why the watch ended on its own (its sink failed, the conversation
// could not be read), or nil.
func (w *Watch) Err() error {
	select {
	case <-w.done:
	default:
		return nil
	}
	w.wg.Wait() // run has returned: w.err is final
	return w.err
}

func (w *Watch) run() {
	defer w.g.unregister(w)
	if w.err = w.catchUp(); w.err != nil {
		w.once.Do(func() { close(w.done) })
		return
	}
	for {
		select {
		case ev := <-w.events:
			w.err = w.handle(ev)
		case <-w.behind:
			w.err = w.catchUp()
		case <-w.done:
			return
		}
		if w.err != nil {
			w.once.Do(func() { close(w.done) })
			return
		}
	}
}

func (w *Watch) handle(ev *grainpb.ConversationEvent) error {
	m := ev.GetMessage()
	switch {
	case m == nil:
		return w.sink.Deliver(ev) // typing, read, changed: no order to keep
	case m.Seq <= w.last:
		return nil // delivered already (by a catch-up read)
	case m.Seq == w.last+1:
		w.last = m.Seq
		return w.sink.Deliver(ev)
	default:
		return w.catchUp() // a gap: read it, this message included
	}
}

// catchUp delivers every stored message after w.last.
func (w *Watch) catchUp() error {
	client := grainpb.GetConversationGrainClient(w.g.cluster, w.conv.String())
	for {
		res, err := client.Read(&grainpb.ReadRequest{TenantId: w.tenant[:], After: w.last, Limit: readPage}, pacluster.WithTimeout(w.g.timeout))
		if err != nil {
			return fmt.Errorf("gateway: read %s after %d: %w", w.conv, w.last, err)
		}
		for _, m := range res.Messages {
			if m.Seq != w.last+1 {
				return fmt.Errorf("gateway: read %s: seq %d after %d: %w", w.conv, m.Seq, w.last, errGap)
			}
			w.last = m.Seq
			if err := w.sink.Deliver(&grainpb.ConversationEvent{ConversationId: w.conv[:], Event: &grainpb.ConversationEvent_Message{Message: m}}); err != nil {
				return err
			}
		}
		if len(res.Messages) < readPage {
			return nil
		}
	}
}

var errGap = errors.New("stored messages have a gap")
