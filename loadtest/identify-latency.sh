#!/usr/bin/env bash
# Measures how long a client waits for `ready` in cluster mode: connect, upgrade, identify, ready, as the
# loadtest's idle scenario records it per connection. Starts its own redis-server on a free loopback port
# and two gateway nodes (1 shard each) on it, then runs `loadtest idle` spread over both nodes at a paced
# connect rate, so the figure is a service time, not a queue. Everything it started is stopped on exit.
#
# Usage: loadtest/identify-latency.sh [--connections N] [--connect-rate R] [--debug]
#   --connections   connections opened, half on each node      [2000]
#   --connect-rate  connections per second, over both nodes    [400]
#   --debug         debug build instead of release
# GATEWAY=/path/to/gateway runs another gateway binary (e.g. an older build, for a before/after).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

CONNECTIONS=2000
CONNECT_RATE=400
PROFILE=release
while (($#)); do
    case $1 in
        --connections) CONNECTIONS=$2; shift 2 ;;
        --connect-rate) CONNECT_RATE=$2; shift 2 ;;
        --debug) PROFILE=debug; shift ;;
        *) sed -n '7,11s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
    esac
done

say() { printf '==> %s\n' "$*"; }

for cmd in redis-server redis-cli; do
    if ! command -v "$cmd" >/dev/null 2>&1; then
        echo "identify-latency.sh: $cmd not found (Debian: apt-get install redis-server)" >&2
        exit 2
    fi
done

say "building gateway and loadtest ($PROFILE)"
if [[ $PROFILE == release ]]; then
    cargo build -q --release -p gateway -p loadtest
else
    cargo build -q -p gateway -p loadtest
fi
BIN=${CARGO_TARGET_DIR:-target}/$PROFILE
GATEWAY=${GATEWAY:-$BIN/gateway}
WORK=$(mktemp -d)
PIDS=()
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    local i pid
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[i]}
        kill "$pid" 2>/dev/null || continue
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
# shellcheck source=loadtest/cluster.sh
source loadtest/cluster.sh

start_redis
say "redis-server on 127.0.0.1:$REDIS_PORT; gateway $GATEWAY"
for n in 1 2; do start_node "$n" --shards 1; done
URL_ARGS=()
for u in "${NODE_URLS[@]}"; do URL_ARGS+=(--url "$u"); done

DURATION=$(((CONNECTIONS / CONNECT_RATE) + 2))
say "loadtest idle: $CONNECTIONS connections at $CONNECT_RATE/s over 2 nodes"
"$BIN/loadtest" idle "${URL_ARGS[@]}" --connections "$CONNECTIONS" --connect-rate "$CONNECT_RATE" \
    --duration "$DURATION" --quiet | tee "$WORK/loadtest.out"
grep -q 'latency ms' "$WORK/loadtest.out" || {
    echo "identify-latency.sh: loadtest printed no latency line" >&2
    exit 1
}
