"""Fault injection at scale: start a checkpointing fit, SIGKILL it at a random moment, check every checkpoint.

    python benchmarks/kill_trials.py --trials 100 [--resume-every 10]

Each trial starts ``tests/scripts/checkpointed_run.py`` (a checkpoint after every optimizer step, plus
last.ckpt), kills it with SIGKILL at a random time once the first checkpoint exists, then loads every
``*.ckpt`` left behind. Every ``--resume-every``-th trial also resumes from ``last.ckpt`` and compares the
final weights bit for bit with an uninterrupted run. Prints how many checkpoints were torn (goal: 0).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "scripts"))
import checkpointed_run  # noqa: E402

from ember.checkpoint import _load_checkpoint  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--resume-every", type=int, default=10)
    parser.add_argument("--max-delay", type=float, default=1.0)
    args = parser.parse_args()
    reference = checkpointed_run.main(tempfile.mkdtemp()).state_dict()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    torn = loaded = resumed = mismatched = finished = 0
    for trial in range(args.trials):
        root = Path(tempfile.mkdtemp(prefix="kill-"))
        proc = subprocess.Popen([sys.executable, str(ROOT / "tests/scripts/checkpointed_run.py"), str(root)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not (root / "checkpoints" / "last.ckpt").exists() and proc.poll() is None:
            time.sleep(0.005)
        time.sleep(random.uniform(0, args.max_delay))
        if proc.poll() is not None:
            finished += 1
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for path in (root / "checkpoints").glob("*.ckpt"):
            try:
                _load_checkpoint(path)
                loaded += 1
            except Exception as err:  # noqa: BLE001 - counting every failure is the point
                torn += 1
                print(f"trial {trial}: {path.name} does not load: {err}")
        if args.resume_every and trial % args.resume_every == 0:
            model = checkpointed_run.main(str(root), ckpt_path="last")
            resumed += 1
            mismatched += any(not torch.equal(model.state_dict()[k], v) for k, v in reference.items())
    print(f"trials={args.trials} (finished before the kill: {finished}) checkpoints loaded={loaded} torn={torn} "
          f"resumed={resumed} resumed-but-different={mismatched}")


if __name__ == "__main__":
    main()
