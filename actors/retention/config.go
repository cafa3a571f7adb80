package retention

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/cluster/clock"
)

// Retention periods: what the privacy policy promises (DESIGN.md).
const (
	// AnalyticsMonths is how long analytics are kept: a month's events are
	// shredded on the first pass on or after the first day of the month
	// AnalyticsMonths later, 00:00 UTC. No event is kept longer than
	// AnalyticsMonths (plus up to one day's scheduling), the events of a
	// month's last day a month less.
	AnalyticsMonths = 12
	// GracePeriod is how long a terminated tenant can still cancel and
	// export before it is erased.
	GracePeriod = 30 * 24 * time.Hour
	// BackupMaxAge is how old a backup may get before it is deleted.
	BackupMaxAge = 90 * 24 * time.Hour
)

// PruneFunc deletes the backups older than maxAge at now and reports how
// many it deleted. It runs on every node, over the node's own backups.
type PruneFunc func(ctx context.Context, now time.Time, maxAge time.Duration) (int, error)

// Config is what a Scheduler runs with.
type Config struct {
	// Machine is the node's shard state machine: the jobs read shards
	// through it and propose their shreds, purges and runs to it.
	Machine *shard.Machine
	// Leads reports whether this node leads a shard now. It must be safe
	// for concurrent use and must not block (replica.Groups.IsLeader).
	Leads func(shard uint16) bool
	// Clock is the time jobs go by. Default: the wall clock.
	Clock clock.Clock
	// Interval is the time between two passes of the loop. A job runs at
	// most once per its period whatever the interval; a shorter interval
	// only notices a due job (or a new leadership) sooner. Default 10
	// minutes.
	Interval time.Duration
	// PassTimeout bounds one pass. Default 10 minutes.
	PassTimeout time.Duration
	// PruneBackups, when set, is run once a day with BackupMaxAge over this
	// node's backups.
	PruneBackups PruneFunc
	// Log receives one line per job run and every failure. Default: none.
	Log *slog.Logger
}

// Defaults of Config.
const (
	DefaultInterval    = 10 * time.Minute
	DefaultPassTimeout = 10 * time.Minute
)

// EnsureDefaults fills in the fields left zero.
func (c *Config) EnsureDefaults() {
	if c.Clock == nil {
		c.Clock = clock.Real
	}
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.PassTimeout <= 0 {
		c.PassTimeout = DefaultPassTimeout
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Validate reports a Config that cannot run.
func (c *Config) Validate() error {
	switch {
	case c.Machine == nil:
		return errors.New("retention: no Machine")
	case c.Leads == nil:
		return errors.New("retention: no Leads")
	}
	return nil
}
