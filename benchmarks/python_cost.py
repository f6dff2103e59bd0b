"""What a microsecond of Python costs inside a small training step (why ember counts its calls per step).

    python benchmarks/python_cost.py [--pairs 40]

Times a fixed piece of pure-Python work (``copy.deepcopy`` of a small nested dict: many short functions, as
a framework's per-step code is) on its own, then the hand-written loop of ``overhead.py`` (pre-batched
data) with and without that work after every step, in pairs. On the 2-core machine of BENCHMARKS.md the
work costs ~3x more inside the loop than alone: the interpreter's code and data push torch's out of the
CPU caches and branch predictors, so every step's tensor work gets slower too. Per-step framework cost
therefore scales with the amount of Python run per step, not with the time that Python takes alone.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import timeit
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=40, help="(without, with) loop runs to compare")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch
    import torch.nn.functional as F
    from overhead import LR, make_data, make_model

    torch.set_num_threads(1)
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    batches = make_data("prebatched")[0].batches
    payload = {"a": [1, 2, {"b": (3, 4)}], "c": "x"}

    def work() -> None:
        copy.deepcopy(payload)

    def run(extra: bool) -> float:
        start = time.process_time()
        for x, y in batches:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if extra:
                work()
        return (time.process_time() - start) / len(batches) * 1e6

    alone = min(timeit.repeat(work, number=5000, repeat=7, timer=time.process_time)) / 5000 * 1e6
    run(False), run(True)  # warm-up
    added = [run(True) - run(False) for _ in range(args.pairs)]
    print(f"work alone: {alone:.1f} us; added to each step inside the loop: median {statistics.median(added):.1f} us "
          f"({statistics.median(added) / alone:.1f}x), over {args.pairs} pairs of runs")


if __name__ == "__main__":
    main()
