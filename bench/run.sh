#!/usr/bin/env bash
# Runs the benchmarks ROUNDS times, interleaved (every benchmark once per
# round), so that slow phases of this noisy machine fall on both sides of
# each comparison, and summarises the rounds with benchstat (medians).
#   bench/run.sh [BENCH_REGEXP] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
pattern=${1:-.}
rounds=${2:-6}
out=$(mktemp -d)
go test -c -o "$out/bench.test" ./bench
[ -x "$(go env GOPATH)/bin/benchstat" ] || go install golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
for i in $(seq "$rounds"); do
  echo "round $i/$rounds" >&2
  (cd bench && "$out/bench.test" -test.run '^$' -test.bench "$pattern" -test.benchtime 2s) >> "$out/results.txt"
done
echo "# $(git rev-parse --short HEAD) $(go version) $(nproc) cores $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
"$(go env GOPATH)/bin/benchstat" -col /store "$out/results.txt"
echo "raw results: $out/results.txt" >&2
