#!/usr/bin/env bash
# The storage cluster measured: three storage server processes on one etcd, all on loopback.
#
#   tools/perf/cluster.sh                      # replicas 1/2/3 throughput and latency, then 20 failovers
#   CLUSTER_ROUNDS=30 tools/perf/cluster.sh
#   CLUSTER_SKIP_FAILOVER=1 tools/perf/cluster.sh
#   SERVER_ARGS="--nvme-poll-us 0" tools/perf/cluster.sh   # more arguments for every server
#   PLACEMENT=primary-alone tools/perf/cluster.sh           # each volume's primary alone on SERVER_CORE
#   CLIENT_ARGS="--poll-us 0" tools/perf/cluster.sh         # more arguments for the load generator (csinvme perf)
#
# Throughput: a volume with 1, 2 and 3 replicas, 4 KiB random writes at QD32 and QD1 against each volume's primary;
# the runs of the three volumes alternate (1, 2, 3, 1, 2, 3, ...) so the ratios between them come from runs seconds
# apart. PLACEMENT=shared (the default): every server runs pinned to SERVER_CORE, the load to CLIENT_CORE: a
# replicated write costs the primary's and its replicas' work on the same core (the cost per core).
# PLACEMENT=primary-alone: before each run the measured volume's primary is pinned alone to SERVER_CORE and the other
# servers join the load on CLIENT_CORE, as in a cluster whose nodes are machines of their own the primary's CPU is the
# one the replication adds work to (the replicas' cores here are shared with the load generator, which is pessimistic).
#
# Failover: `csinvme bench-failover` kills the primary of a 3-replica volume with kill -9 under a write load,
# CLUSTER_ROUNDS times, restarts it and waits until it is rebuilt before the next round.
#
# Results: docs/perf-results/cluster/ (JSON per run, failover.json, summary.txt).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TIME=${PERF_TIME:-5}
RAMP=${PERF_RAMP:-2}
REPEAT=${PERF_REPEAT:-5}
ROUNDS=${CLUSTER_ROUNDS:-20}
SERVER_CORE=${SERVER_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}
PLACEMENT=${PLACEMENT:-shared}
case "$PLACEMENT" in shared|primary-alone) ;; *) echo "PLACEMENT must be shared or primary-alone" >&2; exit 2 ;; esac
OUT=${PERF_OUT:-$ROOT/docs/perf-results/cluster}
ETCD=${ETCD_BINARY:-/usr/bin/etcd}
NODES=(node-a node-b node-c)
HOST_NQN=nqn.2014-08.org.nvmexpress:uuid:5a1f0000-0000-4000-8000-0000000c1a57

cd "$ROOT"
[[ -x "$ETCD" ]] || { echo "etcd not found at $ETCD (apt-get install etcd-server)" >&2; exit 1; }
dotnet build -c Release src/CsiNvme.Server -v quiet -nologo >/dev/null
dotnet build -c Release src/CsiNvme.Cli -v quiet -nologo >/dev/null
SERVER_DLL=$ROOT/src/CsiNvme.Server/bin/Release/net10.0/CsiNvme.Server.dll
CLI_DLL=$ROOT/src/CsiNvme.Cli/bin/Release/net10.0/csinvme.dll
mkdir -p "$OUT/runs"
WORK=$(mktemp -d /tmp/csinvme-cluster.XXXXXX)

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

