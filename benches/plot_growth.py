#!/usr/bin/env python3
"""Plots how the cost of the initial list grows with the pods, from target/watch-growth.csv (written
by `cargo bench --bench watch_apiserver`): RSS after the list and its peak for the agent (and the
other builds of BENCH_WATCH_AGENTS), RSS of the naive reflector, and the list times, on log-log axes.

    python3 benches/plot_growth.py target/watch-growth.csv docs/watch-growth.png

Needs matplotlib (pip install matplotlib); the benches themselves do not."""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src, out = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(src)))
pods = [int(r["pods"]) for r in rows]
col = lambda name: [float(r[name]) for r in rows]  # noqa: E731
fig, (mem, time) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
others = [c[: -len("_rss_mib")] for c in rows[0] if c.endswith("_rss_mib") and c not in ("agent_rss_mib", "baseline_rss_mib")]
for name, label in [
    ("agent_rss_mib", "agent: RSS after the list"),
    ("agent_peak_mib", "agent: peak RSS during the list"),
] + [(f"{o}_rss_mib", f"{o.replace('_', ' ')}: RSS after the list") for o in others] + [
    ("baseline_rss_mib", "naive reflector (full Pods): RSS after"),
]:
    mem.plot(pods, col(name), marker="o", label=label)
mem.axhline(32, color="red", linestyle="--", label="target 32 MiB (100k pods)")
mem.set_xscale("log")
mem.set_yscale("log")
mem.set_xlabel("pods (3 containers each)")
mem.set_ylabel("MiB")
mem.set_title("Memory")
mem.legend(fontsize=7)
for name, label in [("agent_list_s", "agent"), ("baseline_list_s", "naive reflector")]:
    time.plot(pods, col(name), marker="o", label=label)
time.set_xscale("log")
time.set_yscale("log")
time.set_xlabel("pods")
time.set_ylabel("seconds to the end of the initial list")
time.set_title("Initial list time")
time.legend(fontsize=7)
fig.tight_layout()
fig.savefig(out)
