"""Peak resident memory of the same run: hand-written loop vs ember vs Lightning.

    python benchmarks/memory.py                      # both data modes, median of 3 fresh processes
    python benchmarks/memory.py --data loader --defaults --json memory.json

Each sample is one fresh subprocess running ``overhead.py``'s workload once (no warm-up run, so
nothing but the measured run adds to the peak). Peak RSS is ``resource.getrusage(RUSAGE_SELF).ru_maxrss``
read twice: right after ``import torch`` plus the framework, and at the end of the run. The
difference is what the run itself added (model, data, optimizer state, framework objects). Peak RSS
is a high-water mark of the whole process, so the import line includes torch's ~300 MB.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import FRAMEWORKS, find_lightning_python, run_worker  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=("loader", "prebatched", "both"), default="both")
    parser.add_argument("--defaults", action="store_true",
                        help="progress bar, CSV logger, checkpointing and model summary ON for ember/Lightning")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lightning-python", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    pythons = {"hand": sys.executable, "ember": sys.executable}
    lightning_python = find_lightning_python(args.lightning_python)
    if lightning_python is None:
        print("Lightning is not importable: skipped.", file=sys.stderr)
    else:
        pythons["lightning"] = lightning_python
    here = str(Path(__file__).resolve().parent / "overhead.py")
    modes = ("loader", "prebatched") if args.data == "both" else (args.data,)
    summary: dict[str, dict] = {}
    for data in modes:
        samples: dict[str, list[dict]] = {name: [] for name in pythons}
        for _ in range(args.repeats):
            for name, python in pythons.items():
                cmd = [python, here, "--worker", name, "--data", data, "--epochs", str(args.epochs),
                       "--warmup-epochs", "0", "--inner", "1"] + (["--defaults"] if args.defaults else [])
                samples[name].append(run_worker(cmd))
        print(f"\npeak RSS, data={data}{'  defaults=ON' if args.defaults else ''} "
              f"(median of {args.repeats} fresh processes, {args.epochs} epochs)")
        print(f"{'':10s} {'after import MB':>16s} {'peak MB':>9s} {'run adds MB':>12s} {'vs hand MB':>11s}")
        summary[data] = {}
        for name in FRAMEWORKS:
            if name not in samples:
                continue
            runs = samples[name]
            imported = statistics.median(r["import_maxrss_kb"] for r in runs) / 1024
            peak = statistics.median(r["maxrss_kb"] for r in runs) / 1024
            summary[data][name] = {"import_mb": imported, "peak_mb": peak, "run_mb": peak - imported}
        hand_peak = summary[data].get("hand", {}).get("peak_mb")
        for name, row in summary[data].items():
            row["peak_vs_hand_mb"] = row["peak_mb"] - hand_peak if hand_peak is not None else None
            print(f"{name:10s} {row['import_mb']:16.1f} {row['peak_mb']:9.1f} {row['run_mb']:12.1f} "
                  f"{row['peak_vs_hand_mb']:+11.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
