#!/usr/bin/env bash
# ChatPacket side by side with Centrifugo v6.9.1 on the same fan-out load,
# on this machine, in one run (issue 8):
#   bench/compare/run.sh [--visitors N] [--agents M] [--rate R] [--duration D] [--out FILE]
# 1. builds ChatPacket and the driver (this directory's module), and
#    installs Centrifugo with `go install` into a temporary directory;
# 2. starts one ChatPacket node (fresh data dir, --widget-message-limits=false)
#    and loads it with `chatpacket bench`; stops it;
# 3. starts Centrifugo (config from `compare config`, checked with
#    `centrifugo checkconfig --strict`) and loads it with `compare centrifugo`,
#    the same shape over Centrifugo's protocol; stops it;
# 4. prints both side by side, the ratio ChatPacket / Centrifugo of
#    delivered msgs/s, and writes the JSON of both to --out (default
#    ./compare-TIME.json).
# Defaults: 200 visitors, 4 agents, 2000 msg/s, 10s. Everything listens on
# 127.0.0.1. HISTORY_SIZE=0 turns Centrifugo's in-memory history off
# (default 1000 per channel). The temporary directory (binaries, data, logs)
# is removed at the end; KEEP=1 keeps it. Fails if either side fails, and
# if Centrifugo refuses its config, a connection, a subscription or a publish.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

visitors=200 agents=4 rate=2000 duration=10s
out="$PWD/compare-$(date -u +%Y%m%dT%H%M%SZ).json"
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
  --visitors | --agents | --rate | --duration | --out)
    [ $# -ge 2 ] || { echo "run.sh: $1 needs a value" >&2; exit 2; }
    declare "${1#--}=$2"
    shift 2
    ;;
  -h | --help) usage; exit 0 ;;
  *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
history_size=${HISTORY_SIZE:-1000}
history="$history_size publications per channel, in memory"
[ "$history_size" != 0 ] || history="off"
shape=(--visitors "$visitors" --agents "$agents" --rate "$rate" --duration "$duration")

