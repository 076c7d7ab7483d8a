#!/usr/bin/env bash
# Benchmark matrix of the storage server with csinvme perf, plus the raw TCP limit mode for the same points.
#
#   tools/perf/run.sh              # 5 s per point, results in docs/perf-results/
#   PERF_TIME=10 tools/perf/run.sh
#   PERF_BASELINE_ONLY=1 tools/perf/run.sh   # only the raw TCP limit points
#   PERF_BACKENDS=memory PERF_NO_BASELINE=1 PERF_SERVER_DLL=/other/CsiNvme.Server.dll PERF_OUT=/tmp/x tools/perf/run.sh
#                                            # another build of the server (e.g. an older commit) against this client
#
# The server (and the TCP baseline server) run pinned to SERVER_CORE, the perf client to CLIENT_CORE, over loopback.
# Every point writes one JSON file (the output of `csinvme perf --json`); tools/perf/chart.py draws the chart from them.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TIME=${PERF_TIME:-5}
RAMP=${PERF_RAMP:-1}
SERVER_CORE=${SERVER_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}
OUT=${PERF_OUT:-$ROOT/docs/perf-results}
VOLUME_SIZE=${PERF_VOLUME_SIZE:-256M}

cd "$ROOT"
dotnet build -c Release src/CsiNvme.Server -v quiet -nologo >/dev/null
dotnet build -c Release src/CsiNvme.Cli -v quiet -nologo >/dev/null
SERVER_DLL=${PERF_SERVER_DLL:-$ROOT/src/CsiNvme.Server/bin/Release/net10.0/CsiNvme.Server.dll}
BACKENDS=${PERF_BACKENDS:-memory file thin}
CLI_DLL=$ROOT/src/CsiNvme.Cli/bin/Release/net10.0/csinvme.dll
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/csinvme-perf.XXXXXX)
SERVER_PID=""

cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# Waits (bounded) for a line starting with $2 in file $1 and prints it.
wait_for_line() {
    local file=$1 prefix=$2
    for _ in $(seq 1 300); do
        if grep -q "^$prefix" "$file" 2>/dev/null; then
            grep -m1 "^$prefix" "$file"
            return 0
        fi
        sleep 0.1
    done
    echo "timed out waiting for '$prefix' in $file" >&2
    cat "$file" >&2
    return 1
}

