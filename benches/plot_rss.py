#!/usr/bin/env python3
"""Plots RSS over time from a bench's CSV (seconds, then one column of MiB per agent) to a PNG,
with a line at a bound, or two at a band (`low:high`), or none (`-`); a fifth argument names the
y axis (default "RSS (MiB)"), e.g. for the soak's heap samples.

    python3 benches/plot_rss.py target/event-storm.csv docs/event-storm-rss.png "Event storm" 64
    python3 benches/plot_rss.py target/soak.csv docs/soak-rss.png "Soak" 26.1:31.9
    python3 benches/plot_rss.py target/soak-heap.csv docs/soak-heap.png "Soak: heap" - "heap (MiB)"

Needs matplotlib (pip install matplotlib); the benches themselves do not."""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

src, out, title = sys.argv[1], sys.argv[2], sys.argv[3]
bounds = [float(b) for b in sys.argv[4].split(":")] if len(sys.argv) > 4 and sys.argv[4] != "-" else []
ylabel = sys.argv[5] if len(sys.argv) > 5 else "RSS (MiB)"
rows = list(csv.DictReader(open(src)))
xs = [float(r["seconds"]) for r in rows]
fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
for column in [c for c in rows[0] if c != "seconds"]:
    ax.plot(xs, [float(r[column]) for r in rows], label=column.replace("_", " "))
for i, bound in enumerate(bounds):
    label = f"bound {bound:g} MiB" if len(bounds) == 1 else ("band" if i == 0 else None)
    ax.axhline(bound, color="red", linestyle="--", label=label)
ax.set_xlabel("seconds since the agent started")
ax.set_ylabel(ylabel)
ax.set_ylim(bottom=0)
ax.set_title(title)
ax.legend(loc="lower right")
fig.tight_layout()
fig.savefig(out)
