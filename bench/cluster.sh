#!/usr/bin/env bash
# Cluster figures of step 3, on this machine:
#  1. throughput: `chatpacket bench` against one node alone, then against
#     node 1 of a 3-node cluster (3 replicas per shard), same load shape,
#     interleaved for ROUNDS rounds; medians and the ratio.
#  2. failover: TestClusterKillNineLosesNothing ROUNDS times; each run logs
#     "cluster failover: ... failover=D ... longest_stall=D"; medians.
#   bench/cluster.sh [ROUNDS] [BENCH FLAGS...]
# FAILOVER=0 skips part 2; KEEP=1 keeps the nodes' data and logs.
# Every listener is on 127.0.0.1, port 0; data in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
shift || true
flags=("$@")
[ ${#flags[@]} -gt 0 ] || flags=(--visitors 50 --agents 1 --rate 3000 --duration 10s)

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
load=$(cut -d' ' -f1-3 /proc/loadavg)
go build -o "$work/chatpacket" ./cmd/chatpacket
bin=$work/chatpacket
export CHATPACKET_MASTER_KEY=$("$bin" admin key generate)

# shellcheck source=bench/nodes.sh
. bench/nodes.sh # the working directory is the repo root by now

bench() { # TARGET OUT
  "$bin" bench --target "http://$1" "${flags[@]}" 2>/dev/null | tee -a "$2"
}

for r in $(seq "$rounds"); do
  echo "round $r/$rounds: one node" >&2
  rm -rf "$work/data"
  mkdir -p "$work/r$r"
  start single
  h=$(logged single 'msg=serving http=(\S+)')
  ready "$h"
  bench "$h" "$work/single.txt"
  stop_all

  echo "round $r/$rounds: three nodes, three replicas" >&2
  start n1
  h1=$(logged n1 'msg=serving http=(\S+)')
  ready "$h1"
  seed=$(logged n1 'msg="cluster member" gossip=(\S+)')
  start n2 --join "$seed"
  start n3 --join "$seed"
  ready "$(logged n2 'msg=serving http=(\S+)')"
  ready "$(logged n3 'msg=serving http=(\S+)')"
  settled "$work"/n[123].log
  date -u +%H:%M:%S.%N >"$work/r$r/bench-start"
  bench "$h1" "$work/cluster.txt"
  stop_all
  cp "$work"/n[123].log "$work/r$r/"
done

if [ "${FAILOVER:-1}" = 1 ]; then
  echo "round 1..$rounds: failover (go test -run TestClusterKillNineLosesNothing)" >&2
  go test ./cmd/chatpacket -run 'TestClusterKillNineLosesNothing$' -count "$rounds" -v 2>&1 |
    grep -E 'cluster failover:|longest stall of each|^(--- |ok|FAIL)' | tee "$work/failover.txt" || true
else
  : >"$work/failover.txt"
fi

# med: the median of the numbers on stdin, one a line.
med() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
# ms: durations as Go prints them (350µs, 1.2ms, 1.5s), one a line, in ms.
ms() { sed -E 's/([0-9.]+)µs$/\1 0.001/; s/([0-9.]+)ms$/\1 1/; s/([0-9.]+)s$/\1 1000/' | awk '{printf "%.2f\n", $1*$2}'; }
summary() { # FILE: median acked/s, p50 ms, p99 ms
  echo "$(sed -nE 's/.*acked [0-9]+ \(([0-9]+)\/s\).*/\1/p' "$1" | med)" \
    "$(sed -nE 's/.* p50 (\S+) .*/\1/p' "$1" | ms | med)" \
    "$(sed -nE 's/.* p99 (\S+) .*/\1/p' "$1" | ms | med)"
}
read -r s_acked s_p50 s_p99 < <(summary "$work/single.txt")
read -r c_acked c_p50 c_p99 < <(summary "$work/cluster.txt")
echo
echo "# $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (dirty tree)') $(go version | cut -d' ' -f3) $(nproc) cores$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); load average before: $load"
echo "# bench ${flags[*]}; medians of $rounds runs"
printf '%-22s %10s %10s %10s\n' "" "acked/s" "p50 ms" "p99 ms"
printf '%-22s %10s %10s %10s\n' "one node" "$s_acked" "$s_p50" "$s_p99"
printf '%-22s %10s %10s %10s\n' "3 nodes, 3 replicas" "$c_acked" "$c_p50" "$c_p99"
awk -v c="$c_acked" -v s="$s_acked" 'BEGIN {printf "3 nodes / one node: %.2f of the acked throughput\n", c / s}'
if [ -s "$work/failover.txt" ]; then
  f=$(sed -nE 's/.*failover=(\S+) .*/\1/p' "$work/failover.txt" | ms | med)
  st=$(sed -nE 's/.*longest_stall=(\S+) .*/\1/p' "$work/failover.txt" | ms | med)
  echo "after kill -9, medians of $rounds runs: failover $f ms; longest stall of a conversation $st ms"
fi
