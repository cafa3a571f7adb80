package shard

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
)

// Retention's bookkeeping: the last period each job completed on a shard,
// in the shard's replicated state, so that whichever replica leads the
// shard next (after a restart or a failover) knows the period is done.
//
//	shard | TableJobRun | job name → JobRunRecord
//
// Job names are ours (constants of actors/retention), never personal data.
// The records are sealed under the global index key: they belong to the
// cluster, not to a tenant.

// maxJobName bounds a job's name.
const maxJobName = 64

// RouteOfShard returns an id whose shard is shard: commands about a shard
// as a whole (a job's run, a purge of its analytics) are routed by it. It
// is derived, so every node finds the same one.
func RouteOfShard(shard uint16, shards int) storage.ID {
	for i := uint32(0); ; i++ {
		h := sha256.Sum256(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint16([]byte("chatpacket shard route v1"), shard), i))
		id := storage.BytesID(h[:16])
		if storage.ShardOf(id[:], shards) == shard {
			return id
		}
	}
}

func jobRunKey(shard uint16, job string) []byte {
	return storage.Key(shard, TableJobRun, []byte(job))
}

func (s *state) recordJobRun(ctx context.Context, ch *change, r *actorspb.RecordJobRun) (*actorspb.Result, error) {
	route, err := idFrom(r.Route, "route")
	if err != nil {
		return nil, err
	}
	if r.Job == "" || len(r.Job) > maxJobName || r.Period <= 0 {
		return nil, fmt.Errorf("%w: a job run needs a job name of 1 to %d bytes and a period", ErrInvalid, maxJobName)
	}
	key := jobRunKey(shardOf(s.db, route), r.Job)
	var have actorspb.JobRunRecord
	if _, err := s.exists(ctx, key, &have); err != nil {
		return nil, err
	}
	if have.Period >= r.Period {
		return &actorspb.Result{}, nil // a retry, or a late leader: periods only go forward
	}
	rec := &actorspb.JobRunRecord{Job: r.Job, Period: r.Period, UnixMs: r.UnixMs}
	if err := ch.staged.Put(ctx, key, storage.GlobalIndexKey, rec); err != nil {
		return nil, err
	}
	s.stage(ch, key, rec)
	return &actorspb.Result{Created: true}, nil
}

// JobRun returns the last run of job recorded on shard; a job that never
// ran has period 0.
func (m *Machine) JobRun(ctx context.Context, shard uint16, job string) (*actorspb.JobRunRecord, error) {
	var rec actorspb.JobRunRecord
	err := m.get(ctx, jobRunKey(shard, job), &rec)
	if errors.Is(err, ErrNotFound) {
		return &actorspb.JobRunRecord{Job: job}, nil
	}
	return &rec, err
}

// RecordJobRun records through shard's log that job completed period.
func (m *Machine) RecordJobRun(ctx context.Context, shard uint16, job string, period int64, at time.Time) error {
	route := RouteOfShard(shard, m.db.Shards())
	_, err := m.Apply(ctx, &actorspb.Command{Op: &actorspb.Command_RecordJobRun{RecordJobRun: &actorspb.RecordJobRun{
		Route: route[:], Job: job, Period: period, UnixMs: at.UnixMilli(),
	}}})
	return err
}

// Shards is the number of shards of the machine's store.
func (m *Machine) Shards() int { return m.db.Shards() }
