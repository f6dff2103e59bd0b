"""Instructions per training step, hand-written loop vs ember, counted by valgrind (callgrind).

Wall time on a small shared machine moves by ±5-10% from run to run, more than what is left to find in
ember's loop; instruction counts barely move (±0.4% here), so they settle A/B questions about the hot path.

    python benchmarks/instructions.py                 # hand and ember, pre-batched data
    python benchmarks/instructions.py --frameworks ember --data loader

Needs valgrind with its headers (``valgrind/callgrind.h``) and a C compiler: a 3-line shared library calls
callgrind's client requests so that only the timed ``fit`` (after a warm-up fit) is counted. The
marginal cost of a training step is the difference between runs of 256 and 128 steps per epoch
(2 epochs each) divided by 256 extra steps, so validation and per-epoch work cancel out. Instruction
counts leave out cache misses, which make Python-heavy code slower per instruction (see
``python_cost.py``): read them as the work done, not as time. One run takes ~1.5 min under valgrind.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
_SHIM = r"""
#include <valgrind/callgrind.h>
void start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_TOGGLE_COLLECT; }
void stop(void) { CALLGRIND_TOGGLE_COLLECT; CALLGRIND_DUMP_STATS_AT("timed"); }
"""


def worker(framework: str, data: str, samples: int, shim: str) -> None:
    import ctypes

    import torch

    sys.path.insert(0, str(HERE))
    import overhead

    torch.set_num_threads(1)
    overhead.TRAIN_SAMPLES = samples
    if framework != "hand":
        overhead.import_framework(framework)
    root = tempfile.mkdtemp(prefix="ember-instructions-")
    overhead.run_once(framework, data, 1, False, root + "/warmup")
    lib = ctypes.CDLL(shim)
    lib.start()
    overhead.run_once(framework, data, 2, False, root + "/timed")
    lib.stop()


def count(framework: str, data: str, samples: int, shim: str, workdir: str) -> int:
    out = os.path.join(workdir, f"{framework}-{samples}.out")
    cmd = ["valgrind", "--tool=callgrind", "--collect-atstart=no", f"--callgrind-out-file={out}",
           sys.executable, __file__, "--worker", framework, "--data", data, "--samples", str(samples), "--shim", shim]
    env = dict(os.environ, PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1")
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    for path in Path(workdir).glob(f"{framework}-{samples}.out*"):
        text = path.read_text(errors="replace")
        if "timed" in text.split("\nfl=", 1)[0]:  # the dump taken at stop(), not the one at exit
            return int(re.search(r"^summary: (\d+)", text, re.M).group(1))
    raise RuntimeError(f"no callgrind dump for {framework} ({workdir})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frameworks", default="hand,ember")
    parser.add_argument("--data", choices=("prebatched", "loader"), default="prebatched")
    parser.add_argument("--worker"), parser.add_argument("--samples", type=int), parser.add_argument("--shim")
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.data, args.samples, args.shim)
    with tempfile.TemporaryDirectory(prefix="ember-instructions-") as workdir:
        shim = os.path.join(workdir, "libshim.so")
        source = os.path.join(workdir, "shim.c")
        Path(source).write_text(_SHIM)
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", shim, source], check=True)
        names = args.frameworks.split(",")
        with ThreadPoolExecutor(max_workers=2) as pool:  # two valgrind processes at a time
            runs = {(name, samples): pool.submit(count, name, args.data, samples, shim, workdir)
                    for name in names for samples in (4096, 8192)}
            per_step = {name: (runs[name, 8192].result() - runs[name, 4096].result()) / 256 for name in names}
            # what the fit costs beyond its steps: 2 epochs' validation, epoch starts and ends, loop set-up
            fixed = {name: runs[name, 4096].result() - 256 * per_step[name] for name in names}
        print(f"data={args.data}: instructions per training step (marginal, 2 epochs of 128 vs 256 steps),")
        print("and per fit beyond its steps (2 epochs: validation, epoch starts/ends), shared over 128 steps/epoch")
        for name, n in per_step.items():
            extra = f"  {n / per_step['hand']:.3f}x hand, {n - per_step['hand']:+,.0f}" if "hand" in names else ""
            per_epoch = fixed[name] / 2
            print(f"  {name:10s} {n:12,.0f}{extra}   per epoch {per_epoch:12,.0f} (= {per_epoch / 128:,.0f} per step)")


if __name__ == "__main__":
    main()
