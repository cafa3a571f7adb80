#!/usr/bin/env bash
# Runs one benchmark scenario of `chatpacket bench` ROUNDS times, each
# against fresh nodes, and prints the median of each headline figure with
# the command that reproduces it.
#   bench/bench.sh SCENARIO [ROUNDS] [FLAGS...]
# SCENARIO: fanout, throughput, idle (one node each round) or cluster
# (three nodes, three replicas per shard, the sockets spread over them).
# FLAGS go to `chatpacket bench SCENARIO`; the target is filled in.
# The binary is built once; every node listens on 127.0.0.1 (port 0), with
# --widget-message-limits=false, its data in a temporary directory.
# Results of each round go to bench-results/SCENARIO-UTCTIME/rN/ (result.json,
# chart.svg); KEEP=1 also keeps the nodes' data and logs.
set -euo pipefail
cd "$(dirname "$0")/.."
usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
scenario=$1
shift
case $scenario in fanout | throughput | idle | cluster) ;; *) usage ;; esac
rounds=3
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then
  rounds=$1
  shift
fi
flags=("$@")
[ "$rounds" -ge 1 ] || usage

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
results=bench-results/$scenario-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$results"
echo "building chatpacket" >&2
go build -o "$work/chatpacket" ./cmd/chatpacket
bin=$work/chatpacket
export CHATPACKET_MASTER_KEY=$("$bin" admin key generate)

# shellcheck source=bench/nodes.sh
. bench/nodes.sh # the working directory is the repo root by now

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
dirs=()
for r in $(seq "$rounds"); do
  echo "round $r/$rounds: $scenario" >&2
  rm -rf "$work/data"
  if [ "$scenario" = cluster ]; then
    start n1
    h1=$(logged n1 'msg=serving http=(\S+)')
    ready "$h1"
    seed=$(logged n1 'msg="cluster member" gossip=(\S+)')
    start n2 --join "$seed"
    start n3 --join "$seed"
    h2=$(logged n2 'msg=serving http=(\S+)')
    h3=$(logged n3 'msg=serving http=(\S+)')
    ready "$h2"
    ready "$h3"
    settled "$work"/n[123].log
    target=(--targets "http://$h1,http://$h2,http://$h3")
  else
    start node
    h=$(logged node 'msg=serving http=(\S+)')
    ready "$h"
    target=(--target "http://$h")
  fi
  "$bin" bench "$scenario" "${target[@]}" --out "$results/r$r" "${flags[@]}" || echo "round $r: bench exited with status $?" >&2
  dirs+=("$results/r$r")
  stop_all
  [ "${KEEP:-0}" = 1 ] && mkdir -p "$work/r$r" && cp "$work"/*.log "$work/r$r/"
done

echo
echo "# $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (dirty tree)') $(go version | cut -d' ' -f3) $(nproc) cores$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2); load average before: $load_before"
echo "# reproduce: bench/bench.sh $scenario $rounds ${flags[*]}"
"$bin" bench median "${dirs[@]}"
echo "results: $results" >&2
