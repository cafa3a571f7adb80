// Package bench holds ChatPacket's benchmarks and the figures they gave
// (RESULTS.md). Run them with `make bench`; each benchmark reports records
// per second as "rec/s" so that runs compare directly with benchstat.
package bench
