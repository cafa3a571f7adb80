package replica

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/chatpacket/chatpacket/cluster/raftstore"
	"github.com/hashicorp/raft"
)

// Scrub takes erased data out of this node's raft state, which holds it
// under the node's own key (see raftstore's scrub.go): every group takes a
// snapshot of its state machine as it is now (after the erasure, so erased
// records are in it only as erased), its newest snapshot is rewritten
// through rewrite (a group with nothing new since its last snapshot keeps
// that one, from before the erasure, and rewrite turns what was erased into
// stand-ins), its older snapshots go, and its log is cut at the snapshot.
// Then the store purges the deleted values from its files.
//
// It costs a snapshot of every shard this node holds, so callers batch the
// erasures of a while into one Scrub. It carries on past a group that
// fails and returns every failure; a repeat is safe.
func (g *Groups) Scrub(ctx context.Context, rewrite func(io.Reader, io.Writer) error) error {
	if g.closed.Load() {
		return ErrClosed
	}
	var errs []error
	var ranges [][2][]byte
	for _, grp := range g.groups {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := grp.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
			errs = append(errs, fmt.Errorf("replica: shard %d: snapshot before scrubbing: %w", grp.shard, err))
			continue
		}
		index, err := grp.snaps.Scrub(ctx, rewrite)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if index > 0 {
			if err := grp.store.TruncateThrough(index); err != nil {
				errs = append(errs, fmt.Errorf("replica: shard %d: truncate the log: %w", grp.shard, err))
				continue
			}
		}
		ranges = append(ranges, raftstore.Ranges(grp.shard)...)
	}
	if err := g.cfg.DB.Purge(ctx, ranges...); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
