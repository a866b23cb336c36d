#!/usr/bin/env bash
# Peer comparison: the gateway's raw echo mode against echo servers built on other WebSocket stacks,
# driven by the same load generator on the same machine. See benches/peers/README.md.
#
#   benches/peers/run.sh                      # full run, 10 s per echo workload
#   PEER_DURATION=5 benches/peers/run.sh      # shorter
#   PEER_SERVERS="gateway fastwebsockets" benches/peers/run.sh
#
# Environment:
#   PEER_DURATION       seconds per echo workload (default 10)
#   PEER_IDLE_DURATION  seconds the idle connections are held (default 5)
#   PEER_IDLE_CONNS     idle connections (default 9000)
#   PEER_THREADS        worker threads / shards per server (default 2)
#   PEER_SERVERS        servers to run, space or comma separated (default: all, in table order):
#                       gateway tokio-tungstenite-4k tokio-tungstenite-defaults fastwebsockets node-ws bun
#   PEER_SKIP_BUILD=1   use the binaries already built
#   PEER_GATEWAY, PEER_LOADTEST  other gateway / loadtest binaries (default $CARGO_TARGET_DIR/release/...,
#                       target/release/... without CARGO_TARGET_DIR)
#   PEER_GATEWAY_BASE   a second gateway binary (an earlier build) run as the server `gateway-base`, for a
#                       before/after in one run: PEER_SERVERS="gateway-base gateway fastwebsockets"
#   PEER_SUITE          echo (default: this suite) or pusher (the gateway's Pusher side against Sockudo:
#                       benches/peers/pusher.sh, which lists its own settings)
#
# Output: the table on stdout and in target/peers/results.md; raw JSON and logs in target/peers/.
# Everything runs on 127.0.0.1; every server this script starts is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
case ${PEER_SUITE:-echo} in
  echo) ;;
  pusher) exec "$HERE/pusher.sh" "$@" ;;
  *) printf '[peers] error: PEER_SUITE must be echo or pusher (given %s)\n' "$PEER_SUITE" >&2; exit 1 ;;
esac
OUT="$ROOT/target/peers"
DURATION=${PEER_DURATION:-10}
IDLE_DURATION=${PEER_IDLE_DURATION:-5}
IDLE_CONNS=${PEER_IDLE_CONNS:-9000}
THREADS=${PEER_THREADS:-2}
ALL_SERVERS=(gateway tokio-tungstenite-4k tokio-tungstenite-defaults fastwebsockets node-ws bun)
read -r -a SERVERS <<<"$(tr ',' ' ' <<<"${PEER_SERVERS:-${ALL_SERVERS[*]}}")"

GATEWAY=${PEER_GATEWAY:-${CARGO_TARGET_DIR:-$ROOT/target}/release/gateway}
GATEWAY_BASE=${PEER_GATEWAY_BASE:-}
LOADTEST=${PEER_LOADTEST:-${CARGO_TARGET_DIR:-$ROOT/target}/release/loadtest}
PEER_BIN="$HERE/target/release"
NODE_DIR="$HERE/node"
BUN=""

