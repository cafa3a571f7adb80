package cluster

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/cluster/clusterpb"
	"github.com/chatpacket/chatpacket/storage"
)

// Erasure across the cluster. A shred is a raft command (shard.ShredKeys),
// so the replicas of its shard apply it before it is acknowledged; then
// the node that made it hands the ids to every live node (PushLedger)
// before it answers. A node that missed the push learns them here: each
// node compares its shred ledger's digest with every peer's, every
// Config.LedgerSync, and pulls the entries of a peer whose digest
// differs; the ledger is a grow-only set, so pulling everything a peer has
// is the whole merge. That reaches former replicas (whose copies stay on
// disk), and a node that was down or cut off, once it is back.
//
// Then each node takes the erased data out of its own raft state: the raft
// log and snapshots hold it under the node's key, which no erasure
// destroys. scrubLoop runs replica.Groups.Scrub a while after the ledger
// grew, so that erasures that come together cost one pass.

// ledgerPage is how many entries one page carries: 512 entries of about 30
// bytes keep a reply far below any message limit.
const ledgerPage = 512

// ledgerAskTimeout bounds one question to a peer about its ledger.
const ledgerAskTimeout = 2 * time.Second

// serveLedger answers a peer's ledger questions from this node's store.
func serveLedger(c actor.Context, db *storage.DB) bool {
	switch req := c.Message().(type) {
	case *clusterpb.LedgerPush:
		ctx, cancel := context.WithTimeout(context.Background(), ledgerAskTimeout)
		defer cancel()
		entries, err := shredRecordsOf(req.Entries)
		if err == nil {
			_, err = db.ApplyLedger(ctx, entries)
		}
		reply := &clusterpb.LedgerPushReply{}
		if err != nil {
			reply.Error = err.Error()
		}
		c.Respond(reply)
		return true
	case *clusterpb.LedgerDigestRequest:
		ctx, cancel := context.WithTimeout(context.Background(), ledgerAskTimeout)
		defer cancel()
		d, err := db.LedgerDigest(ctx)
		if err != nil {
			c.Respond(&clusterpb.LedgerDigestReply{}) // count 0 with no sum: never equal to a real digest
			return true
		}
		c.Respond(&clusterpb.LedgerDigestReply{Count: uint64(d.Count), Sum: d.Sum[:]})
		return true
	case *clusterpb.LedgerPageRequest:
		ctx, cancel := context.WithTimeout(context.Background(), ledgerAskTimeout)
		defer cancel()
		limit := min(int(req.Limit), ledgerPage)
		if limit <= 0 {
			limit = ledgerPage
		}
		var cursor []byte
		if len(req.Cursor) > 0 {
			cursor = req.Cursor
		}
		page, next, err := db.LedgerPage(ctx, cursor, limit)
		if err != nil {
			c.Respond(&clusterpb.LedgerPageReply{Error: err.Error()})
			return true
		}
		reply := &clusterpb.LedgerPageReply{Next: next}
		for _, e := range page {
			reply.Entries = append(reply.Entries, &clusterpb.LedgerEntry{KeyId: bytes.Clone(e.KeyID[:]), ShreddedUnix: e.At.Unix()})
		}
		c.Respond(reply)
		return true
	}
	return false
}

// exchangeLedgers pulls, every interval, the ledger of each peer whose
// digest differs from this node's. It runs while the node is a member.
func (s *membership) exchangeLedgers(n *Node, db *storage.DB, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		select {
		case <-t.C:
		case <-s.stop:
			return
		}
		for _, p := range n.Peers() {
			if p.NodeID == "" || p.NodeID == n.p.cfg.Identity.NodeID {
				continue
			}
			if err := pullLedger(ctx, n, db, p.RemoteAddr); err != nil {
				n.p.log.Debug("ledger exchange", "peer", p.NodeID, "err", err)
			}
		}
	}
}

