#!/usr/bin/env bash
# The capacity run: a Redis Cluster of --masters masters and --nodes gateway nodes (2 shards each) on
# it, --connections identified connections spread over the nodes, each subscribed to one of --channels
# channels (so the channels' topics spread over the masters), then one publisher publishing message k
# to channel k mod --channels at --rate for --duration: every delivery is counted (lost, duplicated
# and out of order must be 0; loadtest exits 1 otherwise). Reports connections held, gateway RSS per
# connection on each node (VmRSS at the start of the measuring phase minus before any connection),
# kernel memory per TCP socket (slab and TCP buffers, machine-wide, both ends of each loopback
# connection counted), deliveries per second, latency p50/p99, and CPU per delivery of each gateway
# node and each Redis master over the measuring phase. Everything it started is stopped on exit.
#
# Usage: loadtest/redis-cluster.sh [--connections N] [--nodes N] [--masters N] [--channels N]
#                                  [--rate R] [--duration S] [--debug] [-- more loadtest arguments]
#   --connections  subscribers, spread over the nodes              [95000]
#   --nodes        gateway nodes, 2 shards each                    [5]
#   --masters      Redis Cluster masters                           [3]
#   --channels     channels                                        [1000]
#   --rate         publications per second, all channels together  [500]
#   --duration     seconds of the measuring phase                  [20]
#   --debug        debug build instead of release
# Each node holds connections/nodes + a few: with the open-file limit at 20,000 per process, keep
# that under about 19,000. loadtest plans its worker processes and 127.x source addresses itself.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

CONNECTIONS=95000
NODES=5
MASTERS=3
CHANNELS=1000
RATE=500
DURATION=20
PROFILE=release
EXTRA=()
while (($#)); do
    case $1 in
        --connections) CONNECTIONS=$2; shift 2 ;;
        --nodes) NODES=$2; shift 2 ;;
        --masters) MASTERS=$2; shift 2 ;;
        --channels) CHANNELS=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --debug) PROFILE=debug; shift ;;
        --) shift; EXTRA=("$@"); break ;;
        *) sed -n '13,21s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
    esac
done
command -v python3 >/dev/null || { echo "redis-cluster.sh: python3 reads the report" >&2; exit 2; }

say() { printf '==> %s\n' "$*"; }

# shellcheck source=loadtest/cluster.sh
source loadtest/cluster.sh
cluster_setup redis-cluster.sh "$PROFILE"

start_redis_cluster "$MASTERS"
say "Redis Cluster: $MASTERS masters on ${CLUSTER_PORTS[*]}"
for n in $(seq 1 "$NODES"); do start_node "$n" --shards 2; done

rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
BEFORE=()
for pid in "${NODE_PIDS[@]}"; do BEFORE+=("$(rss "$pid")"); done
KERNEL_BEFORE=$(awk '/^Slab:/ { s = $2 } END { print s }' /proc/meminfo)
SOCKETS_BEFORE=$(awk '/^TCP:/ { print $3 }' /proc/net/sockstat)
TCPMEM_BEFORE=$(awk '/^TCP:/ { print $NF }' /proc/net/sockstat)

URL_ARGS=()
for u in "${NODE_URLS[@]}"; do URL_ARGS+=(--url "$u"); done
CPU_ARGS=()
for pid in "${NODE_PIDS[@]:1}" "${CLUSTER_PIDS[@]}"; do CPU_ARGS+=(--cpu-pid "$pid"); done
say "loadtest fanout: $CONNECTIONS subscribers on $NODES nodes, $CHANNELS channels, $RATE publications/s, $DURATION s"
rc=0
"$BIN/loadtest" fanout "${URL_ARGS[@]}" --connections "$CONNECTIONS" --channels "$CHANNELS" \
    --rate "$RATE" --duration "$DURATION" --pid "${NODE_PIDS[0]}" "${CPU_ARGS[@]}" \
    --json "$WORK/report.json" --quiet "${EXTRA[@]}" | tee "$WORK/loadtest.out" || rc=$?
[[ -s $WORK/report.json ]] || { echo "redis-cluster.sh: no report (loadtest exit $rc)" >&2; exit $((rc ? rc : 1)); }

python3 - "$WORK/report.json" "$NODES" "$MASTERS" "${BEFORE[*]}" "$KERNEL_BEFORE" "$SOCKETS_BEFORE" \
    "$TCPMEM_BEFORE" "${CLUSTER_PORTS[*]}" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
nodes, masters = int(sys.argv[2]), int(sys.argv[3])
before = [int(v) for v in sys.argv[4].split()]
slab0, sockets0, tcpmem0 = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
ports = sys.argv[8].split()
servers = report["servers"]
gw, redis = servers[:nodes], servers[nodes:]
held = report["connected"]
delivered = report["messages_received"]
per_node = held / nodes
print(f"connections held: {held} of {report['connections']} ({per_node:.0f} per node)")
for i, (s, b) in enumerate(zip(gw, before)):
    rss = s.get("rss_at_go_kib")
    grown = (rss - b) * 1024 / per_node if rss else float("nan")
    cpu = s.get("cpu_s") or 0.0
    # The subscribers are spread evenly: each node makes about 1/nodes of the deliveries.
    print(f"  node {i + 1}: RSS {b} -> {rss} KiB, {grown:.0f} B per connection; "
          f"CPU {cpu:.2f} s, {cpu * 1e6 * nodes / max(delivered, 1):.2f} µs per delivery it made")
k = report.get("kernel_at_go") or {}
sockets = (k.get("tcp_inuse") or 0) - sockets0
if sockets > 0:
    slab = ((k.get("slab_kib") or 0) - slab0) * 1024 / sockets
    bufs = ((k.get("tcp_mem_pages") or 0) - tcpmem0) * 4096 / sockets
    print(f"kernel per TCP socket ({sockets} more sockets, both ends): slab {slab:.0f} B, TCP buffers {bufs:.0f} B")
lat = report["latency_ms"]
print(f"deliveries: {delivered} in {report['duration_s']:.1f} s = {report['msg_per_s']:.0f}/s; "
      f"latency p50 {lat['p50']} ms, p99 {lat['p99']} ms; publications {report['messages_sent']}")
print(f"lost {report['lost']}, duplicated {report['duplicated']}, out of order {report['out_of_order']}, errors {report['errors']}")
for port, s in zip(ports, redis):
    cpu = s.get("cpu_s") or 0.0
    print(f"  redis master :{port}: CPU {cpu:.2f} s, {cpu * 1e6 / max(delivered, 1):.3f} µs per delivery, "
          f"{cpu * 1e6 / max(report['messages_sent'], 1):.1f} µs per publication")
PY
exit "$rc"
