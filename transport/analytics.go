package transport

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
	"github.com/chatpacket/chatpacket/transport/dashboard"
)

// Visitor analytics for agents: page views per day over a range of days,
// with the top pages, referrers and devices. The events hold no personal
// data (actors/shard/analytics.go); months older than retention keeps are
// gone, and read as days without views.

// Limits of GET /api/v1/analytics.
const (
	MaxAnalyticsDays     = 400
	DefaultAnalyticsDays = 30
	analyticsTop         = 10
)

func (a *API) registerAnalytics(s *http.ServeMux) {
	s.Handle("GET /api/v1/analytics", a.handler(a.authenticated(a.analytics)))
}

type dayJSON struct {
	Date      string `json:"date"`
	PageViews int    `json:"page_views"`
}

type countJSON struct {
	Name      string `json:"name"`
	PageViews int    `json:"page_views"`
}

type analyticsJSON struct {
	From      string      `json:"from"`
	To        string      `json:"to"`
	PageViews int         `json:"page_views"`
	Days      []dayJSON   `json:"days"`
	Paths     []countJSON `json:"paths"`
	Referrers []countJSON `json:"referrers"`
	Devices   []countJSON `json:"devices"`
}

// analyticsRange reads from and to (YYYY-MM-DD, UTC, both included; by
// default the last DefaultAnalyticsDays days).
func (a *API) analyticsRange(r *http.Request) (from, to time.Time, err error) {
	q := r.URL.Query()
	today := a.Now().UTC().Truncate(24 * time.Hour)
	to, from = today, today.AddDate(0, 0, -(DefaultAnalyticsDays-1))
	bad := errorf(http.StatusBadRequest, "invalid_range", "from and to are days as YYYY-MM-DD, from not after to, at most %d days apart", MaxAnalyticsDays)
	if s := q.Get("to"); s != "" {
		if to, err = time.Parse(time.DateOnly, s); err != nil {
			return from, to, bad
		}
		from = to.AddDate(0, 0, -(DefaultAnalyticsDays - 1))
	}
	if s := q.Get("from"); s != "" {
		if from, err = time.Parse(time.DateOnly, s); err != nil {
			return from, to, bad
		}
	}
	if from.After(to) || to.Sub(from) >= MaxAnalyticsDays*24*time.Hour {
		return from, to, bad
	}
	return from, to, nil
}

func (a *API) analytics(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	from, to, err := a.analyticsRange(r)
	if err != nil {
		return 0, nil, err
	}
	out, err := a.readAnalytics(r.Context(), p.tenant, from, to)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, out, nil
}

// readAnalytics counts tenant's page views of the days from to to, both
// included.
func (a *API) readAnalytics(ctx context.Context, tenant storage.ID, from, to time.Time) (*analyticsJSON, error) {
	end := to.AddDate(0, 0, 1)
	days := map[string]int{}
	paths, referrers, devices := map[string]int{}, map[string]int{}, map[string]int{}
	out := &analyticsJSON{From: from.Format(time.DateOnly), To: to.Format(time.DateOnly)}
	err := a.Machine.AnalyticsEvents(ctx, tenant, from, end, func(e *actorspb.AnalyticsEvent) error {
		out.PageViews++
		days[time.UnixMilli(e.UnixMs).UTC().Format(time.DateOnly)]++
		paths[e.Path]++
		if e.ReferrerHost != "" {
			referrers[e.ReferrerHost]++
		}
		devices[e.Device]++
		return nil
	})
	if err != nil {
		return nil, err
	}
	for d := from; d.Before(end); d = d.AddDate(0, 0, 1) {
		k := d.Format(time.DateOnly)
		out.Days = append(out.Days, dayJSON{Date: k, PageViews: days[k]})
	}
	out.Paths, out.Referrers, out.Devices = top(paths), top(referrers), top(devices)
	return out, nil
}

// Size of the dashboard's chart, in SVG user units (it scales to its box).
const chartWidth, chartHeight = 600.0, 160.0

// chartOf lays out the dashboard's chart of an analytics read.
func chartOf(an *analyticsJSON) *dashboard.Analytics {
	c := &dashboard.Analytics{From: an.From, To: an.To, PageViews: an.PageViews}
	for _, d := range an.Days {
		c.Max = max(c.Max, d.PageViews)
	}
	w := chartWidth / float64(max(1, len(an.Days)))
	for i, d := range an.Days {
		h := chartHeight * float64(d.PageViews) / float64(max(1, c.Max))
		c.Bars = append(c.Bars, dashboard.Bar{X: float64(i) * w, Y: chartHeight - h, W: w * 0.8, H: h, Date: d.Date, PageViews: d.PageViews})
	}
	counts := func(in []countJSON) []dashboard.Count {
		out := make([]dashboard.Count, len(in))
		for i, x := range in {
			out[i] = dashboard.Count{Name: x.Name, PageViews: x.PageViews}
		}
		return out
	}
	c.Paths, c.Referrers, c.Devices = counts(an.Paths), counts(an.Referrers), counts(an.Devices)
	return c
}

// top lists the analyticsTop names with the most views, most first.
func top(counts map[string]int) []countJSON {
	out := make([]countJSON, 0, len(counts))
	for name, n := range counts {
		out = append(out, countJSON{Name: name, PageViews: n})
	}
	slices.SortFunc(out, func(a, b countJSON) int {
		return cmp.Or(cmp.Compare(b.PageViews, a.PageViews), cmp.Compare(a.Name, b.Name))
	})
	return out[:min(len(out), analyticsTop)]
}
