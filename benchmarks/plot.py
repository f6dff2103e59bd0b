"""Bar chart of per-step time from ``overhead.py --json`` results (the figure in BENCHMARKS.md).

    python benchmarks/overhead.py --paired 100 --epochs 4 --json benchmarks/results/overhead_paired.json
    python benchmarks/overhead.py --paired 60 --epochs 4 --defaults \\
        --json benchmarks/results/overhead_paired_defaults.json
    python benchmarks/plot.py benchmarks/results/overhead_paired.json \\
        benchmarks/results/overhead_paired_defaults.json -o benchmarks/results/overhead.png

(or the JSON of the separate-process table, ``overhead.py --json``). One panel per JSON file; in each, one group
of bars per data mode (hand-written loop, ember, Lightning), height = median process CPU time per training step,
label = ratio to the hand-written loop (with ``--paired``: the median of the per-round ratios).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLORS = {"hand": "#9e9e9e", "ember": "#e4572e", "lightning": "#792ee5"}
LABELS = {"hand": "hand-written loop", "ember": "ember", "lightning": "Lightning 2.x"}


def plot(paths: list[str], output: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(paths), figsize=(5.5 * len(paths), 4), squeeze=False)
    for ax, path in zip(axes[0], paths):
        report = json.loads(Path(path).read_text())
        modes = list(report["results"])
        frameworks = [f for f in COLORS if any(f in report["results"][m] for m in modes)]
        width = 0.8 / len(frameworks)
        for i, name in enumerate(frameworks):
            rows = [report["results"][m].get(name) for m in modes]
            xs = [j + (i - (len(frameworks) - 1) / 2) * width for j in range(len(modes))]
            heights = [row["cpu_ms_per_step"] if row else 0.0 for row in rows]
            bars = ax.bar(xs, heights, width, color=COLORS[name], label=LABELS[name])
            for bar, row in zip(bars, rows):
                if row and row.get("x_hand_cpu_ms_per_step"):
                    ax.annotate(f"{row['x_hand_cpu_ms_per_step']:.2f}x", (bar.get_x() + bar.get_width() / 2,
                                bar.get_height()), ha="center", va="bottom", fontsize=9)
        ax.set_xticks(range(len(modes)), [{"loader": "DataLoader", "prebatched": "pre-batched"}.get(m, m)
                                          for m in modes])
        ax.set_ylabel("CPU ms per training step (lower is better)")
        ax.set_title("progress bar, logger, checkpoints ON" if report["meta"].get("defaults")
                     else "progress bar, logger, checkpoints OFF")
        ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # room for the legend above the bars
        ax.legend(frameon=False, fontsize=9, loc="upper right")
        ax.spines[["top", "right"]].set_visible(False)
    fig.suptitle("Tiny MLP on CPU, one self.log per step: time per step and ratio to a hand-written loop")
    fig.tight_layout()
    fig.savefig(output, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", nargs="+", help="files written by overhead.py --json")
    parser.add_argument("-o", "--output", default="overhead.png")
    args = parser.parse_args()
    plot(args.json, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
