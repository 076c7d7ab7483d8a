#!/usr/bin/env bash
# A/B comparison of storage server builds or settings with csinvme perf: every server runs side by side (an idle
# server costs nothing), pinned to SERVER_CORE, and each round runs every point against every server in turn (the
# order rotating from round to round), so a slow stretch of the machine falls on all of them alike.
#
#   PERF_AB_SERVERS="old=/tmp/old/CsiNvme.Server.dll new=src/CsiNvme.Server/bin/Release/net10.0/CsiNvme.Server.dll" \
#       tools/perf/ab.sh
#   PERF_AB_SERVERS="threads=$DLL pool=$DLL@--nvme-max-threads@0" tools/perf/ab.sh   # @ separates extra server flags
#
# Prints, per point and server, the median IOPS and p50 over the rounds and the median of the per-round ratios to
# the first server; every run's JSON goes to PERF_OUT (default a temporary directory).
#
# PERF_AB_COMPARE=N: each run is instead an in-process comparison with the raw TCP limit (csinvme perf
# --compare-tcp-limit, N window pairs against one limit server pinned like the servers), and the summary gives each
# server's NVMe / TCP limit ratio. On a busy machine the limit, measured a fraction of a second apart, takes the
# machine's state out of the comparison of the servers far better than separate runs do.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ROUNDS=${PERF_ROUNDS:-5}
TIME=${PERF_TIME:-5}
RAMP=${PERF_RAMP:-3}
SERVER_CORE=${SERVER_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}
SERVERS=${PERF_AB_SERVERS:?set PERF_AB_SERVERS to NAME=DLL[@FLAG@VALUE...] entries separated by spaces}
# NAME|perf arguments; the volume is written once end to end before the first round.
POINTS=${PERF_AB_POINTS:-"randread-4k-qd32|--pattern randread --io-size 4096 --qd 32 --disable-sqflow
randwrite-4k-qd32|--pattern randwrite --io-size 4096 --qd 32
randread-4k-qd1|--pattern randread --io-size 4096 --qd 1 --disable-sqflow
randwrite-4k-qd8-8x2|--pattern randwrite --io-size 4096 --qd 8 --connections 8 --queues 2"}

cd "$ROOT"
dotnet build -c Release src/CsiNvme.Cli -v quiet -nologo >/dev/null
CLI_DLL=$ROOT/src/CsiNvme.Cli/bin/Release/net10.0/csinvme.dll
WORK=$(mktemp -d /tmp/csinvme-ab.XXXXXX)
OUT=${PERF_OUT:-$WORK/results}
mkdir -p "$OUT"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK/servers"
}
trap cleanup EXIT

COMPARE=${PERF_AB_COMPARE:-}
LIMIT_ARGS=()
if [[ -n "$COMPARE" ]]; then
    mkdir -p "$WORK/limit"
    taskset -c "$SERVER_CORE" dotnet "$CLI_DLL" perf --tcp-baseline-server --listen 127.0.0.1:0 >"$WORK/limit/stdout" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 1 300); do grep -q '^CSINVME-BASELINE-READY' "$WORK/limit/stdout" 2>/dev/null && break; sleep 0.1; done
    LIMIT_ARGS=(--windows "$COMPARE" --compare-tcp-limit "$(grep -m1 '^CSINVME-BASELINE-READY' "$WORK/limit/stdout" | awk '{print $2}')")
fi

declare -A NVME NQN
NAMES=()
for entry in $SERVERS; do
    name=${entry%%=*}
    spec=${entry#*=}
    IFS=@ read -r -a parts <<<"$spec"
    dir=$WORK/servers/$name
    mkdir -p "$dir"
    taskset -c "$SERVER_CORE" dotnet "${parts[0]}" --backend memory --data-dir "$dir" --nvme-listen 127.0.0.1:0 \
        --mgmt-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --log-level warning "${parts[@]:1}" >"$dir/stdout" 2>"$dir/stderr" &
    PIDS+=($!)
    for _ in $(seq 1 300); do grep -q '^CSINVME-READY' "$dir/stdout" 2>/dev/null && break; sleep 0.1; done
    ready=$(grep -m1 '^CSINVME-READY' "$dir/stdout") || { echo "server $name did not start" >&2; cat "$dir/stderr" >&2; exit 1; }
    mgmt=$(sed -E 's/.*mgmt=([^ ]+).*/\1/' <<<"$ready")
    NVME[$name]=$(sed -E 's/.*nvme=([^, ]+).*/\1/' <<<"$ready")
    NQN[$name]=$(dotnet "$CLI_DLL" --server "$mgmt" --json volume create bench --size 256M --allow-any-host \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["subsystemNqn"])')
    taskset -c "$CLIENT_CORE" dotnet "$CLI_DLL" perf --target "${NVME[$name]}" --nqn "${NQN[$name]}" --pattern write \
        --io-size 128k --qd 8 --time 3 >/dev/null
    NAMES+=("$name")
    echo "server $name: ${parts[*]} nvme=${NVME[$name]}" >&2
done

for round in $(seq 1 "$ROUNDS"); do
    # Rotate the order of the servers from round to round.
    order=("${NAMES[@]:$(( (round - 1) % ${#NAMES[@]} ))}" "${NAMES[@]:0:$(( (round - 1) % ${#NAMES[@]} ))}")
    while IFS='|' read -r point args; do
        [[ -z "$point" ]] && continue
        for name in "${order[@]}"; do
            # shellcheck disable=SC2086
            taskset -c "$CLIENT_CORE" dotnet "$CLI_DLL" --json perf --target "${NVME[$name]}" --nqn "${NQN[$name]}" \
                --time "$TIME" --ramp "$RAMP" "${LIMIT_ARGS[@]}" $args >"$OUT/$point.$name.$round.json"
        done
    done <<<"$POINTS"
    echo "round $round done" >&2
done

python3 - "$OUT" "$ROUNDS" "${NAMES[@]}" <<'PY'
import json, statistics, sys, glob, os
out, rounds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
points = sorted({os.path.basename(p).split(".")[0] for p in glob.glob(f"{out}/*.json")})
for point in points:
    runs = {n: [json.load(open(f"{out}/{point}.{n}.{r}.json")) for r in range(1, rounds + 1)] for n in names}
    print(f"== {point}")
    if "medianRatio" in runs[names[0]][0]:
        for n in names:
            ratios = [r["medianRatio"] for r in runs[n]]
            relative = [a["medianRatio"] / b["medianRatio"] for a, b in zip(runs[n], runs[names[0]])]
            print("   %-10s NVMe / TCP limit: median %.3f (%s)  p50 %6.1f us   / %s per round: median %.3f (%s)" % (
                n, statistics.median(ratios), " ".join("%.2f" % x for x in ratios),
                statistics.median(r["nvme"]["latency"]["p50Us"] for r in runs[n]), names[0],
                statistics.median(relative), " ".join("%.2f" % x for x in relative)))
        continue
    for n in names:
        iops = [r["iops"] for r in runs[n]]
        ratios = [a["iops"] / b["iops"] for a, b in zip(runs[n], runs[names[0]])]
        print("   %-10s median %9.0f IOPS  p50 %6.1f us   / %s per round: median %.3f (%s)" % (
            n, statistics.median(iops), statistics.median(r["latency"]["p50Us"] for r in runs[n]), names[0],
            statistics.median(ratios), " ".join("%.2f" % x for x in ratios)))
PY
echo "runs in $OUT" >&2