stop_server() {
    if [[ -n "$SERVER_PID" ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}

# start_server BACKEND: the storage server on free loopback ports, pinned to SERVER_CORE; sets NVME, MGMT and NQN.
start_server() {
    local backend=$1 dir=$WORK/$1
    mkdir -p "$dir"
    taskset -c "$SERVER_CORE" dotnet "$SERVER_DLL" --backend "$backend" --data-dir "$dir" \
        --nvme-listen 127.0.0.1:0 --mgmt-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --log-level warning \
        >"$dir/stdout" 2>"$dir/stderr" &
    SERVER_PID=$!
    local ready
    ready=$(wait_for_line "$dir/stdout" "CSINVME-READY")
    NVME=$(sed -E 's/.*nvme=([^, ]+).*/\1/' <<<"$ready")
    MGMT=$(sed -E 's/.*mgmt=([^ ]+).*/\1/' <<<"$ready")
    NQN=$(dotnet "$CLI_DLL" --server "$MGMT" --json volume create bench --size "$VOLUME_SIZE" --allow-any-host \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["subsystemNqn"])')
    echo "server ($backend) nvme=$NVME mgmt=$MGMT nqn=$NQN" >&2
}

# perf NAME ARGS...: one measured point, pinned to CLIENT_CORE (POINT_TIME / POINT_RAMP override the defaults).
perf() {
    local name=$1
    shift
    echo "== $name" >&2
    taskset -c "$CLIENT_CORE" dotnet "$CLI_DLL" --json perf --time "${POINT_TIME:-$TIME}" --ramp "${POINT_RAMP:-$RAMP}" "$@" >"$OUT/$name.json"
    python3 - "$OUT/$name.json" >&2 <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
lat = r["latency"]
print("   %12.0f IOPS %9.1f MiB/s  p50 %.1f us  p99 %.1f us  errors %d" % (r["iops"], r["miBps"], lat["p50Us"], lat["p99Us"], r["errors"]))
PY
}

nvme_matrix() {
    local backend=$1
    # Write the whole volume first so reads return data rather than holes.
    POINT_TIME=3 POINT_RAMP=0 perf "$backend-precondition" --target "$NVME" --nqn "$NQN" --pattern write --io-size 128k --qd 8
    for qd in 1 8 32; do
        perf "$backend-randread-4k-qd$qd" --target "$NVME" --nqn "$NQN" --pattern randread --io-size 4096 --qd "$qd"
    done
    # Reads completed by C2HData SUCCESS instead of a CapsuleResp, right after the same point with flow control on.
    perf "$backend-randread-4k-qd32-nosqflow" --target "$NVME" --nqn "$NQN" --pattern randread --io-size 4096 --qd 32 --disable-sqflow
    for qd in 1 8 32; do
        perf "$backend-randwrite-4k-qd$qd" --target "$NVME" --nqn "$NQN" --pattern randwrite --io-size 4096 --qd "$qd"
    done
    perf "$backend-read-128k-qd8" --target "$NVME" --nqn "$NQN" --pattern read --io-size 128k --qd 8
}

if [[ -z "${PERF_BASELINE_ONLY:-}" ]]; then
for backend in $BACKENDS; do
    [[ "$backend" == memory ]] || continue
    start_server memory
    nvme_matrix memory
    stop_server
done

for backend in $BACKENDS; do
    [[ "$backend" == memory ]] && continue
    start_server "$backend"
    POINT_TIME=3 POINT_RAMP=0 perf "$backend-precondition" --target "$NVME" --nqn "$NQN" --pattern write --io-size 128k --qd 8
    perf "$backend-randwrite-4k-qd32" --target "$NVME" --nqn "$NQN" --pattern randwrite --io-size 4096 --qd 32
    perf "$backend-randread-4k-qd32" --target "$NVME" --nqn "$NQN" --pattern randread --io-size 4096 --qd 32
    if [[ "$backend" == thin ]]; then
        # The same writes with a live snapshot: the first write to each 64 KiB cluster copies it (copy-on-write), so
        # the first point (no ramp) is mostly the copy phase of the whole volume, the second the steady state after.
        dotnet "$CLI_DLL" --server "$MGMT" snapshot create bench bench-snap >/dev/null
        POINT_RAMP=0 perf "$backend-randwrite-4k-qd32-snapshot-cow" --target "$NVME" --nqn "$NQN" --pattern randwrite --io-size 4096 --qd 32
        perf "$backend-randwrite-4k-qd32-snapshot-after" --target "$NVME" --nqn "$NQN" --pattern randwrite --io-size 4096 --qd 32
    fi
    stop_server
done
fi

# The raw TCP limit mode with the same message sizes and depths.
if [[ -z "${PERF_NO_BASELINE:-}" ]]; then
mkdir -p "$WORK/baseline"
taskset -c "$SERVER_CORE" dotnet "$CLI_DLL" perf --tcp-baseline-server --listen 127.0.0.1:0 >"$WORK/baseline/stdout" 2>&1 &
SERVER_PID=$!
BASELINE=$(wait_for_line "$WORK/baseline/stdout" "CSINVME-BASELINE-READY" | awk '{print $2}')
for qd in 1 8 32; do
    perf "baseline-randread-4k-qd$qd" --tcp-baseline --target "$BASELINE" --pattern randread --io-size 4096 --qd "$qd"
done
for qd in 1 8 32; do
    perf "baseline-randwrite-4k-qd$qd" --tcp-baseline --target "$BASELINE" --pattern randwrite --io-size 4096 --qd "$qd"
done
perf "baseline-read-128k-qd8" --tcp-baseline --target "$BASELINE" --pattern read --io-size 128k --qd 8
stop_server
fi

rm -f "$OUT"/*-precondition.json
{
    echo "nproc=$(nproc)"
    echo "kernel=$(uname -r)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "dotnet=$(dotnet --version)"
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "seconds_per_point=$TIME ramp=$RAMP server_core=$SERVER_CORE client_core=$CLIENT_CORE"
    echo "server=$SERVER_DLL commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
} >"$OUT/machine.txt"
echo "results in $OUT" >&2
