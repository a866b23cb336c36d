#!/usr/bin/env bash
# Pusher peer comparison: the gateway's Pusher side (and its protocol v1, for reference) against Sockudo,
# a Rust Pusher-compatible server, driven by the same load generator on the same machine. Started by
# `PEER_SUITE=pusher benches/peers/run.sh` (or run directly). See benches/peers/README.md.
#
#   PEER_SUITE=pusher benches/peers/run.sh
#   PEER_SUITE=pusher PEER_DURATION=5 PEER_WORKLOADS="idle fanout" benches/peers/run.sh
#
# Environment (besides those of run.sh: PEER_DURATION, PEER_IDLE_DURATION, PEER_IDLE_CONNS, PEER_THREADS,
# PEER_SKIP_BUILD, PEER_GATEWAY, PEER_LOADTEST):
#   PEER_WORKLOADS       idle fanout cluster (default: all three)
#   PEER_SERVERS         gateway-pusher gateway-v1 sockudo (default: all; gateway-v1 runs no cluster row)
#   PEER_IDLE_CHANNELS   channels the idle connections are spread over (default 100)
#   PEER_FANOUT_SUBS     subscribers of the fan-out channel (default 2000)
#   PEER_FANOUT_RATE     publishes per second (default 50)
#   PEER_GATEWAY_COMMIT  the commit PEER_GATEWAY was built from, for the table (default: this checkout's)
#   PEER_SOCKUDO         the sockudo binary (default benches/peers/target/sockudo/bin/sockudo, installed
#                        from crates.io when missing: PEER_SOCKUDO_VERSION, default ^5.2)
#
# Output: the table on stdout and in target/peers-pusher/results.md; JSON reports, logs, exit statuses
# and CPU times in target/peers-pusher/. Everything runs on 127.0.0.1; every process started here is
# stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
OUT="$ROOT/target/peers-pusher"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
DURATION=${PEER_DURATION:-10}
IDLE_DURATION=${PEER_IDLE_DURATION:-5}
IDLE_CONNS=${PEER_IDLE_CONNS:-9000}
IDLE_CHANNELS=${PEER_IDLE_CHANNELS:-100}
FANOUT_SUBS=${PEER_FANOUT_SUBS:-2000}
FANOUT_RATE=${PEER_FANOUT_RATE:-50}
THREADS=${PEER_THREADS:-2}
GATEWAY=${PEER_GATEWAY:-$TARGET_DIR/release/gateway}
LOADTEST=${PEER_LOADTEST:-$TARGET_DIR/release/loadtest}
SOCKUDO_VERSION=${PEER_SOCKUDO_VERSION:-^5.2}
SOCKUDO_ROOT="$HERE/target/sockudo"
SOCKUDO=${PEER_SOCKUDO:-$SOCKUDO_ROOT/bin/sockudo}
read -r -a WORKLOADS <<<"$(tr ',' ' ' <<<"${PEER_WORKLOADS:-idle fanout cluster}")"
read -r -a SERVERS <<<"$(tr ',' ' ' <<<"${PEER_SERVERS:-gateway-pusher gateway-v1 sockudo}")"
# The one app every server serves.
APP_ID=app-1 APP_KEY=key-1 APP_SECRET=secret-1

