package shard

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/url"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/storage"
)

// Policy notices: the service's announcements of a change of its privacy
// policy, cluster-wide. They are few (a handful a year) and hold no
// personal data, so they live together on the shard of a fixed route,
// sealed under the cluster's index key, keyed by effective time; raft
// replicates them like any record.
//
// The 14-day rule is checked here as well as by the node that publishes:
// the command carries its publication time, so every replica checks the
// same thing.

// PolicyNoticeDays is how far ahead a policy change must be announced.
const PolicyNoticeDays = 14

// Limits of a notice.
const (
	MaxPolicySummaryBytes = 500
	maxPolicyNotices      = 100
)

// policyRoute places every policy notice in one shard.
var policyRoute = func() storage.ID {
	h := sha256.Sum256([]byte("chatpacket policy notices v1"))
	return storage.BytesID(h[:16])
}()

// EarliestPolicyDate is the first effective date a notice published at now
// may have: the UTC date of now plus PolicyNoticeDays days (published on
// 2026-11-28 at any hour, the earliest is 2026-12-12).
func EarliestPolicyDate(now time.Time) time.Time {
	y, m, d := now.UTC().Date()
	return time.Date(y, m, d+PolicyNoticeDays, 0, 0, 0, 0, time.UTC)
}

// CheckPolicyNotice says what is wrong with a notice, if anything.
func CheckPolicyNotice(n *actorspb.PolicyNotice) error {
	effective := time.UnixMilli(n.GetEffectiveUnixMs()).UTC()
	switch {
	case n.GetPublishedUnixMs() <= 0:
		return fmt.Errorf("%w: a notice needs its publication time", ErrInvalid)
	case n.GetEffectiveUnixMs() <= 0 || !effective.Equal(effective.Truncate(24*time.Hour)):
		return fmt.Errorf("%w: the effective time is a date, 00:00 UTC", ErrInvalid)
	case effective.Before(EarliestPolicyDate(time.UnixMilli(n.PublishedUnixMs))):
		return fmt.Errorf("%w: effective date %s is less than %d days after today (%s): the earliest is %s", ErrInvalid,
			effective.Format(time.DateOnly), PolicyNoticeDays, time.UnixMilli(n.PublishedUnixMs).UTC().Format(time.DateOnly),
			EarliestPolicyDate(time.UnixMilli(n.PublishedUnixMs)).Format(time.DateOnly))
	case n.Summary == "" || len(n.Summary) > MaxPolicySummaryBytes || !utf8.ValidString(n.Summary):
		return fmt.Errorf("%w: a summary of 1 to %d bytes of UTF-8", ErrInvalid, MaxPolicySummaryBytes)
	}
	if n.Url != "" {
		u, err := url.Parse(n.Url)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || len(n.Url) > MaxURLBytes {
			return fmt.Errorf("%w: the url is an http(s) address of at most %d bytes", ErrInvalid, MaxURLBytes)
		}
	}
	return nil
}

func policyNoticeKey(db *storage.DB, effectiveUnixMs int64) []byte {
	return storage.Key(shardOf(db, policyRoute), TablePolicyNotice, binary.BigEndian.AppendUint64(nil, uint64(effectiveUnixMs)))
}

func (s *state) putPolicyNotice(ctx context.Context, ch *change, n *actorspb.PolicyNotice) (*actorspb.Result, error) {
	if err := CheckPolicyNotice(n); err != nil {
		return nil, err
	}
	key := policyNoticeKey(s.db, n.EffectiveUnixMs)
	var have actorspb.PolicyNotice
	found, err := s.exists(ctx, key, &have)
	if err != nil {
		return nil, err
	}
	rec := &actorspb.PolicyNotice{EffectiveUnixMs: n.EffectiveUnixMs, Summary: n.Summary, Url: n.Url, PublishedUnixMs: n.PublishedUnixMs}
	if found && have.PublishedUnixMs > 0 {
		rec.PublishedUnixMs = min(have.PublishedUnixMs, n.PublishedUnixMs)
	}
	if err := ch.staged.Put(ctx, key, storage.GlobalIndexKey, rec); err != nil {
		return nil, err
	}
	s.stage(ch, key, rec)
	return &actorspb.Result{Created: !found}, nil
}

// PolicyNotices returns the newest notices, latest effective date first,
// at most 100.
func (m *Machine) PolicyNotices(ctx context.Context) ([]*actorspb.PolicyNotice, error) {
	prefix := storage.Key(shardOf(m.db, policyRoute), TablePolicyNotice)
	var all []*actorspb.PolicyNotice
	err := eachPage(ctx, m, prefix, maxPolicyNotices, func(_ []byte, n *actorspb.PolicyNotice, err error) error {
		if err == nil {
			all = append(all, n)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Reverse(all)
	return all[:min(len(all), maxPolicyNotices)], nil
}

// EachTenant calls fn with every tenant of the cluster, a shard after
// another, reading page records at a time (shards this node holds no
// replica of are read through their leaders). A terminated tenant whose
// key was shredded is skipped.
func (m *Machine) EachTenant(ctx context.Context, page int, fn func(*actorspb.TenantRecord) error) error {
	for s := range m.db.Shards() {
		err := eachPage(ctx, m, storage.Key(uint16(s), TableTenant), page, func(_ []byte, t *actorspb.TenantRecord, err error) error {
			if err != nil {
				return nil
			}
			return fn(t)
		})
		if err != nil {
			return fmt.Errorf("tenants of shard %d: %w", s, err)
		}
	}
	return nil
}