log() { printf '[peers] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

for s in "${SERVERS[@]}"; do
  [[ " ${ALL_SERVERS[*]} gateway-base " == *" $s "* ]] || die "unknown server '$s' (known: ${ALL_SERVERS[*]} gateway-base)"
done
[[ "$DURATION" =~ ^[0-9]+$ && "$DURATION" -gt 0 ]] || die "PEER_DURATION must be a positive integer"
[[ "$IDLE_DURATION" =~ ^[0-9]+$ && "$IDLE_DURATION" -gt 0 ]] || die "PEER_IDLE_DURATION must be a positive integer"
[[ "$IDLE_CONNS" =~ ^[0-9]+$ && "$IDLE_CONNS" -gt 0 ]] || die "PEER_IDLE_CONNS must be a positive integer"

# ---- cleanup: every server started here is stopped on exit -------------------------------------
STARTED=()
cleanup() {
  local pid
  for pid in "${STARTED[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  for pid in "${STARTED[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Servers and the load generator each hold thousands of sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [[ "$(ulimit -n)" != unlimited && "$(ulimit -n)" -lt $((IDLE_CONNS + 1000)) ]]; then
  log "warning: open-file limit $(ulimit -n) is below $((IDLE_CONNS + 1000)); the idle runs may fail"
fi

# ---- build ---------------------------------------------------------------------------------------
needs_node=0
for s in "${SERVERS[@]}"; do [[ $s == node-ws || $s == bun ]] && needs_node=1; done

if [[ "${PEER_SKIP_BUILD:-0}" != 1 ]]; then
  log "building gateway and loadtest (release)"
  (cd "$ROOT" && cargo build --release -p gateway -p loadtest)
  log "building peer echo servers (release, target dir benches/peers/target)"
  cargo build --release --manifest-path "$HERE/Cargo.toml" --target-dir "$HERE/target"
  if [[ $needs_node == 1 ]]; then
    command -v node >/dev/null || die "node is not installed (needed for node-ws and bun)"
    # Only when needed: a plain `npm install` would also prune the `--no-save` bun package.
    if [[ ! -f "$NODE_DIR/node_modules/ws/package.json" || "$NODE_DIR/package.json" -nt "$NODE_DIR/node_modules" ]]; then
      log "installing node dependencies (ws)"
      (cd "$NODE_DIR" && npm install --no-audit --no-fund --loglevel=error)
    fi
  fi
fi
[[ -x "$LOADTEST" ]] || die "$LOADTEST is missing"
"$LOADTEST" echo --help >/dev/null 2>&1 || die "$LOADTEST echo --help failed: the load generator is not usable"

# Bun: a `bun` on PATH, else the npm package `bun` (it ships the binary) in node/node_modules.
if [[ " ${SERVERS[*]} " == *" bun "* ]]; then
  if command -v bun >/dev/null && bun --version >/dev/null 2>&1; then
    BUN=$(command -v bun)
  else
    if [[ "${PEER_SKIP_BUILD:-0}" != 1 && ! -x "$NODE_DIR/node_modules/.bin/bun" ]]; then
      log "installing bun from the npm registry into benches/peers/node/node_modules"
      (cd "$NODE_DIR" && npm install --no-save --no-audit --no-fund --loglevel=error bun) ||
        log "npm install bun failed"
    fi
    if [[ -x "$NODE_DIR/node_modules/.bin/bun" ]] && "$NODE_DIR/node_modules/.bin/bun" --version >/dev/null 2>&1; then
      BUN="$NODE_DIR/node_modules/.bin/bun"
    fi
  fi
  if [[ -z "$BUN" ]]; then
    log "SKIPPING bun: no working bun binary (not on PATH, and the npm package 'bun' could not be installed or run)"
    kept=()
    for s in "${SERVERS[@]}"; do [[ $s == bun ]] || kept+=("$s"); done
    SERVERS=("${kept[@]}")
  else
    log "bun $("$BUN" --version) at $BUN"
  fi
fi

mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.log "$OUT"/*.rc "$OUT"/*.cpu "$OUT"/loadavg "$OUT"/results.md

# The numbers are only as good as the machine is quiet: note the load before the first run.
cut -d' ' -f1-3 /proc/loadavg >"$OUT/loadavg"
if awk '{exit !($1 > 0.5)}' /proc/loadavg; then
  log "warning: load average $(cut -d' ' -f1-3 /proc/loadavg) before the first run: other work shares these cores, numbers will be noisy"
fi

# ---- servers -------------------------------------------------------------------------------------
SERVER_PID=""
SERVER_PORT=""

# start_server NAME TAG: starts NAME on 127.0.0.1 port 0, sets SERVER_PID and SERVER_PORT once it
# accepts TCP connections (and, for the gateway, once /readyz says ready).
start_server() {
  local name=$1 tag=$2 stdout="$OUT/$1-$2.server.log" stderr="$OUT/$1-$2.server.err.log"
  local cmd
  case $name in
    gateway) cmd=("$GATEWAY" echo --listen 127.0.0.1:0 --admin 127.0.0.1:0 --shards "$THREADS") ;;
    gateway-base)
      [[ -x "$GATEWAY_BASE" ]] || die "gateway-base needs PEER_GATEWAY_BASE (an executable gateway binary)"
      cmd=("$GATEWAY_BASE" echo --listen 127.0.0.1:0 --admin 127.0.0.1:0 --shards "$THREADS") ;;
    tokio-tungstenite-4k) cmd=("$PEER_BIN/tokio-tungstenite-echo" --listen 127.0.0.1:0 --threads "$THREADS" --read-buffer 4096) ;;
    tokio-tungstenite-defaults) cmd=("$PEER_BIN/tokio-tungstenite-echo" --listen 127.0.0.1:0 --threads "$THREADS" --defaults) ;;
    fastwebsockets) cmd=("$PEER_BIN/fastwebsockets-echo" --listen 127.0.0.1:0 --threads "$THREADS") ;;
    node-ws) cmd=(node "$NODE_DIR/echo-ws.mjs" --host 127.0.0.1 --port 0) ;;
    bun) cmd=("$BUN" "$NODE_DIR/echo-bun.mjs" --host 127.0.0.1 --port 0) ;;
  esac
  : >"$stdout"
  "${cmd[@]}" >"$stdout" 2>"$stderr" &
  SERVER_PID=$!
  STARTED+=("$SERVER_PID")
  local line="" i
  for i in $(seq 300); do
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$stderr" >&2; die "$name exited during start-up"; }
    line=$(grep -m1 'listening' "$stdout" || true)
    [[ -n $line ]] && break
    sleep 0.1
  done
  [[ -n $line ]] || die "$name printed no 'listening' line within 30 s"
  local addr
  if [[ $name == gateway* ]]; then
    addr=$(sed -n 's/.*ws=\([^ ]*\).*/\1/p' <<<"$line")
  else
    addr=$(awk '{print $2}' <<<"$line")
  fi
  SERVER_PORT=${addr##*:}
  [[ "$SERVER_PORT" =~ ^[0-9]+$ ]] || die "$name: cannot read the port from '$line'"
  for i in $(seq 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$SERVER_PORT") 2>/dev/null; then break; fi
    [[ $i == 300 ]] && die "$name does not accept on port $SERVER_PORT"
    sleep 0.1
  done
  if [[ $name == gateway* ]]; then
    local admin
    admin=$(sed -n 's/.*admin=\([^ ]*\).*/\1/p' <<<"$line")
    for i in $(seq 300); do
      [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$admin/readyz" || true)" == 200 ]] && break
      [[ $i == 300 ]] && die "gateway /readyz not 200 within 30 s"
      sleep 0.1
    done
  fi
  log "$name ($tag): pid $SERVER_PID, port $SERVER_PORT"
}

stop_server() {
  local pid=$SERVER_PID i
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# cpu_ticks PID: user + system CPU time of PID (all its threads) in clock ticks.
cpu_ticks() {
  local stat rest f
  stat=$(<"/proc/$1/stat")
  rest=${stat##*) }
  read -r -a f <<<"$rest"
  echo $((f[11] + f[12]))
}

# run_load NAME WORKLOAD ARGS...: one loadtest run; JSON to $OUT/NAME-WORKLOAD.json, its exit
# status to .rc. A failed run is recorded, not fatal: the table marks it.
run_load() {
  local name=$1 workload=$2; shift 2
  local json="$OUT/$name-$workload.json" logf="$OUT/$name-$workload.log" rc=0
  log "$name: loadtest $*"
  local ticks0 t0
  ticks0=$(cpu_ticks "$SERVER_PID")
  t0=$(date +%s%N)
  # In the background so that a signal to this script is handled at once (the trap stops it too);
  # `timeout` is a backstop above the load generator's own cap of duration + 120 s.
  timeout --signal=TERM --kill-after=10 $((DURATION + IDLE_DURATION + 200)) \
    "$LOADTEST" "$@" --url "ws://127.0.0.1:$SERVER_PORT/" --json "$json" --quiet >"$logf" 2>&1 &
  local load_pid=$!
  STARTED+=("$load_pid")
  wait "$load_pid" || rc=$?
  echo "$rc" >"$OUT/$name-$workload.rc"
  # The server's CPU time over the whole run (connect, measure, close), to see how much of the
  # shared cores it took: `<ticks> <ticks per second> <wall milliseconds>`.
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "$(($(cpu_ticks "$SERVER_PID") - ticks0)) $(getconf CLK_TCK) $((($(date +%s%N) - t0) / 1000000))" \
      >"$OUT/$name-$workload.cpu"
  fi
  if [[ $rc != 0 ]]; then
    log "$name $workload: loadtest exited $rc (see $logf)"
    tail -n 5 "$logf" >&2 || true
  fi
  if [[ ! -s $json ]]; then
    # The contract puts the same object on the last stdout line: `RESULT <json>`.
    sed -n 's/^RESULT //p' "$logf" | tail -n 1 >"$json"
    [[ -s $json ]] || rm -f "$json"
  fi
}

for name in "${SERVERS[@]}"; do
  start_server "$name" echo
  run_load "$name" echo-100x20 echo --raw --connections 100 --size 20 --duration "$DURATION"
  run_load "$name" echo-500x16384 echo --raw --connections 500 --size 16384 --duration "$DURATION"
  stop_server
  start_server "$name" idle
  run_load "$name" "idle-$IDLE_CONNS" idle --raw --connections "$IDLE_CONNS" --pid "$SERVER_PID" --duration "$IDLE_DURATION"
  stop_server
done

# ---- table ---------------------------------------------------------------------------------------
node "$HERE/table.mjs" "$OUT" "$IDLE_CONNS" "$DURATION" "$IDLE_DURATION" "$THREADS" "${SERVERS[@]}" | tee "$OUT/results.md"
log "results: $OUT/results.md (raw JSON and logs in $OUT/)"
