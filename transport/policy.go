package transport

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/grains"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/cluster/admin"
	"github.com/chatpacket/chatpacket/storage"
	"github.com/chatpacket/chatpacket/transport/dashboard"
	"github.com/chatpacket/chatpacket/transport/mail"
)

// Policy notices: an operator publishes a change of the privacy policy
// (`chatpacket admin policy publish`, through the node's admin socket,
// which calls PublishPolicy), at least 14 days ahead; every tenant owner of
// the cluster is emailed, and every dashboard page, the signup page
// included, shows a banner until the change is 30 days old. GET
// /api/v1/policy is the notice to show, for anyone.
//
// Mail is at least once: the publication is stored first (raft), then the
// owners are emailed, each address tried up to policyMailTries times.
// PublishPolicy waits at most policyMailWait for the emails and leaves the
// rest to a background job; an operator who saw failures (or whose node
// stopped) publishes the same notice again, which changes nothing stored
// and emails every owner again.

// PolicyShownAfter is how long after its effective date a change stays
// announced ("changed on").
const PolicyShownAfter = 30 * 24 * time.Hour

// Bounds of a publication's emails.
const (
	policyMailWait  = 20 * time.Second
	policyMailJob   = 30 * time.Minute
	policyMailTries = 3
	policyTenants   = 200 // tenants read a page at a time
)

// policyCacheTTL is how long a node reuses the notices it read: pages show
// the banner without a read of the policy shard each.
const policyCacheTTL = time.Minute

// policyBannerWait bounds the read of the notices for a page.
const policyBannerWait = 2 * time.Second

var _ admin.Policy = (*API)(nil)

// policyCache is the notices a node read last, and the cancel functions of
// the publications whose emails are still being sent.
type policyCache struct {
	mu      sync.Mutex
	read    time.Time
	notices []*actorspb.PolicyNotice
	jobs    map[*context.CancelFunc]struct{}
}

// stopPolicyMail ends the emails of publications still being sent: the
// node is stopping, and an operator publishes again to reach the rest.
func (a *API) stopPolicyMail() {
	a.policy.mu.Lock()
	defer a.policy.mu.Unlock()
	for cancel := range a.policy.jobs {
		(*cancel)()
	}
}

func (a *API) registerPolicy(s *http.ServeMux) {
	s.Handle("GET /api/v1/policy", a.handler(a.getPolicy))
}

type policyJSON struct {
	EffectiveDate string `json:"effective_date"`
	Summary       string `json:"summary"`
	URL           string `json:"url,omitempty"`
	PublishedAt   string `json:"published_at"`
	// State is "upcoming" until the effective date, then "changed".
	State string `json:"state"`
}

func policyOf(n *actorspb.PolicyNotice, now time.Time) policyJSON {
	state := "upcoming"
	if now.UnixMilli() >= n.EffectiveUnixMs {
		state = "changed"
	}
	return policyJSON{
		EffectiveDate: time.UnixMilli(n.EffectiveUnixMs).UTC().Format(time.DateOnly), Summary: n.Summary, URL: n.Url,
		PublishedAt: rfc3339(n.PublishedUnixMs), State: state,
	}
}

// notices reads the notices, through the node's cache.
func (a *API) notices(ctx context.Context) ([]*actorspb.PolicyNotice, error) {
	a.policy.mu.Lock()
	defer a.policy.mu.Unlock()
	if !a.policy.read.IsZero() && time.Since(a.policy.read) < policyCacheTTL {
		return a.policy.notices, nil
	}
	list, err := a.Machine.PolicyNotices(ctx)
	if err != nil {
		return nil, err
	}
	a.policy.notices, a.policy.read = list, time.Now()
	return list, nil
}

// shownPolicy is the notice to announce now: the nearest coming change,
// else the latest change less than 30 days old; nil when there is none.
func shownPolicy(list []*actorspb.PolicyNotice, now time.Time) *actorspb.PolicyNotice {
	var shown *actorspb.PolicyNotice
	for _, n := range list { // latest effective date first
		switch eff := time.UnixMilli(n.EffectiveUnixMs); {
		case now.Before(eff):
			shown = n // a nearer one may follow
		case shown == nil && now.Before(eff.Add(PolicyShownAfter)):
			return n
		default:
			return shown
		}
	}
	return shown
}

