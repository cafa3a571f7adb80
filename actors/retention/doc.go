// Package retention runs the jobs that keep ChatPacket's retention promises
// by themselves: analytics months are shredded 12 months after they began,
// terminated tenants are erased when their grace period ends, and old
// backups are deleted.
//
// Every node runs a Scheduler. A pass looks at each shard this node leads
// and runs the shard jobs that are due over that shard's data; the last
// period a job completed on a shard is recorded through the shard's raft
// log (shard.Machine.RecordJobRun), so after a restart or a failover the
// shard's next leader knows the period is done and does not run it again.
// A job interrupted midway (the node died, leadership moved) is simply run
// again by the next leader: each of its steps (a shred, a purge, an index
// release) is idempotent. Two nodes that both believe for a moment that
// they lead a shard may both run its job; that is harmless for the same
// reason, and raft lets only one of them record it.
//
// Jobs read time from a clock.Clock, so tests move the clock and call
// RunOnce rather than wait. Periods are fixed windows of the clock's time
// (UTC days, hours), so "once per period" means once per window.
//
// Concurrency: a Scheduler's methods are safe for concurrent use; passes
// never overlap (RunOnce waits for a pass in flight).
package retention