cleanup() {
    for pidfile in "$WORK"/*/pid "$WORK"/etcd.pid; do
        [[ -f "$pidfile" ]] || continue
        local pid
        pid=$(cat "$pidfile")
        kill -9 "$pid" 2>/dev/null || true
    done
    sleep 0.5
    rm -rf "$WORK"
}
trap cleanup EXIT

ETCD_CLIENT=$(free_port)
ETCD_PEER=$(free_port)
"$ETCD" --name perf --data-dir "$WORK/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
    --initial-cluster "perf=http://127.0.0.1:$ETCD_PEER" >"$WORK/etcd.log" 2>&1 &
echo $! >"$WORK/etcd.pid"
for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$ETCD_CLIENT/health" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -sf "http://127.0.0.1:$ETCD_CLIENT/health" >/dev/null || { cat "$WORK/etcd.log" >&2; exit 1; }

# Each node keeps its ports across restarts (a start script per node), as a node of a real cluster would.
for node in "${NODES[@]}"; do
    mkdir -p "$WORK/$node/data"
    cat >"$WORK/$node/start" <<EOF
#!/usr/bin/env bash
cd "$WORK/$node"
taskset -c $SERVER_CORE dotnet "$SERVER_DLL" --data-dir "$WORK/$node/data" --node-name $node \\
    --etcd-endpoints http://127.0.0.1:$ETCD_CLIENT --nvme-listen 127.0.0.1:$(free_port) \\
    --mgmt-listen 127.0.0.1:$(free_port) --metrics-listen 127.0.0.1:0 --log-level warning ${SERVER_ARGS:-} >>stdout 2>>stderr &
echo \$! >pid
EOF
    chmod +x "$WORK/$node/start"
    "$WORK/$node/start"
done

wait_ready() {
    local node=$1
    for _ in $(seq 1 600); do
        if grep -q "^CSINVME-READY" "$WORK/$node/stdout" 2>/dev/null; then
            grep "^CSINVME-READY" "$WORK/$node/stdout" | tail -1
            return 0
        fi
        sleep 0.1
    done
    echo "$node did not start" >&2
    cat "$WORK/$node/stderr" >&2
    return 1
}

for node in "${NODES[@]}"; do
    wait_ready "$node" >/dev/null
done
MGMT=$(wait_ready node-a | sed -E 's/.*mgmt=([^ ]+).*/\1/')
cli() { dotnet "$CLI_DLL" --server "$MGMT" "$@"; }

# A field of a volume's primary replica, from the volume record (of a list, its first item).
primary_replica() {
    cli --json volume get "$1" | python3 -c '
import json, sys
value = next(r for r in json.load(sys.stdin)["replicas"] if r.get("primary"))[sys.argv[1]]
print(value[0] if isinstance(value, list) else value)' "$2"
}

# The NVMe/TCP address of a volume's primary.
primary_of() { primary_replica "$1" nvmeListenAddresses; }

for replicas in 1 2 3; do
    cli volume create "r$replicas" --size 256M --replicas "$replicas" --allow-host "$HOST_NQN" >/dev/null
done
# Replicas of a new volume may still be exporting it.
for _ in $(seq 1 300); do
    in_sync=$(cli --json volume get r3 | python3 -c '
import json, sys
v = json.load(sys.stdin)
print(sum(1 for r in v["replicas"] if r.get("state") == "in-sync"))')
    [[ "$in_sync" == 3 ]] && break
    sleep 0.2
done
NQN_OF() { cli --json volume get "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["subsystemNqn"])'; }

# PLACEMENT=primary-alone: the volume's primary on SERVER_CORE, every other server on CLIENT_CORE (all threads).
place_servers() {
    [[ "$PLACEMENT" == primary-alone ]] || return 0
    local primary
    primary=$(primary_replica "$1" node)
    for node in "${NODES[@]}"; do
        local core=$CLIENT_CORE
        [[ "$node" == "$primary" ]] && core=$SERVER_CORE
        taskset -a -p -c "$core" "$(cat "$WORK/$node/pid")" >/dev/null
    done
}

run_point() {
    local volume=$1 name=$2 run=$3
    shift 3
    place_servers "$volume"
    taskset -c "$CLIENT_CORE" dotnet "$CLI_DLL" --json perf --target "$(primary_of "$volume")" --nqn "$(NQN_OF "$volume")" \
        --hostnqn "$HOST_NQN" --time "${POINT_TIME:-$TIME}" --ramp "${POINT_RAMP:-$RAMP}" ${CLIENT_ARGS:-} "$@" >"$OUT/runs/$name.$run.json"
}

if [[ -z "${CLUSTER_SKIP_THROUGHPUT:-}" ]]; then
    for replicas in 1 2 3; do
        POINT_TIME=3 POINT_RAMP=0 run_point "r$replicas" precondition 1 --pattern write --io-size 128k --qd 8
    done
    for point in "32" "1"; do
        for run in $(seq 1 "$REPEAT"); do
            for replicas in 1 2 3; do
                run_point "r$replicas" "replicas$replicas-randwrite-4k-qd$point" "$run" --pattern randwrite --io-size 4096 --qd "$point"
            done
        done
    done
    rm -f "$OUT"/runs/precondition.*.json
    python3 - "$OUT" "$REPEAT" <<'PY' | tee "$OUT/summary.txt" >&2
import json, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
def load(name, run):
    return json.load(open(f"{out}/runs/{name}.{run}.json"))
for qd in (32, 1):
    print(f"4 KiB random writes, QD{qd} (median of {runs} runs; ratios paired by run)")
    for replicas in (1, 2, 3):
        rs = [load(f"replicas{replicas}-randwrite-4k-qd{qd}", i) for i in range(1, runs + 1)]
        iops = statistics.median(r["iops"] for r in rs)
        p50 = statistics.median(r["latency"]["p50Us"] for r in rs)
        p99 = statistics.median(r["latency"]["p99Us"] for r in rs)
        errors = sum(r["errors"] for r in rs)
        line = f"  replicas {replicas}: {iops:9.0f} IOPS  p50 {p50:8.1f} us  p99 {p99:8.1f} us  errors {errors}"
        if replicas > 1:
            ratios = [load(f"replicas{replicas}-randwrite-4k-qd{qd}", i)["iops"] / load(f"replicas1-randwrite-4k-qd{qd}", i)["iops"]
                      for i in range(1, runs + 1)]
            line += f"  / replicas 1: {statistics.median(ratios):.2f} ({' '.join('%.2f' % r for r in sorted(ratios))})"
        print(line)
PY
fi

if [[ -z "${CLUSTER_SKIP_FAILOVER:-}" ]]; then
    cli bench-failover --volume r3 --hostnqn "$HOST_NQN" --rounds "$ROUNDS" --qd 4 \
        --kill-command "kill -9 \$(cat $WORK/{node}/pid)" --restart-command "$WORK/{node}/start" \
        --output "$OUT/failover.json" | tee -a "$OUT/summary.txt"
fi

{
    echo "nproc=$(nproc)"
    echo "kernel=$(uname -r)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "dotnet=$(dotnet --version)"
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "seconds_per_point=$TIME ramp=$RAMP runs_per_point=$REPEAT server_core=$SERVER_CORE client_core=$CLIENT_CORE placement=$PLACEMENT rounds=$ROUNDS"
    echo "server_args=${SERVER_ARGS:-(none)}"
    echo "client_args=${CLIENT_ARGS:-(none)}"
    echo "commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
} >"$OUT/machine.txt"
echo "results in $OUT" >&2
