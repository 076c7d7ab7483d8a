#!/usr/bin/env bash
# The live-migration experiment by hand (docs/kubevirt.md, "Live migration, measured"): two Linux guests under QEMU as
# the source and destination nodes, each running the CSI node plugin; the CSI controller and the storage on this
# machine. Runs the harness (tests/CsiNvme.Csi.Tests/Migration) on a single server, on a 3-node cluster (etcd + three
# server processes), and on the cluster with a node killed (kill -9) and with the primary drained during pre-copy.
#
#   tools/migration/run.sh [full|short] [OUTDIR] [WHICH]
#
# full: 60 s before, 20 s pre-copy, 60 s after (the default); short: 20 s / 8 s / 20 s, what CI runs.
# OUTDIR (default docs/perf-results/migration): NAME.csv (per second and disk), NAME.json (summary), NAME.png (chart) per run.
# WHICH: a test name filter (default: every migration run, storage events included; "single", "three_node",
# "killed", "drained" pick one).
# MIGRATION_PIN=1 (the default on 2+ CPUs): the source guest's QEMU alone on CPU 0; the destination guest, the test,
# the CSI controller, etcd and the storage server(s) on CPU 1. MIGRATION_PIN=0: everything shares every CPU.
set -euo pipefail
cd "$(dirname "$0")/../.."

plan="${1:-full}"
out="${2:-docs/perf-results/migration}"
which="${3:-}"
case "$plan" in full|short) ;; *) echo "plan must be full or short, not '$plan'" >&2; exit 2 ;; esac
mkdir -p "$out"
export CSINVME_MIGRATION_PLAN="$plan" CSINVME_MIGRATION_CLUSTER=1
export CSINVME_MIGRATION_OUT="$(cd "$out" && pwd)"
# The guest image: built by tests/guest/build-guest.sh into .guest/ unless CSINVME_GUEST_DIR names another one.
export CSINVME_GUEST_DIR="${CSINVME_GUEST_DIR:-$PWD/.guest}"

filter="FullyQualifiedName~CsiNvme.Csi.Tests.Migration.MigrationTests.A_migration"
[[ -n "$which" ]] && filter="$filter&FullyQualifiedName~$which"

# Release: the storage is measured as it ships (the test harness starts the server of its own configuration).
dotnet build tests/CsiNvme.Csi.Tests -c Release -nologo -clp:ErrorsOnly
dotnet build src/CsiNvme.Server -c Release -nologo -clp:ErrorsOnly
# CSINVME_MIGRATION_CLUSTER=1: the cluster variants and the storage events run too (the CI runs only the single server).
pin="${MIGRATION_PIN:-1}"
[[ "$(nproc)" -ge 2 ]] || pin=0
export CSINVME_MIGRATION_PIN="$pin"
launcher=()
[[ "$pin" == 1 ]] && launcher=(taskset -c 1)
"${launcher[@]}" dotnet test tests/CsiNvme.Csi.Tests -c Release --no-build --filter "$filter" --logger "console;verbosity=normal" \
    -- NUnit.DefaultTimeout=3600000
echo "results in $CSINVME_MIGRATION_OUT:"
ls -1 "$CSINVME_MIGRATION_OUT"
