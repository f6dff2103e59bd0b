"""Instructions per training step, hand-written loop vs ember, counted by valgrind (callgrind).

Wall time on a small shared machine moves by ±5-10% from run to run, more than what is left to find in
ember's loop; instruction counts barely move (±0.5% here), so they settle A/B questions about the hot path.

    python benchmarks/instructions.py                 # hand and ember, pre-batched data
    python benchmarks/instructions.py --frameworks ember --data loader

Needs valgrind with its headers (``valgrind/callgrind.h``) and a C compiler: a 3-line shared library calls
callgrind's client requests so that only the timed ``fit`` (after a warm-up fit) is counted. Two numbers:
- per step: the marginal cost of a training step, from 2-epoch runs of 128 and 256 steps per epoch (the
  difference over 256 extra steps, so validation and per-epoch work cancel out);
- per epoch: what an epoch costs beyond its steps (16 validation batches, the epoch's start and end), from
  runs of 10 and 20 epochs of one training batch each, less one step.
Together they give the work in ``overhead.py``'s timed window: per step + per epoch / 128. Counts leave out
cache misses, which make Python-heavy code slower per instruction than torch's kernels (see
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


def worker(framework: str, data: str, samples: int, epochs: int, shim: str) -> None:
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
    overhead.run_once(framework, data, epochs, False, root + "/timed")
    lib.stop()


def count(framework: str, data: str, samples: int, epochs: int, shim: str, workdir: str) -> int:
    name = f"{framework}-{samples}-{epochs}"
    out = os.path.join(workdir, f"{name}.out")
    cmd = ["valgrind", "--tool=callgrind", "--collect-atstart=no", f"--callgrind-out-file={out}",
           sys.executable, __file__, "--worker", framework, "--data", data, "--samples", str(samples),
           "--epochs", str(epochs), "--shim", shim]
    env = dict(os.environ, PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1")
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    for path in Path(workdir).glob(f"{name}.out*"):
        text = path.read_text(errors="replace")
        if "timed" in text.split("\nfl=", 1)[0]:  # the dump taken at stop(), not the one at exit
            return int(re.search(r"^summary: (\d+)", text, re.M).group(1))
    raise RuntimeError(f"no callgrind dump for {framework} ({workdir})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frameworks", default="hand,ember")
    parser.add_argument("--data", choices=("prebatched", "loader"), default="prebatched")
    parser.add_argument("--worker"), parser.add_argument("--shim")
    parser.add_argument("--samples", type=int), parser.add_argument("--epochs", type=int)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.data, args.samples, args.epochs, args.shim)
    with tempfile.TemporaryDirectory(prefix="ember-instructions-") as workdir:
        shim = os.path.join(workdir, "libshim.so")
        source = os.path.join(workdir, "shim.c")
        Path(source).write_text(_SHIM)
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", shim, source], check=True)
        names = args.frameworks.split(",")
        runs = ((4096, 2), (8192, 2), (32, 10), (32, 20))  # (training samples, epochs); 32 samples = one batch
        with ThreadPoolExecutor(max_workers=2) as pool:  # two valgrind processes at a time
            counts = {(name, run): pool.submit(count, name, args.data, *run, shim, workdir)
                      for name in names for run in runs}
            n = {key: future.result() for key, future in counts.items()}
    print(f"data={args.data}: instructions per training step (marginal), per epoch beyond its steps (16 validation "
          "batches, epoch start/end), and per step of overhead.py's timed window (128-step epochs)")
    window = {}
    for name in names:
        step = (n[name, (8192, 2)] - n[name, (4096, 2)]) / 256
        epoch = (n[name, (32, 20)] - n[name, (32, 10)]) / 10 - step
        window[name] = step + epoch / 128
        versus = f"  ({window[name] / window['hand']:.3f}x hand)" if "hand" in window else ""
        print(f"  {name:10s} per step {step:12,.0f}   per epoch {epoch:12,.0f}   window {window[name]:12,.0f}{versus}")


if __name__ == "__main__":
    main()