// currentPolicy is the notice to announce, for pages and the API.
func (a *API) currentPolicy(ctx context.Context) (*policyJSON, error) {
	list, err := a.notices(ctx)
	if err != nil {
		return nil, err
	}
	now := a.Now()
	n := shownPolicy(list, now)
	if n == nil {
		return nil, nil
	}
	p := policyOf(n, now)
	return &p, nil
}

// policyBanner is the banner of every dashboard page; a page shows without
// it when the notices cannot be read (it is logged).
func (a *API) policyBanner(ctx context.Context) *dashboard.Policy {
	ctx, cancel := context.WithTimeout(ctx, policyBannerWait)
	defer cancel()
	p, err := a.currentPolicy(ctx)
	if err != nil {
		a.Log.Warn("policy notices unreadable: pages show no banner", "err", err)
		return nil
	}
	if p == nil {
		return nil
	}
	date, _ := time.Parse(time.DateOnly, p.EffectiveDate)
	return &dashboard.Policy{Date: date.Format("2 January 2006"), Summary: p.Summary, URL: p.URL, Changed: p.State == "changed"}
}

func (a *API) getPolicy(_ http.ResponseWriter, r *http.Request) (int, any, error) {
	p, err := a.currentPolicy(r.Context())
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"notice": p}, nil
}

// PolicyNotices answers the admin socket's `policy show`: every notice,
// latest effective date first.
func (a *API) PolicyNotices(ctx context.Context) ([]admin.PolicyNotice, error) {
	list, err := a.Machine.PolicyNotices(ctx)
	if err != nil {
		return nil, err
	}
	now := a.Now()
	out := make([]admin.PolicyNotice, 0, len(list))
	for _, n := range list {
		p := policyOf(n, now)
		out = append(out, admin.PolicyNotice{EffectiveDate: p.EffectiveDate, Summary: p.Summary, URL: p.URL, PublishedAt: p.PublishedAt, State: p.State})
	}
	return out, nil
}

