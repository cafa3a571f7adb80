// Package bench holds ChatPacket's benchmarks and the figures they gave
// (RESULTS.md). The Go benchmarks here (storage, shard) run with `make
// bench`; each reports records per second as "rec/s" so that runs compare
// directly with benchstat. The end-to-end scenarios (fan-out, throughput,
// idle connections, cluster) are `chatpacket bench` subcommands built on
// bench/load, run against fresh nodes by bench/bench.sh.
package bench
