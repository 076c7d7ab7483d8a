#!/usr/bin/env python3
"""Draws docs/perf-results/cluster/cluster.png from what tools/perf/cluster.sh wrote: 4 KiB random write IOPS per
replica count (every run, QD32 and QD1) and the failover stall of every kill with its median and p90.

    /usr/bin/python3 tools/perf/cluster-chart.py [RESULTS_DIR] [PNG]

Needs matplotlib (apt-get install python3-matplotlib; Debian's python3, hence /usr/bin). Without a failover.json
in RESULTS_DIR (CLUSTER_SKIP_FAILOVER) the chart has the two throughput panels only.
"""
import json
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "docs", "perf-results", "cluster")
PNG = sys.argv[2] if len(sys.argv) > 2 else os.path.join(RESULTS, "cluster.png")


def runs(replicas, qd):
    found = []
    run = 1
    while True:
        path = os.path.join(RESULTS, "runs", f"replicas{replicas}-randwrite-4k-qd{qd}.{run}.json")
        if not os.path.exists(path):
            return found
        with open(path) as f:
            found.append(json.load(f)["iops"])
        run += 1


failover_path = os.path.join(RESULTS, "failover.json")
panels = 3 if os.path.exists(failover_path) else 2
fig, axes = plt.subplots(1, panels, figsize=(5 * panels, 4.5))
for ax, qd in zip(axes[:2], (32, 1)):
    for replicas in (1, 2, 3):
        values = runs(replicas, qd)
        if not values:
            continue
        ax.scatter([replicas] * len(values), [v / 1000 for v in values], color="tab:blue", alpha=0.6)
        median = statistics.median(values)
        ax.hlines(median / 1000, replicas - 0.25, replicas + 0.25, color="black")
        ax.annotate(f"{median / 1000:.1f}K", (replicas + 0.28, median / 1000), va="center")
    ax.set_xticks([1, 2, 3])
    ax.set_xlim(0.5, 3.9)
    ax.set_xlabel("replicas")
    ax.set_ylabel("IOPS (thousands)")
    ax.set_yscale("log")
    ax.set_title(f"4 KiB random writes, QD{qd} (each run; line: median)")

if panels == 3:
    with open(failover_path) as f:
        failover = json.load(f)
    stalls = [r["stallSeconds"] for r in failover["rounds"]]
    ax = axes[2]
    ax.bar(range(1, len(stalls) + 1), stalls, color="tab:orange")
    ax.axhline(failover["medianSeconds"], color="black", label=f"median {failover['medianSeconds']:.2f} s")
    ax.axhline(failover["p90Seconds"], color="black", linestyle="--", label=f"p90 {failover['p90Seconds']:.2f} s")
    ax.set_xlabel("kill -9 of the primary (round)")
    ax.set_ylabel("longest time without a completed write (s)")
    ax.set_title(f"failover stall, {len(stalls)} kills, 3 replicas, lease TTL 2 s")
    ax.set_ylim(0, max(3.5, max(stalls) * 1.15))
    ax.legend(loc="lower right")

fig.tight_layout()
fig.savefig(PNG, dpi=90)
print(PNG)
