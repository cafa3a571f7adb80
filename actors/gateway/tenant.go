package gateway

import (
	"fmt"
	"sync"

	pacluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/chatpacket/chatpacket/actors/grainpb"
	"github.com/chatpacket/chatpacket/storage"
)

// Tenant watches: a node with agent sockets of a tenant subscribes to that
// tenant's grain (one lease per tenant per node) and hands each
// conversation summary to every TenantSink of the tenant. Summaries say
// which conversations are active; the sink watches the ones it needs, so
// messages still flow conversation by conversation, exactly once.

// TenantSink receives a tenant's conversation summaries, one call at a
// time; it may block (it runs on the watch's own goroutine). An error ends
// the watch.
type TenantSink interface {
	Summary(s *grainpb.ConversationSummary) error
}

// tenantBuffer bounds the summaries waiting for one tenant watch. A sink
// that falls further behind loses summaries; each carries the whole
// conversation record and the next one repeats it, so a lost one delays a
// conversation's first appearance on that socket by at most one summary.
const tenantBuffer = 1024

// TenantWatch is one sink's view of one tenant.
type TenantWatch struct {
	g      *Gateway
	tenant storage.ID
	sink   TenantSink
	events chan *grainpb.ConversationSummary
	done   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

// WatchTenant hands every summary of tenant's conversations from now on to
// sink, until the watch is closed or sink fails.
func (g *Gateway) WatchTenant(tenant storage.ID, sink TenantSink) (*TenantWatch, error) {
	w := &TenantWatch{g: g, tenant: tenant, sink: sink, events: make(chan *grainpb.ConversationSummary, tenantBuffer), done: make(chan struct{})}
	g.mu.Lock()
	set, ok := g.mu.tenants[tenant]
	if !ok {
		set = map[*TenantWatch]struct{}{}
		g.mu.tenants[tenant] = set
	}
	set[w] = struct{}{}
	g.mu.Unlock()
	if !ok {
		if err := g.subscribeTenant(tenant); err != nil {
			w.unregister()
			return nil, err
		}
	}
	w.wg.Go(w.run)
	return w, nil
}

func (g *Gateway) subscribeTenant(tenant storage.ID) error {
	_, err := grainpb.GetTenantGrainClient(g.cluster, tenant.String()).Subscribe(&grainpb.SubscribeRequest{
		TenantId: tenant[:], SubscriberAddress: g.pid.Address, SubscriberId: g.pid.Id, LeaseMs: Lease.Milliseconds(),
	}, pacluster.WithTimeout(g.timeout))
	if err != nil {
		return fmt.Errorf("gateway: subscribe to tenant %s: %w", tenant, err)
	}
	return nil
}

// offerTenant hands a tenant event to the tenant's watches; the caller
// holds g.mu.
func (g *Gateway) offerTenant(ev *grainpb.TenantEvent) {
	s := ev.GetSummary()
	if s == nil {
		return
	}
	for w := range g.mu.tenants[storage.BytesID(ev.TenantId)] {
		select {
		case w.events <- s:
		default:
			g.log.Warn("a tenant watch fell behind; a summary was dropped", "tenant", w.tenant.String())
		}
	}
}

// unregister removes w; like conversation watches, the tenant's last
// watch leaving lets the lease lapse rather than unsubscribing.
func (w *TenantWatch) unregister() {
	w.g.mu.Lock()
	defer w.g.mu.Unlock()
	if set, ok := w.g.mu.tenants[w.tenant]; ok {
		delete(set, w)
		if len(set) == 0 {
			delete(w.g.mu.tenants, w.tenant)
		}
	}
}

// Close ends the watch; it is safe to call twice.
func (w *TenantWatch) Close() {
	w.once.Do(func() { close(w.done) })
	w.wg.Wait()
}

func (w *TenantWatch) run() {
	defer w.unregister()
	for {
		select {
		case s := <-w.events:
			if err := w.sink.Summary(s); err != nil {
				w.once.Do(func() { close(w.done) })
				return
			}
		case <-w.done:
			return
		}
	}
}
