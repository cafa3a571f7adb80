package transport

import (
	"crypto/sha256"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Abuse throttles of the account calls: token buckets in memory, per node,
// keyed by client network or by account. A cluster of N nodes lets an
// attacker N times the rate at most; the buckets are a brake, not a wall.
//
// Login throttling must not become a way to lock someone out. So:
//   - per IP, failed logins spend tokens, and an IP with none left is
//     refused (429) before its password is even checked;
//   - per account (the email given, known or not), failed logins spend
//     tokens too, but an account with none left still checks passwords: the
//     right one logs in (from an IP under its own limit), a wrong one gets
//     429 rather than 401. An attacker spread over many IPs is slowed by
//     each IP's bucket, and the owner is never locked out by them;
//   - per agent, wrong second factors (TOTP or recovery codes) spend tokens
//     and, with none left, second factors are not checked at all: only
//     someone who has the password can get there, and a six-digit code must
//     not be guessable at the network's speed.

// limiter is a set of token buckets by key, bounded in number: a bucket
// that has refilled to its burst is the same as no bucket and is dropped.
// It is safe for concurrent use.
type limiter struct {
	every rate.Limit
	burst int
	max   int // buckets kept at most

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

func newLimiter(perMinute float64, burst, max int) *limiter {
	return &limiter{every: rate.Limit(perMinute / 60), burst: burst, max: max, buckets: map[string]*rate.Limiter{}}
}

// over reports whether key has no token left, and how long until it has one.
func (l *limiter) over(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.overLocked(key, now)
}

func (l *limiter) overLocked(key string, now time.Time) (bool, time.Duration) {
	b, ok := l.buckets[key]
	if !ok {
		return false, 0
	}
	tokens := b.TokensAt(now)
	if tokens >= 1 {
		return false, 0
	}
	return true, time.Duration((1 - tokens) / float64(l.every) * float64(time.Second))
}

// spend takes a token from key's bucket, if it has one.
func (l *limiter) spend(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.spendLocked(key, now)
}

func (l *limiter) spendLocked(key string, now time.Time) {
	b, ok := l.buckets[key]
	if !ok {
		l.evict(now)
		b = rate.NewLimiter(l.every, l.burst)
		l.buckets[key] = b
	}
	b.AllowN(now, 1)
}

// take spends a token of key's bucket, or reports that there is none and
// how long until there is.
func (l *limiter) take(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if over, retry := l.overLocked(key, now); over {
		return false, retry
	}
	l.spendLocked(key, now)
	return true, 0
}

// evict makes room for one more bucket: first the full ones (forgetting
// them changes nothing), then, under a flood of distinct keys, arbitrary
// ones, which only forgives those keys their spent tokens. l.mu is held.
func (l *limiter) evict(now time.Time) {
	if len(l.buckets) < l.max {
		return
	}
	for k, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, k)
		}
	}
	for k := range l.buckets {
		if len(l.buckets) < l.max*3/4 {
			break
		}
		delete(l.buckets, k)
	}
}

// maxBuckets bounds each limiter's memory (a bucket is about 100 bytes).
const maxBuckets = 100_000

// throttles are the account calls' limiters, made on first use.
type throttles struct {
	once          sync.Once
	loginIP       *limiter // failed logins by IP: 10/min, burst 20
	loginAccount  *limiter // failed logins by email: 5/min, burst 10
	secondFactor  *limiter // wrong second factors or current passwords by agent: 5/min, burst 10
	signupIP      *limiter // signups by IP: 10/min, burst 20
	signupAccount *limiter // signups by email: 5/min, burst 10
	forgotIP      *limiter // reset requests by IP: 10/min, burst 20
	forgotAccount *limiter // reset emails by email: 3, then one per 10 minutes
}

func (t *throttles) get() *throttles {
	t.once.Do(func() {
		t.loginIP = newLimiter(10, 20, maxBuckets)
		t.loginAccount = newLimiter(5, 10, maxBuckets)
		t.secondFactor = newLimiter(5, 10, maxBuckets)
		t.signupIP = newLimiter(10, 20, maxBuckets)
		t.signupAccount = newLimiter(5, 10, maxBuckets)
		t.forgotIP = newLimiter(10, 20, maxBuckets)
		t.forgotAccount = newLimiter(0.1, 3, maxBuckets)
	})
	return t
}

// networkKey is the throttling key of a request's client: its IPv4
// address, or its IPv6 /64 (one host's usual share). The connection's peer
// is the client: forwarding headers are anyone's to forge.
func networkKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// emailThrottleKey is the throttling key of an email: a hash, so that the
// buckets hold no addresses.
func emailThrottleKey(email string) string {
	h := sha256.Sum256([]byte("throttle:" + normalizeEmail(email)))
	return string(h[:16])
}

// rateLimited answers a throttled call; the Retry-After header says
// when to try again.
func rateLimited(w http.ResponseWriter, retry time.Duration) error {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(retry.Seconds())))))
	return errorf(http.StatusTooManyRequests, "rate_limited", "too many attempts; try again later")
}
