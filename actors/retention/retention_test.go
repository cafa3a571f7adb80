package retention_test

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/nodetest"
	"github.com/chatpacket/chatpacket/actors/retention"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/cluster"
	"github.com/chatpacket/chatpacket/cluster/clock"
	"github.com/chatpacket/chatpacket/storage"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, nodetest.LeakIgnores...) }

func scheduler(t *testing.T, n *nodetest.Node, clk clock.Clock) *retention.Scheduler {
	t.Helper()
	s, err := retention.New(retention.Config{Machine: n.Machine, Leads: n.Shards().Groups.IsLeader, Clock: clk, Log: nodetest.Quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func apply(t *testing.T, m *shard.Machine, cmds ...*actorspb.Command) {
	t.Helper()
	for _, c := range cmds {
		if _, err := m.Apply(context.Background(), c); err != nil {
			t.Fatalf("Apply(%v) = %v", c, err)
		}
	}
}

// tenantWithVisitor creates a tenant and a visitor of it.
func tenantWithVisitor(t *testing.T, m *shard.Machine) (tenant, visitor storage.ID) {
	t.Helper()
	tenant, visitor = storage.NewID(), storage.NewID()
	apply(t, m,
		&actorspb.Command{Op: &actorspb.Command_CreateTenant{CreateTenant: &actorspb.CreateTenant{Tenant: &actorspb.TenantRecord{
			Id: tenant[:], Name: "Acme", WidgetKey: "wk_0123456789abcdef", CreatedUnixMs: 1}}}},
		&actorspb.Command{Op: &actorspb.Command_CreateVisitor{CreateVisitor: &actorspb.CreateVisitor{Visitor: &actorspb.VisitorRecord{
			Id: visitor[:], TenantId: tenant[:], CreatedUnixMs: 1}}}},
	)
	return tenant, visitor
}

func view(tenant, visitor storage.ID, at time.Time) *actorspb.Command {
	id := make([]byte, 8)
	rand.Read(id)
	return &actorspb.Command{Op: &actorspb.Command_AddPageView{AddPageView: &actorspb.AddPageView{
		TenantId: tenant[:], VisitorId: visitor[:], EventId: id,
		View: &actorspb.PageViewRecord{Url: "https://shop.example/p", UnixMs: at.UnixMilli()},
	}}}
}

// viewsAt counts the tenant's analytics events in the hour around at.
func viewsAt(t *testing.T, m *shard.Machine, tenant storage.ID, at time.Time) int {
	t.Helper()
	n := 0
	if err := m.AnalyticsEvents(context.Background(), tenant, at.Add(-time.Hour), at.Add(time.Hour), func(*actorspb.AnalyticsEvent) error {
		n++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestExpiredBefore pins the rule on both sides of its boundary: month M
// goes at 00:00 UTC on the first day of M+12, not a millisecond before.
func TestExpiredBefore(t *testing.T) {
	for _, c := range []struct {
		now  time.Time
		want uint32
	}{
		{time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 202502},                     // January 2025 goes now
		{time.Date(2025, 12, 31, 23, 59, 59, 999e6, time.UTC), 202501},            // and not before
		{time.Date(2026, 3, 15, 12, 0, 0, 0, time.UTC), 202504},                   // mid-month: up to March 2025
		{time.Date(2026, 1, 1, 0, 30, 0, 0, time.FixedZone("CET", 3600)), 202501}, // 23:30 UTC on 31 Dec
	} {
		if got := retention.ExpiredBefore(c.now); got != c.want {
			t.Errorf("ExpiredBefore(%v) = %d; want %d", c.now, got, c.want)
		}
	}
}

// TestMovingTheClockExpiresAnalytics: analytics of 13 months ago are
// shredded and those of 11 months ago kept; moving the clock 12 months
// shreds the month that was current and keeps one recorded since; a
// second pass in the same day runs nothing.
func TestMovingTheClockExpiresAnalytics(t *testing.T) {
	n := nodetest.Start(t)
	clk := clock.NewMovable()
	s := scheduler(t, n, clk)
	tenant, visitor := tenantWithVisitor(t, n.Machine)
	now := clk.Now()
	old, kept := now.AddDate(0, -13, 0), now.AddDate(0, -11, 0)
	apply(t, n.Machine, view(tenant, visitor, old), view(tenant, visitor, kept), view(tenant, visitor, now))

	st, err := s.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.MonthsShredded != 1 || viewsAt(t, n.Machine, tenant, old) != 0 || viewsAt(t, n.Machine, tenant, kept) != 1 || viewsAt(t, n.Machine, tenant, now) != 1 {
		t.Fatalf("after a pass: %+v, views 13/11/0 months ago = %d/%d/%d; want 1 month shredded, views 0/1/1",
			st, viewsAt(t, n.Machine, tenant, old), viewsAt(t, n.Machine, tenant, kept), viewsAt(t, n.Machine, tenant, now))
	}
	if st, err := s.RunOnce(context.Background()); err != nil || st.JobsRun != 0 {
		t.Fatalf("a second pass in the same day = %+v, %v; want no job run", st, err)
	}

	clk.Advance(6 * 31 * 24 * time.Hour)
	later := clk.Now()
	apply(t, n.Machine, view(tenant, visitor, later))
	clk.Advance(now.AddDate(1, 0, 0).Sub(later))
	st, err = s.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if viewsAt(t, n.Machine, tenant, now) != 0 || viewsAt(t, n.Machine, tenant, later) != 1 || st.MonthsShredded != 2 {
		t.Fatalf("12 months on: %+v, views of then/6 months later = %d/%d; want 2 months shredded (11 and 0 months ago then), views 0/1",
			st, viewsAt(t, n.Machine, tenant, now), viewsAt(t, n.Machine, tenant, later))
	}
}

// TestTerminatedTenantIsErasedAfterGrace: 29 days after termination the
// tenant is there; 30 days after, a pass erases it and releases its
// widget key; a cancelled termination erases nothing.
func TestTerminatedTenantIsErasedAfterGrace(t *testing.T) {
	ctx := context.Background()
	n := nodetest.Start(t)
	clk := clock.NewMovable()
	s := scheduler(t, n, clk)
	m := n.Machine
	gone, stays := storage.NewID(), storage.NewID()
	for i, tenant := range []storage.ID{gone, stays} {
		key := "wk_0123456789abcde" + string(rune('0'+i))
		apply(t, m, &actorspb.Command{Op: &actorspb.Command_CreateTenant{CreateTenant: &actorspb.CreateTenant{Tenant: &actorspb.TenantRecord{
			Id: tenant[:], Name: "Acme", WidgetKey: key, CreatedUnixMs: 1}}}},
			&actorspb.Command{Op: &actorspb.Command_ClaimIndex{ClaimIndex: &actorspb.ClaimIndex{
				Name: widgetKeyName(key), Record: &actorspb.IndexRecord{TenantId: tenant[:], TargetId: tenant[:]}}}})
		if _, err := m.Terminate(ctx, tenant, storage.NewID(), clk.Now(), clk.Now().Add(retention.GracePeriod)); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.CancelTermination(ctx, stays); err != nil {
		t.Fatal(err)
	}
	clk.Advance(29 * 24 * time.Hour)
	if st, err := s.RunOnce(ctx); err != nil || st.TenantsErased != 0 {
		t.Fatalf("pass at +29 days = %+v, %v; want nothing erased", st, err)
	}
	if _, err := m.Tenant(ctx, gone); err != nil {
		t.Fatalf("tenant at +29 days = %v; want it readable", err)
	}
	clk.Advance(24 * time.Hour)
	if st, err := s.RunOnce(ctx); err != nil || st.TenantsErased != 1 {
		t.Fatalf("pass at +30 days = %+v, %v; want one tenant erased", st, err)
	}
	if _, err := m.Tenant(ctx, gone); !errorsIsErased(err) {
		t.Fatalf("terminated tenant after its grace = %v; want erased", err)
	}
	if _, err := m.Index(ctx, widgetKeyName("wk_0123456789abcde0")); err == nil {
		t.Fatal("the erased tenant's widget key is still claimed")
	}
	if _, err := m.Tenant(ctx, stays); err != nil {
		t.Fatalf("tenant whose termination was cancelled = %v; want it kept", err)
	}
}

// TestLoopRunsJobs: Start runs passes by itself; Close stops them.
func TestLoopRunsJobs(t *testing.T) {
	n := nodetest.Start(t)
	s, err := retention.New(retention.Config{Machine: n.Machine, Leads: n.Shards().Groups.IsLeader, Interval: 10 * time.Millisecond, Log: nodetest.Quiet})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	defer s.Close()
	deadline := time.Now().Add(20 * time.Second)
	for sh := uint16(0); sh < uint16(n.Machine.Shards()); {
		run, err := n.Machine.JobRun(context.Background(), sh, retention.JobTenantErasure)
		switch {
		case err != nil:
			t.Fatal(err)
		case run.Period > 0:
			sh++
			continue
		case time.Now().After(deadline):
			t.Fatalf("shard %d: no run of %s recorded within 20 s", sh, retention.JobTenantErasure)
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.Close()
	s.Close()
}

// TestNewLeaderDoesNotRerunThePeriod: a node runs every shard's jobs; it
// drains, so the other node leads every shard; that node's pass runs
// nothing in the same period (the runs are in the shards' replicated
// state), and runs them all once the clock moves into the next day.
func TestNewLeaderDoesNotRerunThePeriod(t *testing.T) {
	if testing.Short() {
		t.Skip("two nodes and a drain")
	}
	a := nodetest.Start(t)
	b := nodetest.Start(t, a.GossipAddr())
	clk := clock.NewMovable()
	sa, sb := scheduler(t, a, clk), scheduler(t, b, clk)
	deadline := time.Now().Add(30 * time.Second)
	for !votersEverywhere(b.Node, 2) {
		if time.Now().After(deadline) {
			t.Fatal("b did not become a voter of every shard within 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stA, errA := sa.RunOnce(ctx)
	stB, errB := sb.RunOnce(ctx)
	jobs := 2 * a.Machine.Shards()
	if errA != nil || errB != nil || stA.JobsRun+stB.JobsRun != jobs {
		t.Fatalf("first passes: a %+v %v, b %+v %v; want %d jobs run between them", stA, errA, stB, errB, jobs)
	}
	if err := a.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	for sh := range uint16(b.Machine.Shards()) {
		if !b.Shards().Groups.IsLeader(sh) {
			t.Fatalf("b does not lead shard %d after a drained", sh)
		}
	}
	if st, err := sb.RunOnce(ctx); err != nil || st.JobsRun != 0 {
		t.Fatalf("the new leader's pass in the same period = %+v, %v; want no job run again", st, err)
	}
	clk.Advance(24 * time.Hour)
	if st, err := sb.RunOnce(ctx); err != nil || st.JobsRun != jobs {
		t.Fatalf("the new leader's pass a day later = %+v, %v; want all %d jobs run", st, err, jobs)
	}
}

func votersEverywhere(node *cluster.Node, n int) bool {
	for _, s := range node.Shards().Groups.Status() {
		if len(s.Voters) < n || s.LeaderID == "" {
			return false
		}
	}
	return true
}

func widgetKeyName(key string) *actorspb.IndexName {
	return &actorspb.IndexName{Scope: actorspb.IndexScope_INDEX_SCOPE_GLOBAL, Purpose: "widget_key", Value: []byte(key)}
}

func errorsIsErased(err error) bool { return errors.Is(err, storage.ErrErased) }
