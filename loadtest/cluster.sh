# shellcheck shell=bash
# A throwaway cluster on loopback for cross-node loadtest runs: one redis-server and gateway nodes on it.
# Sourced (not run) by loadtest/cross-node.sh and scripts/loadtest-smoke, so both start it the same way
# and their own EXIT trap stops it. The caller sets:
#   WORK     a scratch directory (logs go there)
#   PIDS     an array its trap kills: every process started here is appended to it
#   GATEWAY  the gateway binary
#
# loadtest/cross-node.sh and loadtest/identify-latency.sh set those with `cluster_setup` instead.
#
#   cluster_setup NAME PROFILE
#                         checks for redis-server and redis-cli, builds gateway and loadtest (PROFILE
#                         release or debug), sets BIN, GATEWAY (unless already set), WORK and PIDS, and
#                         traps EXIT to stop every process in PIDS (last started first) and remove WORK
#   start_redis           starts redis-server on a free port; sets REDIS_PORT
#   start_redis_cluster N starts a Redis Cluster of N masters (no replicas) on free ports; sets
#                         REDIS_URL (redis+cluster://, which start_node then uses), CLUSTER_PORTS and
#                         CLUSTER_PIDS
#   start_node NAME ...   starts a node on that Redis (extra arguments go to `gateway serve`), per-connection
#                         rate limit off; appends ws://ADDR/ws to NODE_URLS and its pid to NODE_PIDS once
#                         its /readyz answers 200
#                         (with GATEWAY_CLUSTER_REQUIRE_REDIS_FOR_READY=true: only once Redis is reachable)

NODE_URLS=()
NODE_PIDS=()
CLUSTER_PORTS=()
CLUSTER_PIDS=()

cluster_setup() {
    local name=$1 profile=$2 cmd
    for cmd in redis-server redis-cli; do
        if ! command -v "$cmd" >/dev/null 2>&1; then
            echo "$name: $cmd not found (Debian: apt-get install redis-server)" >&2
            exit 2
        fi
    done
    printf '==> building gateway and loadtest (%s)\n' "$profile"
    if [[ $profile == release ]]; then
        cargo build -q --release -p gateway -p loadtest
    else
        cargo build -q -p gateway -p loadtest
    fi
    BIN=${CARGO_TARGET_DIR:-target}/$profile
    GATEWAY=${GATEWAY:-$BIN/gateway}
    WORK=$(mktemp -d)
    PIDS=()
    trap cluster_cleanup EXIT
}

# Stops the nodes before Redis (last started, first stopped): a node removes its presence on the way out.
# shellcheck disable=SC2317 # run by the EXIT trap
cluster_cleanup() {
    local i pid
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[i]}
        kill "$pid" 2>/dev/null || continue
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}

# Starts redis-server on a free port with extra arguments "$@" (a port another process holds is
# skipped: the answer to INFO must come from our own server, its pid); sets SPAWNED_PORT and
# SPAWNED_PID, or exits.
spawn_redis() {
    local port pid
    for _ in $(seq 1 20); do
        port=$((20000 + RANDOM % 30000))
        if (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi
        mkdir -p "$WORK/redis-$port"
        redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
            --dir "$WORK/redis-$port" "$@" >"$WORK/redis-$port.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        for _ in $(seq 1 50); do
            if redis-cli -p "$port" info server 2>/dev/null | grep -q "^process_id:$pid"; then
                SPAWNED_PORT=$port
                SPAWNED_PID=$pid
                return 0
            fi
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    done
    echo "redis-server did not start (logs: $WORK/redis-*.log)" >&2
    exit 1
}

start_redis() {
    spawn_redis
    REDIS_PORT=$SPAWNED_PORT
}

# The servers are joined by `redis-cli --cluster create`.
start_redis_cluster() {
    local masters=$1 i hosts=()
    for ((i = 0; i < masters; i++)); do
        spawn_redis --cluster-enabled yes --cluster-config-file nodes.conf
        CLUSTER_PORTS+=("$SPAWNED_PORT")
        CLUSTER_PIDS+=("$SPAWNED_PID")
        hosts+=("127.0.0.1:$SPAWNED_PORT")
    done
    redis-cli --cluster create "${hosts[@]}" --cluster-replicas 0 --cluster-yes >"$WORK/cluster-create.log" 2>&1 || {
        cat "$WORK/cluster-create.log" >&2
        exit 1
    }
    for _ in $(seq 1 100); do
        if redis-cli -p "${CLUSTER_PORTS[0]}" cluster info | grep -q '^cluster_state:ok'; then
            REDIS_URL="redis+cluster://$(IFS=,; echo "${hosts[*]}")"
            return 0
        fi
        sleep 0.1
    done
    echo "the Redis Cluster did not reach cluster_state:ok" >&2
    exit 1
}

# True when GET http://$1$2 answers 200 (bash's /dev/tcp: no curl needed).
http_ok() {
    local status
    exec 3<>"/dev/tcp/${1%:*}/${1##*:}" || return 1
    printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$2" "$1" >&3
    read -r -t 2 status <&3 || status=
    exec 3<&-
    [[ $status == *" 200 "* ]]
}

start_node() {
    local name=$1 out="$WORK/node-$1.out" ws admin
    shift
    GATEWAY_LIMITS_RATE_LIMIT_PER_SEC=0 GATEWAY_CLUSTER_REQUIRE_REDIS_FOR_READY=true \
        "$GATEWAY" serve --listen 127.0.0.1:0 --admin 127.0.0.1:0 \
        --redis-url "${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT}" "$@" >"$out" 2>"$out.err" &
    PIDS+=($!)
    local pid=$!
    for _ in $(seq 1 100); do
        if grep -q '^gateway listening' "$out"; then
            ws=$(sed -n 's/^gateway listening.* ws=\([^ ]*\) .*/\1/p' "$out")
            admin=$(sed -n 's/^gateway listening.* admin=\([^ ]*\) .*/\1/p' "$out")
            for _ in $(seq 1 100); do
                if http_ok "$admin" /readyz 2>/dev/null; then
                    NODE_URLS+=("ws://$ws/ws")
                    NODE_PIDS+=("$pid")
                    printf '==> node %s: ws=%s admin=%s ready\n' "$name" "$ws" "$admin"
                    return 0
                fi
                sleep 0.1
            done
            echo "node $name (admin $admin) never became ready" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "node $name did not start:" >&2
    cat "$out.err" >&2
    exit 1
}