// pullLedger applies every entry of the peer at remote's ledger that this
// node lacks, when their digests differ.
func pullLedger(ctx context.Context, n *Node, db *storage.DB, remote string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	pid := actor.NewPID(remote, forwarderName)
	res, err := n.System.Root.RequestFuture(pid, &clusterpb.LedgerDigestRequest{}, ledgerAskTimeout).Result()
	if err != nil {
		return err
	}
	theirs, ok := res.(*clusterpb.LedgerDigestReply)
	if !ok {
		return errors.New("the peer answered something else than a digest")
	}
	ours, err := db.LedgerDigest(ctx)
	if err != nil {
		return err
	}
	if theirs.Count == uint64(ours.Count) && bytes.Equal(theirs.Sum, ours.Sum[:]) {
		return nil
	}
	var cursor []byte
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		res, err := n.System.Root.RequestFuture(pid, &clusterpb.LedgerPageRequest{Cursor: cursor, Limit: ledgerPage}, ledgerAskTimeout).Result()
		if err != nil {
			return err
		}
		page, ok := res.(*clusterpb.LedgerPageReply)
		switch {
		case !ok:
			return errors.New("the peer answered something else than a ledger page")
		case page.Error != "":
			return errors.New(page.Error)
		}
		entries, err := shredRecordsOf(page.Entries)
		if err != nil {
			return err
		}
		if _, err := db.ApplyLedger(ctx, entries); err != nil {
			return err
		}
		if len(page.Next) == 0 {
			return nil
		}
		cursor = page.Next
	}
}

func shredRecordsOf(in []*clusterpb.LedgerEntry) ([]storage.ShredRecord, error) {
	out := make([]storage.ShredRecord, 0, len(in))
	for _, e := range in {
		var id storage.KeyID
		if len(e.KeyId) != len(id) {
			return nil, errors.New("a malformed key id")
		}
		copy(id[:], e.KeyId)
		out = append(out, storage.ShredRecord{KeyID: id, At: time.Unix(e.ShreddedUnix, 0).UTC()})
	}
	return out, nil
}

var _ shard.LedgerPusher = (*ShardLog)(nil)

// PushLedger hands entries to every live peer at once and waits for their
// answers (within ctx): a shred's caller calls it before it answers, so
// that no node still reads what was erased. A peer that does not answer
// is logged, and learns the entries from the exchange once it can.
func (l *ShardLog) PushLedger(ctx context.Context, entries []storage.ShredRecord) {
	push := &clusterpb.LedgerPush{}
	for _, e := range entries {
		push.Entries = append(push.Entries, &clusterpb.LedgerEntry{KeyId: bytes.Clone(e.KeyID[:]), ShreddedUnix: e.At.Unix()})
	}
	timeout := ledgerAskTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = max(min(time.Until(d), timeout), time.Millisecond)
	}
	self := l.node.p.cfg.Identity.NodeID
	var wg sync.WaitGroup
	for _, p := range l.node.Peers() {
		if p.NodeID == "" || p.NodeID == self {
			continue
		}
		wg.Go(func() {
			res, err := l.node.System.Root.RequestFuture(actor.NewPID(p.RemoteAddr, forwarderName), push, timeout).Result()
			if r, ok := res.(*clusterpb.LedgerPushReply); err == nil && (!ok || r.Error != "") {
				err = errors.New("it refused the entries")
				if ok {
					err = errors.New(r.Error)
				}
			}
			if err != nil {
				l.node.p.log.Warn("a shred did not reach a node at once; the ledger exchange will bring it", "peer", p.NodeID, "err", err)
			}
		})
	}
	wg.Wait()
}

// scrubLoop scrubs this node's raft state delay after its ledger grew, and
// again after a failed pass. It runs as long as the node's shards.
func (s *Shards) scrubLoop(db *storage.DB, delay time.Duration, stop <-chan struct{}) {
	retry := (<-chan time.Time)(nil)
	for {
		select {
		case <-db.LedgerChanged():
		case <-retry:
		case <-stop:
			return
		}
		retry = nil
		select { // gather the erasures that come together
		case <-time.After(delay):
		case <-stop:
			return
		}
		start := time.Now()
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		err := s.Groups.Scrub(ctx, shard.ScrubSnapshot(db))
		cancel()
		if err != nil {
			s.log.Warn("scrubbing erased data from raft state failed; trying again", "err", err)
			retry = time.After(10 * delay)
			continue
		}
		s.log.Info("erased data scrubbed from raft state", "took", time.Since(start).Round(time.Millisecond))
	}
}