work=$(mktemp -d -t chatpacket-compare.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
say() { echo "== $*" >&2; }

# stop PID: asks the process to stop, waits up to 30 s, then kills it.
stop() {
  kill "$1" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  pids=()
}

# cpu PID: the CPU time (user + system) the process used so far, in seconds.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f\n", ($14 + $15) / hz}' "/proc/$1/stat"; }
# children_cpu FILE: the children's line of bash's `times` (2nd line), in seconds.
children_cpu() { sed -n 2p "$1" | awk '{for (i = 1; i <= 2; i++) {split($i, a, "m"); sub("s", "", a[2]); t += a[1] * 60 + a[2]} printf "%.2f\n", t}'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fs", b - a}'; }

# waitfor WHAT CMD...: runs CMD every 0.1 s until it succeeds, 60 s at most.
waitfor() {
  local what=$1
  shift
  for _ in $(seq 600); do "$@" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "run.sh: $what not within 60 s" >&2
  exit 1
}
healthy() { [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ]; }

say "building ChatPacket and the driver"
(cd "$root" && go build -o "$work/chatpacket" ./cmd/chatpacket)
(cd "$here" && go build -o "$work/compare" .)

say "installing Centrifugo v6.9.1 into $work/bin (about 6 min on 2 cores with a cold build cache)"
t0=$(date +%s.%N)
(cd "$work" && GOBIN="$work/bin" go install github.com/centrifugal/centrifugo/v6@v6.9.1) &
install=$!
while kill -0 "$install" 2>/dev/null; do
  sleep 10
  kill -0 "$install" 2>/dev/null && echo "   ... $(secs "$t0" "$(date +%s.%N)")" >&2
done
wait "$install"
install_time=$(secs "$t0" "$(date +%s.%N)")
centrifugo=$work/bin/centrifugo
# go install sets no version into the binary (`centrifugo version` says
# v0.0.0): its build info names the module version.
cf_version=$(go version -m "$centrifugo" | awk '$1 == "mod" {print $2 "@" $3}')
[ "$cf_version" = github.com/centrifugal/centrifugo/v6@v6.9.1 ] ||
  { echo "run.sh: installed $cf_version, not centrifugo v6.9.1" >&2; exit 1; }
say "installed $cf_version in $install_time"

commit="$(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD || echo ' (dirty tree)')"
machine="$(nproc) cores,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), $(free -g | awk '/^Mem/ {print $2}') GiB, $(uname -sr), $(go version | cut -d' ' -f3)"

# --- ChatPacket ---
say "ChatPacket: one node, then chatpacket bench ${shape[*]}"
CHATPACKET_MASTER_KEY=$("$work/chatpacket" admin key generate)
export CHATPACKET_MASTER_KEY
"$work/chatpacket" serve --data-dir "$work/chatpacket-data" --http 127.0.0.1:0 --gossip 127.0.0.1:0 \
  --remote 127.0.0.1:0 --raft 127.0.0.1:0 --gossip-preset local --widget-message-limits=false \
  >"$work/chatpacket.log" 2>&1 &
cp_pid=$!
pids=("$cp_pid")
servingline() { grep -m1 -oE 'msg=serving http=\S+' "$work/chatpacket.log"; }
waitfor "ChatPacket's serving line in $work/chatpacket.log" servingline
cp_http=$(servingline | sed 's/.*http=//')
waitfor "ChatPacket ready at $cp_http" healthy "http://$cp_http/readyz"
cp_load=$(cut -d' ' -f1-3 /proc/loadavg)
cp_cpu0=$(cpu "$cp_pid")
# In a subshell, whose `times` gives the driver's CPU; its own exit status
# is kept, as set -e does not apply there when the subshell is tested.
(
  rc=0
  "$work/chatpacket" bench --target "http://$cp_http" "${shape[@]}" >"$work/chatpacket.txt" || rc=$?
  times >"$work/chatpacket.times"
  exit $rc
)
cp_cpu1=$(cpu "$cp_pid")
cat "$work/chatpacket.txt"
stop "$cp_pid"

# --- Centrifugo ---
say "Centrifugo: config (history: $history), then compare centrifugo ${shape[*]}"
port=$("$work/compare" config --out "$work/centrifugo.json" --visitors "$visitors" --history-size "$history_size")
"$centrifugo" checkconfig --strict -c "$work/centrifugo.json" ||
  { echo "run.sh: centrifugo refused its config $work/centrifugo.json" >&2; exit 1; }
"$centrifugo" -c "$work/centrifugo.json" >"$work/centrifugo.log" 2>&1 &
cf_pid=$!
pids=("$cf_pid")
waitfor "Centrifugo healthy on 127.0.0.1:$port (log: $work/centrifugo.log)" healthy "http://127.0.0.1:$port/health"
cf_load=$(cut -d' ' -f1-3 /proc/loadavg)
cf_cpu0=$(cpu "$cf_pid")
(
  rc=0
  "$work/compare" centrifugo --config "$work/centrifugo.json" "${shape[@]}" --json "$work/centrifugo-result.json" >"$work/centrifugo.txt" || rc=$?
  times >"$work/centrifugo.times"
  exit $rc
) || {
  cat "$work/centrifugo.txt"
  echo "run.sh: the Centrifugo run failed; its log:" >&2
  tail -20 "$work/centrifugo.log" >&2
  exit 1
}
cf_cpu1=$(cpu "$cf_pid")
cat "$work/centrifugo.txt"
kill -0 "$cf_pid" 2>/dev/null || { echo "run.sh: Centrifugo exited during the run; its log:" >&2; tail -20 "$work/centrifugo.log" >&2; exit 1; }
stop "$cf_pid"

echo
"$work/compare" report --chatpacket "$work/chatpacket.txt" --centrifugo "$work/centrifugo-result.json" "${shape[@]}" \
  --chatpacket-server-cpu "$(secs "$cp_cpu0" "$cp_cpu1")" --chatpacket-driver-cpu "$(children_cpu "$work/chatpacket.times")s" \
  --centrifugo-server-cpu "$(secs "$cf_cpu0" "$cf_cpu1")" --centrifugo-driver-cpu "$(children_cpu "$work/centrifugo.times")s" \
  --meta "commit=$commit" --meta "machine=$machine" --meta "centrifugo=$cf_version" \
  --meta "centrifugo_install=$install_time" --meta "centrifugo_history=$history" \
  --meta "load_average_before_chatpacket=$cp_load" --meta "load_average_before_centrifugo=$cf_load" \
  --out "$out"
echo "# $commit; $machine; load average before: ChatPacket $cp_load, Centrifugo $cf_load; Centrifugo installed in $install_time"
echo "JSON of both: $out" >&2
