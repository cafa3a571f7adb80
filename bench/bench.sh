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

# start NAME [FLAGS...]: a node in the background, logging to $work/NAME.log.
start() {
  local name=$1
  shift
  "$bin" serve --data-dir "$work/data/$name" --http 127.0.0.1:0 --gossip 127.0.0.1:0 \
    --remote 127.0.0.1:0 --raft 127.0.0.1:0 --gossip-preset local --widget-message-limits=false "$@" 2>"$work/$name.log" &
  pids+=("$!")
}

# logged NAME REGEXP: waits (up to 60 s) for a log line and prints its
# first group.
logged() {
  for _ in $(seq 600); do
    if v=$(sed -nE "s/.*$2.*/\1/p" "$work/$1.log" | head -1) && [ -n "$v" ]; then
      echo "$v"
      return
    fi
    sleep 0.1
  done
  echo "no line matching $2 in $1's log" >&2
  tail -20 "$work/$1.log" >&2
  exit 1
}

ready() {
  for _ in $(seq 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$1/readyz")" = 200 ] && return
    sleep 0.1
  done
  echo "$1 not ready within 60 s" >&2
  exit 1
}

# settled LOGS...: waits until the leaders made two joiners voters of all
# 64 shards, then until no leadership transfer for 3 s (60 s at most each).
settled() {
  for _ in $(seq 600); do
    [ "$(cat "$@" | grep -c 'msg="replica: add voter".*reason="caught up"')" -ge 128 ] && break
    sleep 0.1
  done
  local last=-1 same=0 i=0
  while [ $same -lt 30 ] && [ $((i += 1)) -le 600 ]; do
    n=$(cat "$@" | grep -c 'replica: transfer leadership' || true)
    if [ "$n" = "$last" ]; then same=$((same + 1)); else same=0; last=$n; fi
    sleep 0.1
  done
}

# stop_all: SIGTERM to every node, then SIGKILL to any still running 30 s
# later (a cluster node whose peers stopped first may take long to stop).
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -9 "$p" 2>/dev/null; then echo "node $p did not stop within 30 s of SIGTERM: killed" >&2; fi
    wait "$p" 2>/dev/null || true
  done
  pids=()
}

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
