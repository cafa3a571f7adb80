#!/usr/bin/env bash
# A/B of two chatpacket binaries under the same load: a fresh node per
# run, the two alternating for ROUNDS rounds (a slow phase of this noisy
# machine then hits both), `chatpacket bench SCENARIO` against each;
# prints every run's summary and each side's medians (`bench median`).
#   bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS] [SCENARIO FLAGS...]
# SCENARIO (environment) is throughput (the default) or fanout. OLD_ENV
# and NEW_ENV add environment to each side's node, e.g.
#   NEW_ENV=GOGC=400 bench/ab.sh ./cp ./cp 3
#   SCENARIO=fanout bench/ab.sh ./old ./new 3 --visitors 500 --agents 4 --rate 5000 --duration 20s
# Default flags: --visitors 1000 --window 1 --duration 15s. Every node
# listens on 127.0.0.1 (HTTP on a free port), its data in a temp dir.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
old=$(realpath "$1") new=$(realpath "$2")
shift 2
rounds=3
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then rounds=$1; shift; fi
flags=("$@")
[ ${#flags[@]} -gt 0 ] || flags=(--visitors 1000 --window 1 --duration 15s)
scenario=${SCENARIO:-throughput}
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
export CHATPACKET_MASTER_KEY=$("$old" admin key generate)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
declare -A dirs=([old]="" [new]="")
for round in $(seq "$rounds"); do
  for side in old new; do
    bin=$old extra=${OLD_ENV:-}
    [ $side = new ] && bin=$new extra=${NEW_ENV:-}
    d=$(mktemp -d)
    env $extra "$bin" serve --data-dir "$d/data" --http 127.0.0.1:$port --gossip 127.0.0.1:0 --remote 127.0.0.1:0 \
      --raft 127.0.0.1:0 --gossip-preset local --widget-message-limits=false >"$d/log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/readyz >/dev/null && break; sleep 0.2; done
    out=$results/$side-$round
    summary=$("$old" bench "$scenario" --target http://127.0.0.1:$port --out "$out" "${flags[@]}" 2>/dev/null) || true
    echo "round $round $side: ${summary:-failed}"
    [ -f "$out/result.json" ] && dirs[$side]+="$out "
    kill "$pid"; wait "$pid" 2>/dev/null || true; rm -rf "$d"
  done
done
for side in old new; do
  echo "== $side ($([ $side = old ] && echo "$old" || echo "$new")): medians of ${rounds} runs"
  # shellcheck disable=SC2086 # one word per run directory
  if [ -n "${dirs[$side]}" ]; then "$old" bench median ${dirs[$side]}; fi
done
