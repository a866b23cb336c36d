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

# shellcheck source=loadtest/cluster.sh
source loadtest/cluster.sh
cluster_setup identify-latency.sh "$PROFILE"

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
