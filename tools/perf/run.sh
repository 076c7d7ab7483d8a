#!/usr/bin/env bash
# Benchmark matrix of the storage server with csinvme perf, plus the raw TCP limit mode for the same points.
#
#   tools/perf/run.sh              # 5 s per point, results in docs/perf-results/
#   PERF_TIME=10 tools/perf/run.sh
#   PERF_BASELINE_ONLY=1 tools/perf/run.sh   # only the raw TCP limit points
#   PERF_COMPARE=12 PERF_REPEAT=3 tools/perf/run.sh   # NVMe and limit in one process, 12 alternating windows each
#
# The runs of each memory-backend point alternate with the runs of the raw TCP limit point of the same size, direction
# and depth, so every NVMe / TCP-limit ratio comes from measurements a few seconds apart.
#   PERF_BACKENDS=memory PERF_NO_BASELINE=1 PERF_SERVER_DLL=/other/CsiNvme.Server.dll PERF_OUT=/tmp/x tools/perf/run.sh
#                                            # another build of the server (e.g. an older commit) against this client
#
# The server (and the TCP baseline server) run pinned to SERVER_CORE, the perf client to CLIENT_CORE, over loopback.
# Every point writes one JSON file (the output of `csinvme perf --json`); tools/perf/chart.py draws the chart from them.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TIME=${PERF_TIME:-5}
# The ramp must cover tiered JIT compilation: with every core busy polling, the background compiler thread only gets
# a share of a core, and a 1 s ramp measured partly unoptimized code.
RAMP=${PERF_RAMP:-3}
# Runs per point; the median is reported. Two modes show up on this VM for the same point (one with about half the
# IOPS, in the raw TCP limit mode too), so a single run is not enough.
REPEAT=${PERF_REPEAT:-5}
# Pairs of alternating runs for each memory-backend point and its TCP limit point. Paired ratios of single runs spread
# from about 0.8 to 1.3 on this VM at the same commit, so their median needs more runs than a point alone.
PAIRS=${PERF_PAIRS:-9}
# PERF_COMPARE=N: instead of alternating separate runs, each memory-backend point and its limit point run in one
# process, alternating in N window pairs (csinvme perf --compare-tcp-limit), PERF_REPEAT times; PERF_TIME is then each
# side's measured time per comparison. Windows a fraction of a second apart measure the ratio far more tightly.
COMPARE=${PERF_COMPARE:-}
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
BASELINE_PID=""
BASELINE=""

