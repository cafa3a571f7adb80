# Shared by bench/bench.sh and bench/cluster.sh (sourced, not run): start
# nodes on 127.0.0.1, read their logs, wait for them, stop them. The caller
# sets work (a temporary directory), bin (the chatpacket binary) and
# pids=() before it sources this file.

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
