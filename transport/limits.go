package transport

import (
	"cmp"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/chatpacket/chatpacket/storage"
	"golang.org/x/time/rate"
)

// Abuse limits on what visitors send: a token bucket per visitor and one
// per tenant, on POST /api/v1/widget/messages and widget socket send frames
// alike. They live in each node's memory: a visitor who spreads across n
// nodes gets n buckets, which is fine for a flood guard (a visitor's
// socket stays on one node), and nothing is written per message.

// Visitor limit: 10 messages per 10 s, in bursts of up to 10. A person
// typing fast sends a message every second or two; a script sends
// hundreds. The burst lets a visitor paste several lines quickly, or a
// reconnecting widget resend what was not acknowledged, without a refusal.
const (
	VisitorMessageRate  = rate.Limit(1) // per second
	VisitorMessageBurst = 10
)

// Tenant limit: 200 messages per second, in bursts of up to 400. This is
// far above what any one business's visitors send by hand (hundreds of
// simultaneous chats each sending every few seconds), and bounds what a
// swarm of fresh visitor sessions can push into one tenant's inbox and
// agents' sockets.
const (
	TenantMessageRate  = rate.Limit(200)
	TenantMessageBurst = 400
)

// Bounds of the buckets kept. A full set first forgets buckets that have
// refilled (forgetting them changes nothing), then, under a flood of new
// ids, half of the rest at random: those visitors get a fresh burst, once.
const (
	maxVisitorBuckets = 100_000
	maxTenantBuckets  = 10_000
)

// MessageLimits configures the limits on visitors' messages (API's
// MessageLimits). Zero fields take the defaults above.
type MessageLimits struct {
	VisitorRate  rate.Limit // messages per second, per visitor
	VisitorBurst int
	TenantRate   rate.Limit // messages per second, per tenant
	TenantBurst  int
	// Off lifts the limits: for load tests (`chatpacket bench` sends far
	// faster than any person), never for a node open to the internet.
	Off bool
}

// widgetLimits holds the buckets, made on first use from a MessageLimits.
type widgetLimits struct {
	once              sync.Once
	off               bool
	visitors, tenants *limiterSet
}

func (l *widgetLimits) init(cfg MessageLimits) {
	l.once.Do(func() {
		l.off = cfg.Off
		if l.visitors == nil {
			l.visitors = newLimiterSet(cmp.Or(cfg.VisitorRate, VisitorMessageRate), cmp.Or(cfg.VisitorBurst, VisitorMessageBurst), maxVisitorBuckets)
		}
		if l.tenants == nil {
			l.tenants = newLimiterSet(cmp.Or(cfg.TenantRate, TenantMessageRate), cmp.Or(cfg.TenantBurst, TenantMessageBurst), maxTenantBuckets)
		}
	})
}

// allow takes one message from the visitor's and the tenant's buckets, or
// neither: ok is false, and retry says when one would be allowed.
func (l *widgetLimits) allow(cfg MessageLimits, v visitor, now time.Time) (ok bool, retry time.Duration) {
	l.init(cfg)
	if l.off {
		return true, 0
	}
	rv := l.visitors.get(v.id, now).ReserveN(now, 1)
	rt := l.tenants.get(v.tenant, now).ReserveN(now, 1)
	retry = max(rv.DelayFrom(now), rt.DelayFrom(now))
	if retry > 0 {
		// Nothing is taken by a refused message, so a client that waits
		// Retry-After gets through.
		rv.CancelAt(now)
		rt.CancelAt(now)
		return false, retry
	}
	return true, 0
}

// limitVisitorMessage answers 429 rate_limited, with Retry-After in whole
// seconds, when v sends too fast.
func (a *API) limitVisitorMessage(w http.ResponseWriter, v visitor) error {
	ok, retry := a.limits.allow(a.MessageLimits, v, a.Now())
	if ok {
		return nil
	}
	if w != nil {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(retry.Seconds()))))
	}
	return errorf(http.StatusTooManyRequests, "rate_limited", "too many messages; try again in %d s (the same client_id stores it once)", int(math.Ceil(retry.Seconds())))
}

// limiterSet is a bounded map of token buckets by id.
type limiterSet struct {
	limit rate.Limit
	burst int
	max   int

	mu sync.Mutex
	m  map[storage.ID]*rate.Limiter
}

func newLimiterSet(limit rate.Limit, burst, max int) *limiterSet {
	return &limiterSet{limit: limit, burst: burst, max: max, m: map[storage.ID]*rate.Limiter{}}
}

// get returns id's bucket, making it (full) if there is none.
func (s *limiterSet) get(id storage.ID, now time.Time) *rate.Limiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.m[id]; ok {
		return l
	}
	if len(s.m) >= s.max {
		s.sweep(now)
	}
	l := rate.NewLimiter(s.limit, s.burst)
	s.m[id] = l
	return l
}

// sweep makes room: buckets that refilled go first; if that is not enough,
// any until half the set is free (map order is random, so no one can aim
// at whom is forgotten).
func (s *limiterSet) sweep(now time.Time) {
	for id, l := range s.m {
		if l.TokensAt(now) >= float64(s.burst) {
			delete(s.m, id)
		}
	}
	for id := range s.m {
		if len(s.m) < s.max/2 {
			break
		}
		delete(s.m, id)
	}
}

func (s *limiterSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
