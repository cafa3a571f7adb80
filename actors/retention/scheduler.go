package retention

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Scheduler runs the retention jobs of one node: in a loop (Start), or one
// pass at a time (RunOnce).
type Scheduler struct {
	cfg Config

	// pass serialises passes; lastPrune is the last day this node pruned
	// its backups (node-local: pruning twice deletes nothing more).
	pass      sync.Mutex
	lastPrune int64

	mu      sync.Mutex
	stop    chan struct{}
	done    chan struct{}
	started bool
}

// Stats counts what passes did.
type Stats struct {
	JobsRun        int // shard jobs run (a job of a shard in a period)
	MonthsShredded int // (tenant, month) pairs of a shard shredded and purged
	TenantsErased  int
	BackupsPruned  int
}

// New returns a scheduler of cfg; it runs nothing until Start or RunOnce.
func New(cfg Config) (*Scheduler, error) {
	cfg.EnsureDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Scheduler{cfg: cfg, stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// RunOnce runs one pass: every due job of every shard this node leads, and
// the node's backup pruning when due. A job that fails is logged and left
// unrecorded (the next pass runs it again); the others still run. It
// returns what the pass did and every failure.
func (s *Scheduler) RunOnce(ctx context.Context) (Stats, error) {
	s.pass.Lock()
	defer s.pass.Unlock()
	now := s.cfg.Clock.Now()
	var st Stats
	var errs []error
	m := s.cfg.Machine
	for sh := range uint16(m.Shards()) {
		for _, j := range shardJobs {
			if err := ctx.Err(); err != nil {
				return st, errors.Join(append(errs, err)...)
			}
			if !s.cfg.Leads(sh) {
				break
			}
			if err := s.runJob(ctx, sh, j, now, &st); err != nil {
				s.cfg.Log.Warn("retention job failed; the next pass runs it again", "job", j.name, "shard", sh, "err", err)
				errs = append(errs, fmt.Errorf("%s on shard %d: %w", j.name, sh, err))
			}
		}
	}
	if err := s.pruneBackups(ctx, now, &st); err != nil {
		s.cfg.Log.Warn("pruning backups failed; the next pass tries again", "err", err)
		errs = append(errs, err)
	}
	return st, errors.Join(errs...)
}

// runJob runs j on shard sh unless the shard's record says it ran in
// now's period, and records the run.
func (s *Scheduler) runJob(ctx context.Context, sh uint16, j job, now time.Time, st *Stats) error {
	m := s.cfg.Machine
	period := periodOf(now, j.period)
	last, err := m.JobRun(ctx, sh, j.name)
	if err != nil {
		return fmt.Errorf("read last run: %w", err)
	}
	if last.Period >= period {
		return nil
	}
	if err := j.run(ctx, s, sh, now, st); err != nil {
		return err
	}
	if err := m.RecordJobRun(ctx, sh, j.name, period, now); err != nil {
		return fmt.Errorf("record run: %w", err)
	}
	st.JobsRun++
	return nil
}

func (s *Scheduler) pruneBackups(ctx context.Context, now time.Time, st *Stats) error {
	day := periodOf(now, 24*time.Hour)
	if s.cfg.PruneBackups == nil || s.lastPrune >= day {
		return nil
	}
	n, err := s.cfg.PruneBackups(ctx, now, BackupMaxAge)
	st.BackupsPruned += n
	if err != nil {
		return fmt.Errorf("prune backups: %w", err)
	}
	if n > 0 {
		s.cfg.Log.Info("deleted old backups", "count", n, "max_age", BackupMaxAge)
	}
	s.lastPrune = day
	return nil
}

// Start runs passes every Interval, the first one at once, until Close.
// Calling it again does nothing.
func (s *Scheduler) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.stop:
		return // closed
	default:
	}
	if s.started {
		return
	}
	s.started = true
	go s.loop()
}

func (s *Scheduler) loop() {
	defer close(s.done)
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.PassTimeout)
		go func() {
			select {
			case <-s.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		s.RunOnce(ctx) // failures are logged; the next pass retries
		cancel()
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

// Close stops the loop, cancelling a pass in flight, and waits for it.
// It is safe to call twice, and without Start.
func (s *Scheduler) Close() {
	s.mu.Lock()
	started := s.started
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.mu.Unlock()
	if started {
		<-s.done
	}
}
