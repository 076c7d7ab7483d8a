#!/usr/bin/env python3
"""Draws docs/perf-iops-qd.png (IOPS and p99 latency against queue depth, 4 KiB random I/O) and prints the
Markdown results table, from the JSON files tools/perf/run.sh wrote (the output of `csinvme perf --json`).

    python3 tools/perf/chart.py [RESULTS_DIR] [PNG]

Needs matplotlib (apt-get install python3-matplotlib); use /usr/bin/python3 if another python3 comes first on PATH.
"""
import glob
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "docs", "perf-results")
PNG = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "docs", "perf-iops-qd.png")


def load():
    results = {}
    for path in sorted(glob.glob(os.path.join(RESULTS, "*.json"))):
        with open(path) as f:
            results[os.path.splitext(os.path.basename(path))[0]] = json.load(f)
    return results


def series(results, prefix, pattern):
    points = []
    for name, r in results.items():
        # Variants (e.g. -sqflow) are drawn separately, not as another point of the curve.
        start = prefix + "-" + pattern + "-4k-qd"
        if name.startswith(start) and name[len(start):].isdigit():
            every = run_iops(name) or [r["iops"]]
            points.append((r["queueDepth"], r["iops"], r["latency"]["p99Us"], every[0], every[-1]))
    return sorted(points)


def chart(results):
    fig, (ax_iops, ax_p99) = plt.subplots(1, 2, figsize=(12, 4.5))
    styles = {
        ("memory", "randread"): ("NVMe/TCP randread (memory)", "tab:blue", "-o"),
        ("memory", "randwrite"): ("NVMe/TCP randwrite (memory)", "tab:orange", "-o"),
        ("baseline", "randread"): ("raw TCP limit, read sizes", "tab:blue", "--s"),
        ("baseline", "randwrite"): ("raw TCP limit, write sizes", "tab:orange", "--s"),
    }
    for (prefix, pattern), (label, color, style) in styles.items():
        points = series(results, prefix, pattern)
        if not points:
            continue
        qd = [p[0] for p in points]
        ax_iops.plot(qd, [p[1] / 1000 for p in points], style, color=color, label=label)
        # The bar spans every run of the point; the marker is the median run.
        ax_iops.errorbar(qd, [p[1] / 1000 for p in points],
                         yerr=[[(p[1] - p[3]) / 1000 for p in points], [(p[4] - p[1]) / 1000 for p in points]],
                         fmt="none", ecolor=color, capsize=4, alpha=0.7)
        ax_p99.plot(qd, [p[2] for p in points], style, color=color, label=label)
    sqflow = results.get("memory-randread-4k-qd32-sqflow")
    if sqflow:
        label = "randread, SQ flow control on (memory)"
        ax_iops.plot([32], [sqflow["iops"] / 1000], "*", color="tab:green", markersize=11, label=label)
        ax_p99.plot([32], [sqflow["latency"]["p99Us"]], "*", color="tab:green", markersize=11, label=label)
    for ax in (ax_iops, ax_p99):
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 8, 32])
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_xlabel("queue depth")
        ax.grid(True, alpha=0.3)
    ax_iops.set_ylabel("kIOPS (4 KiB)")
    ax_iops.set_title("IOPS against queue depth (median run, bars: all runs)")
    ax_p99.set_ylabel("p99 latency (us)")
    ax_p99.set_title("p99 latency against queue depth")
    ax_iops.legend(fontsize=8)
    fig.suptitle("csinvme perf, loopback, server on CPU 0, client on CPU 1 (noisy shared 2-core VM)", fontsize=10)
    fig.tight_layout()
    fig.savefig(PNG, dpi=110)


def iops_by_run(name):
    """IOPS of every run of a point, by run number (tools/perf/run.sh keeps them in runs/NAME.N.json)."""
    values = {}
    for path in glob.glob(os.path.join(RESULTS, "runs", name + ".*.json")):
        with open(path) as f:
            values[path.rsplit(".", 2)[-2]] = json.load(f)["iops"]
    return values


def run_iops(name):
    """IOPS of every run of a point, lowest first."""
    return sorted(iops_by_run(name).values())


def run_pairs(name, base_name):
    """NVMe / limit of each pair of runs made back to back (run.sh alternates them), lowest first."""
    mine, theirs = iops_by_run(name), iops_by_run(base_name)
    return sorted(mine[i] / theirs[i] for i in mine if i in theirs and theirs[i] > 0)


def runs(name):
    return "/".join(f"{v / 1000:.0f}" for v in run_iops(name)) or "-"


def table(results):
    rows = [
        "| point | backend | IOPS (median run) | MiB/s | p50 us | p99 us | kIOPS of all runs | TCP limit IOPS | TCP limit runs | NVMe / TCP limit, medians | median of paired runs | best / best |",
        "|---|---|---:|---:|---:|---:|---|---:|---|---:|---:|---:|",
    ]
    for name, r in results.items():
        if name.startswith("baseline-"):
            continue
        backend, point = name.split("-", 1)
        base_name = "baseline-" + point.removesuffix("-sqflow")
        base = results.get(base_name)
        point = point.replace("-sqflow", ", SQ flow control on")
        ratio = f"{r['iops'] / base['iops']:.2f}" if base else "-"
        mine, theirs = run_iops(name), run_iops(base_name)
        best = f"{mine[-1] / theirs[-1]:.2f}" if base and mine and theirs else "-"
        pairs = run_pairs(name, base_name) if base and not name.endswith("-sqflow") else []
        paired = f"{pairs[len(pairs) // 2]:.2f}" if pairs else "-"
        base_iops = f"{base['iops']:,.0f}" if base else "-"
        rows.append(
            f"| {point} | {backend} | {r['iops']:,.0f} | {r['miBps']:,.1f} | {r['latency']['p50Us']:.1f} | "
            f"{r['latency']['p99Us']:.1f} | {runs(name)} | {base_iops} | {runs(base_name) if base else '-'} | {ratio} | {paired} | {best} |")
    for point in ("randwrite-4k-qd32", "randread-4k-qd32"):
        memory = results.get("memory-" + point)
        for backend in ("file", "thin"):
            other = results.get(f"{backend}-{point}")
            if memory and other:
                rows.append(f"\n{backend} / memory, {point}: {other['iops'] / memory['iops']:.2f} of the IOPS")
    on, off = results.get("memory-randread-4k-qd32-sqflow"), results.get("memory-randread-4k-qd32")
    if on and off:
        rows.append(f"\nrandread-4k-qd32, SQ flow control off / on: {off['iops'] / on['iops']:.2f} of the IOPS")
    return "\n".join(rows)


if __name__ == "__main__":
    data = load()
    if not data:
        sys.exit(f"no results in {RESULTS}")
    chart(data)
    print(table(data))
    print(f"\nchart written to {PNG}", file=sys.stderr)