log() { printf '[peers-pusher] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
has() { local x=$1; shift; [[ " $* " == *" $x "* ]]; }

for w in "${WORKLOADS[@]}"; do has "$w" idle fanout cluster || die "unknown workload '$w'"; done
for s in "${SERVERS[@]}"; do has "$s" gateway-pusher gateway-v1 sockudo || die "unknown server '$s'"; done
for v in DURATION IDLE_DURATION IDLE_CONNS IDLE_CHANNELS FANOUT_SUBS FANOUT_RATE THREADS; do
  [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || die "$v must be a positive integer"
done

# ---- cleanup: every process started here is stopped on exit (last started, first stopped) ---------
STARTED=()
cleanup() {
  local i pid
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
    pid=${STARTED[i]}
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---- build ---------------------------------------------------------------------------------------
needs_sockudo=0
has sockudo "${SERVERS[@]}" && needs_sockudo=1
if [[ "${PEER_SKIP_BUILD:-0}" != 1 ]]; then
  log "building gateway and loadtest (release, target dir $TARGET_DIR)"
  (cd "$ROOT" && cargo build --release -p gateway -p loadtest)
  if [[ $needs_sockudo == 1 && ! -x $SOCKUDO ]]; then
    command -v protoc >/dev/null ||
      die "sockudo needs protoc to build: apt-get install protobuf-compiler (or PEER_SERVERS without sockudo)"
    log "installing sockudo $SOCKUDO_VERSION from crates.io into $SOCKUDO_ROOT (slow: about 35 minutes on 2 cores)"
    CARGO_TARGET_DIR="${PEER_SOCKUDO_TARGET_DIR:-$HERE/target/sockudo-build}" \
      cargo install sockudo --version "$SOCKUDO_VERSION" --no-default-features \
      --features local,v2,redis --root "$SOCKUDO_ROOT"
  fi
fi
[[ -x $GATEWAY ]] || die "$GATEWAY is missing"
"$LOADTEST" fanout --help 2>/dev/null | grep -q -- '--protocol' ||
  die "$LOADTEST does not speak --protocol pusher: rebuild it"
if [[ $needs_sockudo == 1 && ! -x $SOCKUDO ]]; then
  die "$SOCKUDO is missing (unset PEER_SKIP_BUILD to install it, or PEER_SERVERS without sockudo)"
fi
if has cluster "${WORKLOADS[@]}"; then
  for cmd in redis-server redis-cli; do
    command -v "$cmd" >/dev/null || die "$cmd not found (Debian: apt-get install redis-server)"
  done
fi

mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.log "$OUT"/*.rc "$OUT"/*.cpu "$OUT"/loadavg "$OUT"/versions "$OUT"/results.md
cut -d' ' -f1-3 /proc/loadavg >"$OUT/loadavg"
if awk '{exit !($1 > 0.5)}' /proc/loadavg; then
  log "warning: load average $(cut -d' ' -f1-3 /proc/loadavg) before the first run: numbers will be noisy"
fi
{
  if [[ -n ${PEER_GATEWAY_COMMIT:-} ]]; then
    echo "gateway $PEER_GATEWAY_COMMIT"
  else
    echo "gateway $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- src shards 2>/dev/null || echo ' (working tree differs from HEAD)')"
  fi
  [[ $needs_sockudo == 1 ]] && echo "sockudo $(ls "$SOCKUDO_ROOT"/.crates.toml >/dev/null 2>&1 && grep -o 'sockudo [0-9.]*' "$SOCKUDO_ROOT/.crates.toml" | head -1 | cut -d' ' -f2 || echo '?')"
  echo "redis $(redis-server --version 2>/dev/null | grep -o 'v=[0-9.]*' | cut -d= -f2 || echo -)"
  echo "rustc $(rustc --version 2>/dev/null | cut -d' ' -f2 || echo -)"
} >"$OUT/versions"

# ---- processes -------------------------------------------------------------------------------------
# free_port: a port nothing on 127.0.0.1 listens on.
free_port() {
  local port
  for _ in $(seq 50); do
    port=$((20000 + RANDOM % 30000))
    (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return 0; }
  done
  die "no free port found"
}

# http_ok ADDR PATH: GET answers 200.
http_ok() {
  [[ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$1$2" || true)" == 200 ]]
}

REDIS_PORT=""
start_redis() {
  REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    >"$OUT/redis.log" 2>&1 &
  REDIS_PID=$!
  STARTED+=("$REDIS_PID")
  for _ in $(seq 50); do
    redis-cli -p "$REDIS_PORT" info server 2>/dev/null | grep -q "^process_id:$REDIS_PID" && return 0
    sleep 0.1
  done
  die "redis-server did not start (see $OUT/redis.log)"
}

# start_gateway NAME [REDIS_URL]: sets PID and PORT once /readyz is 200.
start_gateway() {
  local name=$1 redis=${2:-} out="$OUT/$1.server.log" shards=$THREADS line admin
  local env=(GATEWAY_PUSHER_APPS="$APP_ID:$APP_KEY:$APP_SECRET" GATEWAY_LIMITS_RATE_LIMIT_PER_SEC=0)
  if [[ -n $redis ]]; then
    env+=(GATEWAY_REDIS_URL="$redis" GATEWAY_CLUSTER_REQUIRE_REDIS_FOR_READY=true)
    shards=1
  fi
  env "${env[@]}" "$GATEWAY" serve --listen 127.0.0.1:0 --admin 127.0.0.1:0 --shards "$shards" \
    >"$out" 2>"$OUT/$name.server.err.log" &
  PID=$!
  STARTED+=("$PID")
  for _ in $(seq 300); do
    kill -0 "$PID" 2>/dev/null || { cat "$OUT/$name.server.err.log" >&2; die "$name exited during start-up"; }
    line=$(grep -m1 '^gateway listening' "$out" || true)
    [[ -n $line ]] && break
    sleep 0.1
  done
  [[ -n $line ]] || die "$name printed no 'listening' line within 30 s"
  PORT=$(sed -n 's/.* ws=[^ ]*:\([0-9]*\) .*/\1/p' <<<"$line")
  admin=$(sed -n 's/.* admin=\([^ ]*\) .*/\1/p' <<<"$line")
  for i in $(seq 300); do
    http_ok "$admin" /readyz && break
    [[ $i == 300 ]] && die "$name: /readyz not 200 within 30 s"
    sleep 0.1
  done
  log "$name: pid $PID, port $PORT"
}

# start_sockudo NAME [REDIS_URL]: the same app; local adapter, or the redis adapter on REDIS_URL (one
# worker thread per node then, as the gateway nodes get one shard). Sets PID and PORT once /up/<app>
# is 200. Its own limits are lifted as the gateway's are (the per-IP connect and API rate limits, the
# app's 100 connections and 100 backend events per second of the env-defined app).
start_sockudo() {
  local name=$1 redis=${2:-} threads=$THREADS
  PORT=$(free_port)
  local env=(HOST=127.0.0.1 PORT="$PORT" METRICS_HOST=127.0.0.1 METRICS_PORT="$(free_port)"
    SOCKUDO_DEFAULT_APP_ID=$APP_ID SOCKUDO_DEFAULT_APP_KEY=$APP_KEY SOCKUDO_DEFAULT_APP_SECRET=$APP_SECRET
    SOCKUDO_DEFAULT_APP_ENABLED=true SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS=1000000
    SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND=1000000 RATE_LIMITER_ENABLED=false
    CACHE_DRIVER=memory QUEUE_DRIVER=memory IDEMPOTENCY_ENABLED=false RUST_LOG=warn)
  if [[ -n $redis ]]; then
    env+=(ADAPTER_DRIVER=redis REDIS_URL="$redis")
    threads=1
  else
    env+=(ADAPTER_DRIVER=local)
  fi
  # Run from an empty directory: sockudo reads config/config.toml from its working directory.
  mkdir -p "$OUT/sockudo-cwd"
  (cd "$OUT/sockudo-cwd" && exec env "${env[@]}" TOKIO_WORKER_THREADS="$threads" "$SOCKUDO") \
    >"$OUT/$name.server.log" 2>&1 &
  PID=$!
  STARTED+=("$PID")
  for i in $(seq 300); do
    kill -0 "$PID" 2>/dev/null || { tail -20 "$OUT/$name.server.log" >&2; die "$name exited during start-up"; }
    http_ok "127.0.0.1:$PORT" "/up/$APP_ID" && break
    [[ $i == 300 ]] && die "$name: /up/$APP_ID not 200 within 30 s"
    sleep 0.1
  done
  log "$name: pid $PID, port $PORT"
}

stop_pid() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# cpu_ticks PID...: user + system CPU time of the processes (all threads), in clock ticks.
cpu_ticks() {
  local pid stat rest f sum=0
  for pid in "$@"; do
    stat=$(<"/proc/$pid/stat")
    rest=${stat##*) }
    read -r -a f <<<"$rest"
    sum=$((sum + f[11] + f[12]))
  done
  echo "$sum"
}

# run_load NAME CPU_PIDS ARGS...: one loadtest run; JSON to $OUT/NAME.json, exit status to .rc and the
# CPU time of CPU_PIDS (space separated) over the whole run to .cpu: `<ticks> <ticks/s> <wall ms>`.
run_load() {
  local name=$1 pids=$2 rc=0; shift 2
  local json="$OUT/$name.json" logf="$OUT/$name.log" ticks0 t0
  read -r -a pid_list <<<"$pids"
  log "$name: loadtest $*"
  ticks0=$(cpu_ticks "${pid_list[@]}")
  t0=$(date +%s%N)
  timeout --signal=TERM --kill-after=10 $((DURATION + IDLE_DURATION + 200)) \
    "$LOADTEST" "$@" --json "$json" --quiet >"$logf" 2>&1 &
  local load_pid=$!
  STARTED+=("$load_pid")
  wait "$load_pid" || rc=$?
  echo "$rc" >"$OUT/$name.rc"
  echo "$(($(cpu_ticks "${pid_list[@]}") - ticks0)) $(getconf CLK_TCK) $((($(date +%s%N) - t0) / 1000000))" \
    >"$OUT/$name.cpu"
  if [[ $rc != 0 ]]; then
    log "$name: loadtest exited $rc (see $logf)"
    tail -n 8 "$logf" >&2 || true
  fi
  [[ -s $json ]] || { sed -n 's/^RESULT //p' "$logf" | tail -n 1 >"$json"; [[ -s $json ]] || rm -f "$json"; }
}

# start NAME SERVER [REDIS_URL]: starts SERVER (gateway-* or sockudo) as NAME.
start() {
  case $2 in
    gateway-*) start_gateway "$1" "${3:-}" ;;
    sockudo) start_sockudo "$1" "${3:-}" ;;
  esac
}

protocol_of() { [[ $1 == gateway-v1 ]] && echo v1 || echo pusher; }
# The URL loadtest connects to: v1 on /ws, Pusher on /app/<key> (loadtest adds it to a bare URL).
url_of() { [[ $1 == gateway-v1 ]] && echo "ws://127.0.0.1:$2/ws" || echo "ws://127.0.0.1:$2/"; }

# ---- (a) idle: memory per subscribed connection, a fresh process each ------------------------------
if has idle "${WORKLOADS[@]}"; then
  for s in "${SERVERS[@]}"; do
    start "$s-idle" "$s"
    run_load "$s-idle" "$PID" idle --protocol "$(protocol_of "$s")" --url "$(url_of "$s" "$PORT")" \
      --connections "$IDLE_CONNS" --channels "$IDLE_CHANNELS" --channel idle --pid "$PID" \
      --duration "$IDLE_DURATION"
    stop_pid "$PID"
  done
fi

# ---- (b) fan-out on one node: deliveries per server CPU-second ---------------------------------------
if has fanout "${WORKLOADS[@]}"; then
  for s in "${SERVERS[@]}"; do
    start "$s-fanout" "$s"
    run_load "$s-fanout" "$PID" fanout --protocol "$(protocol_of "$s")" --url "$(url_of "$s" "$PORT")" \
      --connections "$FANOUT_SUBS" --rate "$FANOUT_RATE" --channel fanout --pid "$PID" \
      --duration "$DURATION"
    stop_pid "$PID"
  done
fi

# ---- (c) two nodes on one Redis: subscribers on B, publishes to A ------------------------------------
redis_cpu_s() {
  redis-cli -p "$REDIS_PORT" info cpu | tr -d '\r' |
    awk -F: '/^used_cpu_(user|sys):/ { s += $2 } END { printf "%.3f", s }'
}
if has cluster "${WORKLOADS[@]}"; then
  start_redis
  log "redis-server: pid $REDIS_PID, port $REDIS_PORT"
  for s in "${SERVERS[@]}"; do
    [[ $s == gateway-v1 ]] && continue
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
    start "$s-cluster-a" "$s" "redis://127.0.0.1:$REDIS_PORT"
    PID_A=$PID PORT_A=$PORT
    start "$s-cluster-b" "$s" "redis://127.0.0.1:$REDIS_PORT"
    PID_B=$PID PORT_B=$PORT
    r0=$(redis_cpu_s)
    run_load "$s-cluster" "$PID_A $PID_B" fanout --protocol pusher --url "ws://127.0.0.1:$PORT_B/" \
      --api-url "http://127.0.0.1:$PORT_A" --connections "$FANOUT_SUBS" --rate "$FANOUT_RATE" \
      --channel fanout --pid "$PID_B" --cpu-pid "$PID_A" --duration "$DURATION"
    awk -v a="$r0" -v b="$(redis_cpu_s)" 'BEGIN { printf "%.3f\n", b - a }' >"$OUT/$s-cluster.redis-cpu"
    stop_pid "$PID_B"
    stop_pid "$PID_A"
  done
fi

# ---- table -------------------------------------------------------------------------------------------
node "$HERE/pusher-table.mjs" "$OUT" "$IDLE_CONNS" "$IDLE_CHANNELS" "$FANOUT_SUBS" "$FANOUT_RATE" \
  "$DURATION" "$IDLE_DURATION" "$THREADS" | tee "$OUT/results.md"
log "results: $OUT/results.md (raw JSON and logs in $OUT/)"