// PublishPolicy stores a notice and emails every tenant owner about it.
// A date less than 14 days after today (UTC) is refused with
// admin.ErrInvalid, like a bad summary or URL.
func (a *API) PublishPolicy(ctx context.Context, req admin.PolicyPublish) (*admin.PolicyPublished, error) {
	now := a.Now()
	effective, err := time.ParseInLocation(time.DateOnly, req.EffectiveDate, time.UTC)
	if err != nil {
		return nil, fmt.Errorf("%w: effective date %q: want YYYY-MM-DD", admin.ErrInvalid, req.EffectiveDate)
	}
	n := &actorspb.PolicyNotice{EffectiveUnixMs: effective.UnixMilli(), Summary: strings.TrimSpace(req.Summary), Url: strings.TrimSpace(req.URL), PublishedUnixMs: now.UnixMilli()}
	if earliest := shard.EarliestPolicyDate(now); effective.Before(earliest) {
		return nil, fmt.Errorf("%w: effective date %s is too soon: a policy change is announced at least %d days ahead, so the date must be %s or later (today is %s, UTC)",
			admin.ErrInvalid, req.EffectiveDate, shard.PolicyNoticeDays, earliest.Format(time.DateOnly), now.UTC().Format(time.DateOnly))
	}
	if err := shard.CheckPolicyNotice(n); err != nil {
		return nil, fmt.Errorf("%w: %s", admin.ErrInvalid, strings.TrimPrefix(err.Error(), shard.ErrInvalid.Error()+": "))
	}
	if _, err := a.apply(ctx, &actorspb.Command{Op: &actorspb.Command_PutPolicyNotice{PutPolicyNotice: &actorspb.PutPolicyNotice{Notice: n}}}); err != nil {
		if errors.Is(err, shard.ErrInvalid) {
			return nil, fmt.Errorf("%w: %v", admin.ErrInvalid, err)
		}
		return nil, fmt.Errorf("store the notice: %w", err)
	}
	a.policy.mu.Lock()
	a.policy.read = time.Time{} // this node shows it at once
	a.policy.mu.Unlock()

	out := &admin.PolicyPublished{Notice: admin.PolicyNotice{EffectiveDate: req.EffectiveDate, Summary: n.Summary, URL: n.Url, PublishedAt: rfc3339(n.PublishedUnixMs), State: "upcoming"}}
	var counts struct{ owners, sent, failed atomic.Int64 }
	done := make(chan error, 1)
	jobCtx, cancel := context.WithTimeout(context.Background(), policyMailJob)
	a.policy.mu.Lock()
	if a.policy.jobs == nil {
		a.policy.jobs = map[*context.CancelFunc]struct{}{}
	}
	a.policy.jobs[&cancel] = struct{}{}
	a.policy.mu.Unlock()
	a.accounts.jobs.Add(1)
	go func() {
		defer a.accounts.jobs.Done()
		defer func() {
			a.policy.mu.Lock()
			delete(a.policy.jobs, &cancel)
			a.policy.mu.Unlock()
			cancel()
		}()
		ctx := jobCtx
		err := a.mailEveryOwner(ctx, policyMail(n), func(sent bool) {
			counts.owners.Add(1)
			if sent {
				counts.sent.Add(1)
			} else {
				counts.failed.Add(1)
			}
		})
		if err != nil {
			a.Log.Error("policy notice: emailing the owners stopped", "err", err, "sent", counts.sent.Load(), "failed", counts.failed.Load())
		} else {
			a.Log.Info("policy notice: owners emailed", "sent", counts.sent.Load(), "failed", counts.failed.Load())
		}
		done <- err
	}()
	wait := time.NewTimer(policyMailWait)
	defer wait.Stop()
	select {
	case err := <-done:
		out.Done = true
		if err != nil {
			out.Error = err.Error()
		}
	case <-wait.C:
	case <-ctx.Done():
	}
	out.Owners, out.Sent, out.Failed = int(counts.owners.Load()), int(counts.sent.Load()), int(counts.failed.Load())
	return out, nil
}

// mailEveryOwner sends m to the owners of every tenant of the cluster, calling
// counted once for each owner with whether the email went.
func (a *API) mailEveryOwner(ctx context.Context, m mail.Message, counted func(sent bool)) error {
	if a.Mail == nil {
		return errors.New("this node has no mail sender")
	}
	return a.Machine.EachTenant(ctx, policyTenants, func(t *actorspb.TenantRecord) error {
		agents, err := a.Machine.Agents(ctx, storage.BytesID(t.Id), grains.MaxAgents)
		if err != nil {
			return fmt.Errorf("the team of a tenant: %w", err)
		}
		for _, ag := range agents {
			if ag.Role != actorspb.Role_ROLE_OWNER {
				continue
			}
			m := m
			m.To = ag.Email
			counted(a.deliverRetrying(ctx, m))
		}
		return ctx.Err()
	})
}

// deliverRetrying sends m, trying again after a second and after two.
func (a *API) deliverRetrying(ctx context.Context, m mail.Message) bool {
	for try := 1; ; try++ {
		err := a.deliver(ctx, m)
		if err == nil {
			return true
		}
		if try == policyMailTries {
			a.Log.Warn("policy notice: an email was not sent", "tries", try, "err", err)
			return false
		}
		select {
		case <-time.After(time.Duration(try) * time.Second):
		case <-ctx.Done():
			return false
		}
	}
}

func policyMail(n *actorspb.PolicyNotice) mail.Message {
	date := time.UnixMilli(n.EffectiveUnixMs).UTC().Format("2 January 2006")
	more := ""
	if n.Url != "" {
		more = "\nRead the new policy: " + n.Url + "\n"
	}
	return mail.Message{Subject: "Our privacy policy changes on " + date, Text: fmt.Sprintf(`Hello,

ChatPacket's privacy policy changes on %s. In short:

%s
%s
You receive this email as the owner of a ChatPacket organization: we tell
every owner about a change at least %d days before it takes effect.
`, date, n.Summary, more, shard.PolicyNoticeDays)}
}
