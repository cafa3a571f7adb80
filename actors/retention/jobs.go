package retention

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/grains"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/storage"
)

// The shard jobs. Each runs on a shard's leader over that shard's data and
// is idempotent: run twice, it does nothing more the second time.

// Job names, as the shards' job-run records hold them.
const (
	JobAnalyticsMonths = "analytics-months"
	JobTenantErasure   = "tenant-erasure"
)

// job is a shard job: its name, how often it runs, what it does.
type job struct {
	name   string
	period time.Duration
	run    func(ctx context.Context, s *Scheduler, shard uint16, now time.Time, st *Stats) error
}

// shardJobs are the jobs of every shard. Termination is checked hourly, so
// a tenant is erased within the hour after its delete_after; analytics
// months expire on day boundaries, so a daily check is enough.
var shardJobs = []job{
	{name: JobAnalyticsMonths, period: 24 * time.Hour, run: expireAnalytics},
	{name: JobTenantErasure, period: time.Hour, run: eraseTerminated},
}

// periodOf numbers the window of length d that t falls in (windows start
// at the Unix epoch: UTC days, hours).
func periodOf(t time.Time, d time.Duration) int64 { return t.UnixMilli() / d.Milliseconds() }

// ExpiredBefore is the first month whose analytics are kept at now: every
// month before it is shredded (see AnalyticsMonths).
func ExpiredBefore(now time.Time) uint32 {
	return shard.Month(shard.MonthStart(shard.Month(now)).AddDate(0, -(AnalyticsMonths - 1), 0))
}

// expireAnalytics shreds the month keys of the shard's expired analytics
// and then deletes their events. The shred goes through this shard's log,
// so every replica of the shard destroys the key before the events go.
func expireAnalytics(ctx context.Context, s *Scheduler, sh uint16, now time.Time, st *Stats) error {
	m := s.cfg.Machine
	route := shard.RouteOfShard(sh, m.Shards())
	before := ExpiredBefore(now)
	// Each round purges what it lists, so the next lists the rest.
	for range 100 {
		months, err := m.AnalyticsMonthsBefore(ctx, sh, before)
		if err != nil || len(months) == 0 {
			return err
		}
		for _, am := range months {
			key := storage.MonthKey(am.Tenant, shard.MonthStart(am.Month)).ID
			if err := m.Shred(ctx, route, now, key); err != nil {
				return fmt.Errorf("shred analytics month %d of tenant %s: %w", am.Month, am.Tenant, err)
			}
			if err := m.PurgeAnalytics(ctx, sh, am.Tenant, am.Month); err != nil {
				return fmt.Errorf("purge analytics month %d of tenant %s: %w", am.Month, am.Tenant, err)
			}
			st.MonthsShredded++
		}
	}
	return errors.New("analytics months left after 100 rounds")
}

// eraseTerminated erases the shard's tenants whose grace period is over.
func eraseTerminated(ctx context.Context, s *Scheduler, sh uint16, now time.Time, st *Stats) error {
	tenants, err := s.cfg.Machine.Tenants(ctx, sh)
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range tenants {
		if t.Erased || t.Record.DeleteAfterUnixMs == 0 || now.UnixMilli() < t.Record.DeleteAfterUnixMs {
			continue
		}
		if err := eraseTenant(ctx, s.cfg.Machine, t.ID, t.Record, now); err != nil {
			errs = append(errs, fmt.Errorf("erase tenant %s: %w", t.ID, err))
			continue
		}
		s.cfg.Log.Info("tenant erased at the end of its grace period", "tenant", t.ID.String(), "shard", sh)
		st.TenantsErased++
	}
	return errors.Join(errs...)
}

// maxErasedAgents bounds the team whose emails an erasure releases.
const maxErasedAgents = 10_000

// eraseTenant releases the global index entries that name the tenant (its
// agents' emails, so they can sign up again, and its widget key), then
// shreds the tenant key through its own shard's log. Machine.Shred hands
// the key to every live node before it returns, and the nodes' ledger
// exchange brings it to the others; once the tenant's own record reads as
// erased the erasure is complete, and a pass cut off before that does it
// all again.
//
// What stays: records sealed under the shredded key (conversations,
// messages, visitors, tokens, the tenant's own tables) are unreadable
// bytes until compaction or a later sweep removes them; reads answer them
// as erased or not found.
func eraseTenant(ctx context.Context, m *shard.Machine, tenant storage.ID, rec *actorspb.TenantRecord, now time.Time) error {
	agents, err := m.Agents(ctx, tenant, maxErasedAgents)
	if err != nil {
		return fmt.Errorf("list agents: %w", err)
	}
	for _, a := range agents {
		email := strings.ToLower(strings.TrimSpace(a.Email))
		if err := m.ReleaseIndex(ctx, grains.GlobalIndexName("email", email), &actorspb.IndexRecord{TenantId: tenant[:], TargetId: a.Id}); err != nil {
			return fmt.Errorf("release an agent's email: %w", err)
		}
	}
	if rec.WidgetKey != "" {
		if err := m.ReleaseIndex(ctx, grains.GlobalIndexName("widget_key", rec.WidgetKey), &actorspb.IndexRecord{TenantId: tenant[:], TargetId: tenant[:]}); err != nil {
			return fmt.Errorf("release the widget key: %w", err)
		}
	}
	key := storage.TenantKey(tenant).ID
	if err := m.Shred(ctx, tenant, now, key); err != nil {
		return fmt.Errorf("shred the tenant key: %w", err)
	}
	return nil
}
