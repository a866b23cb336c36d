#!/usr/bin/env bash
# Measures direct messages across gateway nodes, and what each one costs Redis. Starts its own
# redis-server on a free loopback port and N gateway nodes (1 shard each) on it, waits until every node
# answers /readyz, resets Redis's command statistics, runs `loadtest crossnode` (every receiver on another
# node than its sender, so every message is relayed through Redis), then divides Redis's command calls
# (INFO commandstats) by the messages delivered. Everything it started is stopped on exit.
#
# Usage: loadtest/cross-node.sh [--connections N] [--duration S] [--rate R] [--nodes N] [--debug]
#                               [-- more loadtest arguments]
#   --connections  loadtest connections, half senders, half receivers  [200]
#   --duration     seconds of the measuring phase                      [10]
#   --rate         messages per second per sender, 0 = flat out        [0]
#   --nodes        gateway nodes                                       [2]
#   --debug        debug build instead of release
# Exits with loadtest's status (1 when a message was lost, duplicated or reordered, or any error).
# The counts include the run's set-up and close (presence writes on identify and disconnect, each
# node's periodic presence refresh and heartbeat), not only the messages; the script's own CONFIG and
# INFO calls are left out.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

CONNECTIONS=200
DURATION=10
RATE=0
NODES=2
PROFILE=release
EXTRA=()
while (($#)); do
    case $1 in
        --connections) CONNECTIONS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --nodes) NODES=$2; shift 2 ;;
        --debug) PROFILE=debug; shift ;;
        --) shift; EXTRA=("$@"); break ;;
        *) sed -n '8,14s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
    esac
done

say() { printf '==> %s\n' "$*"; }

# shellcheck source=loadtest/cluster.sh
source loadtest/cluster.sh
cluster_setup cross-node.sh "$PROFILE"

# Redis's user + system CPU seconds so far.
redis_cpu() {
    redis-cli -p "$REDIS_PORT" info cpu |
        awk -F: '/^used_cpu_(user|sys):/ { s += $2 } END { printf "%.3f", s }'
}

start_redis
say "redis-server on 127.0.0.1:$REDIS_PORT"
for n in $(seq 1 "$NODES"); do start_node "$n" --shards 1; done
URL_ARGS=()
for u in "${NODE_URLS[@]}"; do URL_ARGS+=(--url "$u"); done

redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
CPU_BEFORE=$(redis_cpu)
say "loadtest crossnode: $CONNECTIONS connections, $DURATION s, rate $RATE per sender, $NODES nodes"
rc=0
"$BIN/loadtest" crossnode "${URL_ARGS[@]}" --connections "$CONNECTIONS" --duration "$DURATION" \
    --rate "$RATE" --quiet "${EXTRA[@]}" | tee "$WORK/loadtest.out" || rc=$?
CPU_AFTER=$(redis_cpu)
redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' >"$WORK/commandstats"

DELIVERED=$(sed -n 's/^RESULT .*"messages_received":\([0-9]*\).*/\1/p' "$WORK/loadtest.out")
if [[ -z $DELIVERED || $DELIVERED == 0 ]]; then
    echo "cross-node.sh: no message delivered (loadtest exit status $rc); nothing to divide by" >&2
    exit $((rc ? rc : 1))
fi
say "Redis commands per delivered message ($DELIVERED delivered; CONFIG and INFO left out)"
awk -F'[:,=]' -v n="$DELIVERED" '
    /^cmdstat_/ {
        cmd = substr($1, 9)
        if (cmd ~ /^(config|info)(\||$)/) next
        calls[cmd] = $3; total += $3
    }
    END {
        printf "  %-12s %12d calls  %8.3f per message\n", "all", total, total / n
        fflush()
        for (c in calls) printf "  %-12s %12d calls  %8.3f per message\n", c, calls[c], calls[c] / n | "sort -k2 -nr"
    }' "$WORK/commandstats"
awk -v a="$CPU_BEFORE" -v b="$CPU_AFTER" -v n="$DELIVERED" \
    'BEGIN { printf "  redis CPU    %9.2f s      %8.2f µs per message\n", b - a, (b - a) * 1e6 / n }'
exit "$rc"