cleanup() {
    for pid in "$SERVER_PID" "$BASELINE_PID"; do
        if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
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

# summarize NAME: copies the run with the median IOPS to NAME.json (every run stays in runs/) and prints it.
summarize() {
    python3 - "$OUT/$1.json" "$OUT/runs/$1".*.json >&2 <<'PY'
import json, shutil, sys
runs = sorted(((json.load(open(p)), p) for p in sys.argv[2:]), key=lambda rp: rp[0]["iops"])
r, path = runs[len(runs) // 2]
shutil.copyfile(path, sys.argv[1])
lat = r["latency"]
print("   %-38s %9.0f IOPS %9.1f MiB/s  p50 %.1f us  p99 %.1f us  errors %d   (runs: %s)" % (
    sys.argv[1].rsplit("/", 1)[-1][:-5], r["iops"], r["miBps"], lat["p50Us"], lat["p99Us"], r["errors"],
    " ".join("%.0f" % x["iops"] for x, _ in runs)))
PY
}

# run_once NAME RUN ARGS...: one `csinvme perf` run pinned to CLIENT_CORE (POINT_TIME / POINT_RAMP override the defaults).
run_once() {
    local name=$1 run=$2
    shift 2
    taskset -c "$CLIENT_CORE" dotnet "$CLI_DLL" --json perf --time "${POINT_TIME:-$TIME}" --ramp "${POINT_RAMP:-$RAMP}" "$@" >"$OUT/runs/$name.$run.json"
}

# perf NAME ARGS...: one measured point, REPEAT runs (POINT_REPEAT overrides).
perf() {
    local name=$1 runs=${POINT_REPEAT:-$REPEAT}
    shift
    echo "== $name" >&2
    mkdir -p "$OUT/runs"
    rm -f "$OUT/runs/$name".*.json
    for run in $(seq 1 "$runs"); do
        run_once "$name" "$run" "$@"
    done
    summarize "$name"
}

# with_limit NAME PATTERN SIZE QD ARGS...: a memory-backend point and its raw TCP limit point, their runs alternating
# (NVMe, limit, NVMe, limit, ...) so that drift of the machine between runs falls on both alike.
with_limit() {
    local name=$1 pattern=$2 size=$3 qd=$4 runs=${POINT_REPEAT:-$PAIRS}
    shift 4
    if [[ -z "$BASELINE" || "${CURRENT_BACKEND:-}" != memory ]]; then
        perf "$CURRENT_BACKEND-$name" --target "$NVME" --nqn "$NQN" --pattern "$pattern" --io-size "$size" --qd "$qd" "$@"
        return
    fi
    echo "== $CURRENT_BACKEND-$name with its TCP limit" >&2
    mkdir -p "$OUT/runs"
    rm -f "$OUT/runs/$CURRENT_BACKEND-$name".*.json "$OUT/runs/baseline-$name".*.json
    if [[ -n "$COMPARE" ]]; then
        compare_with_limit "$name" "$pattern" "$size" "$qd" "$@"
        return
    fi
    for run in $(seq 1 "$runs"); do
        run_once "$CURRENT_BACKEND-$name" "$run" --target "$NVME" --nqn "$NQN" --pattern "$pattern" --io-size "$size" --qd "$qd" "$@"
        run_once "baseline-$name" "$run" --tcp-baseline --target "$BASELINE" --pattern "$pattern" --io-size "$size" --qd "$qd"
    done
    summarize "$CURRENT_BACKEND-$name"
    summarize "baseline-$name"
    python3 - "$OUT/runs/$CURRENT_BACKEND-$name" "$OUT/runs/baseline-$name" "$runs" >&2 <<'PY'
import json, statistics, sys
nvme, limit, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
ratios = sorted(json.load(open(f"{nvme}.{i}.json"))["iops"] / json.load(open(f"{limit}.{i}.json"))["iops"]
                for i in range(1, runs + 1))
print("   NVMe / TCP limit, paired runs: median %.2f (%s)" % (statistics.median(ratios), " ".join("%.2f" % r for r in ratios)))
PY
}

# compare_with_limit NAME PATTERN SIZE QD ARGS...: PERF_COMPARE's form of with_limit. Each run is one process that
# alternates the NVMe load and the limit load in short windows (csinvme perf --compare-tcp-limit); its two results go
# to runs/ like separate runs' would, the whole comparison to compare/.
compare_with_limit() {
    local name=$1 pattern=$2 size=$3 qd=$4 runs=${POINT_REPEAT:-$REPEAT}
    shift 4
    mkdir -p "$OUT/compare"
    rm -f "$OUT/compare/$CURRENT_BACKEND-$name".*.json
    for run in $(seq 1 "$runs"); do
        local file="$OUT/compare/$CURRENT_BACKEND-$name.$run.json"
        taskset -c "$CLIENT_CORE" dotnet "$CLI_DLL" --json perf --time "${POINT_TIME:-$TIME}" --ramp "${POINT_RAMP:-$RAMP}" \
            --windows "$COMPARE" --compare-tcp-limit "$BASELINE" --target "$NVME" --nqn "$NQN" --pattern "$pattern" \
            --io-size "$size" --qd "$qd" "$@" >"$file"
        python3 - "$file" "$OUT/runs/$CURRENT_BACKEND-$name.$run.json" "$OUT/runs/baseline-$name.$run.json" <<'PY'
import json, sys
comparison = json.load(open(sys.argv[1]))
for key, path in (("nvme", sys.argv[2]), ("limit", sys.argv[3])):
    json.dump(comparison[key], open(path, "w"), indent=2)
PY
    done
    summarize "$CURRENT_BACKEND-$name"
    summarize "baseline-$name"
    python3 - "$OUT/compare/$CURRENT_BACKEND-$name" "$runs" >&2 <<'PY'
import json, statistics, sys
runs = [json.load(open(f"{sys.argv[1]}.{i}.json")) for i in range(1, int(sys.argv[2]) + 1)]
print("   NVMe / TCP limit, window pairs: median of the comparisons' medians %.3f (%s)" % (
    statistics.median(r["medianRatio"] for r in runs),
    "; ".join("%.3f [%.3f..%.3f]" % (r["medianRatio"], r["lowerQuartileRatio"], r["upperQuartileRatio"]) for r in runs)))
PY
}

nvme_matrix() {
    local backend=$1
    CURRENT_BACKEND=$backend
    # Write the whole volume first so reads return data rather than holes.
    POINT_TIME=3 POINT_RAMP=0 POINT_REPEAT=1 perf "$backend-precondition" --target "$NVME" --nqn "$NQN" --pattern write --io-size 128k --qd 8
    # Reads connect as the CSI node connects Linux hosts, without SQ flow control, so each read is answered by its
    # data PDU alone (SUCCESS flag): the message sizes the limit mode sends. The -sqflow point keeps flow control on
    # and pays a CapsuleResp per read on top.
    for qd in 1 8 32; do
        with_limit "randread-4k-qd$qd" randread 4096 "$qd" --disable-sqflow
    done
    perf "$backend-randread-4k-qd32-sqflow" --target "$NVME" --nqn "$NQN" --pattern randread --io-size 4096 --qd 32
    for qd in 1 8 32; do
        with_limit "randwrite-4k-qd$qd" randwrite 4096 "$qd"
    done
    with_limit "read-128k-qd8" read 128k 8 --disable-sqflow
}

# The raw TCP limit server, pinned like the storage server; idle (asleep) between its points.
if [[ -z "${PERF_NO_BASELINE:-}" ]]; then
    mkdir -p "$WORK/baseline"
    taskset -c "$SERVER_CORE" dotnet "$CLI_DLL" perf --tcp-baseline-server --listen 127.0.0.1:0 >"$WORK/baseline/stdout" 2>&1 &
    BASELINE_PID=$!
    BASELINE=$(wait_for_line "$WORK/baseline/stdout" "CSINVME-BASELINE-READY" | awk '{print $2}')
fi

if [[ -n "${PERF_BASELINE_ONLY:-}" ]]; then
    for point in "randread 4096 1" "randwrite 4096 1" "randread 4096 8" "randwrite 4096 8" "randread 4096 32" \
        "randwrite 4096 32" "read 128k 8"; do
        read -r pattern size qd <<<"$point"
        label=$([[ $size == 4096 ]] && echo 4k || echo "$size")
        perf "baseline-$pattern-$label-qd$qd" --tcp-baseline --target "$BASELINE" --pattern "$pattern" --io-size "$size" --qd "$qd"
    done
fi

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
    CURRENT_BACKEND=$backend
    POINT_TIME=3 POINT_RAMP=0 POINT_REPEAT=1 perf "$backend-precondition" --target "$NVME" --nqn "$NQN" --pattern write --io-size 128k --qd 8
    perf "$backend-randwrite-4k-qd32" --target "$NVME" --nqn "$NQN" --pattern randwrite --io-size 4096 --qd 32
    perf "$backend-randread-4k-qd32" --target "$NVME" --nqn "$NQN" --pattern randread --io-size 4096 --qd 32 --disable-sqflow
    if [[ "$backend" == thin ]]; then
        # The same writes with a live snapshot: the first write to each 64 KiB cluster copies it (copy-on-write), so
        # the first point (no ramp) is mostly the copy phase of the whole volume, the second the steady state after.
        dotnet "$CLI_DLL" --server "$MGMT" snapshot create bench bench-snap >/dev/null
        POINT_RAMP=0 POINT_REPEAT=1 perf "$backend-randwrite-4k-qd32-snapshot-cow" --target "$NVME" --nqn "$NQN" --pattern randwrite --io-size 4096 --qd 32
        perf "$backend-randwrite-4k-qd32-snapshot-after" --target "$NVME" --nqn "$NQN" --pattern randwrite --io-size 4096 --qd 32
    fi
    stop_server
done
fi

rm -f "$OUT"/*-precondition.json "$OUT"/runs/*-precondition.*.json
{
    echo "nproc=$(nproc)"
    echo "kernel=$(uname -r)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "dotnet=$(dotnet --version)"
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "seconds_per_point=$TIME ramp=$RAMP runs_per_point=$REPEAT server_core=$SERVER_CORE client_core=$CLIENT_CORE"
    echo "server=$SERVER_DLL commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
} >"$OUT/machine.txt"
echo "results in $OUT" >&2
