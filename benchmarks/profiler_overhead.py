"""What profiling costs per training step: off (the default), a null profiler, SimpleProfiler.

    python benchmarks/profiler_overhead.py [--steps 3000] [--repeats 5]

The default (``profiler=None``) installs nothing: the trainer's hooks and steps run unwrapped, so its
per-step cost is that of ember without profiler support ("no profiler code": the trainer's two calls
into ember.profilers per fit replaced by no-ops). To show what the alternative design would
have cost, the script also times the loop with every action wrapped in the null profiler's
``profile()`` context (a ``nullcontext``), by attaching ``PassThroughProfiler``'s context through the
same instrumentation a real profiler uses. Runs alternate between the variants; the table shows the
median over repeats of microseconds per training step (a tiny model on pre-built batches, one thread,
no logger, bar, checkpointing or validation, so that the loop itself dominates).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ember as pl  # noqa: E402
from ember import profilers  # noqa: E402


class Batches:
    """``n`` ready (x, y) batches (a sized iterable, so no DataLoader cost is timed)."""

    def __init__(self, n: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.batches = [(torch.randn(8, 16, generator=g), torch.randn(8, 1, generator=g)) for _ in range(n)]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Any:
        return iter(self.batches)


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(16, 1)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.01)


class NullWrapped(profilers.PassThroughProfiler):
    """A null profiler that the trainer instruments like a real one: every action goes through
    ``profile()`` (a nullcontext) and ``start``/``stop`` no-ops. What "wrap always" would cost."""


def _attach_anyway(trainer: Any) -> None:
    if isinstance(trainer.profiler, NullWrapped):
        profiler = trainer.profiler
        trainer.profiler = profilers.SimpleProfiler()  # get past the pass-through check ...
        _original_attach(trainer)
        trainer.profiler = profiler  # ... then route every action to the null object
        for name in ("_hook", "_module_hook", "_to_device"):
            fn = trainer.__dict__[name]
            for cell in fn.__closure__ or ():
                if isinstance(cell.cell_contents, profilers.SimpleProfiler):
                    cell.cell_contents = profiler
    else:
        _original_attach(trainer)


_original_attach = profilers._attach


def run(profiler: Any, steps: int) -> float:
    """Microseconds per training step of one fit."""
    trainer = pl.Trainer(max_epochs=1, profiler=profiler, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         accelerator="cpu")
    times: dict[str, float] = {}

    class Clock(pl.Callback):
        def on_train_start(self, *args: Any) -> None:
            times["start"] = time.perf_counter()

        def on_train_end(self, *args: Any) -> None:
            times["end"] = time.perf_counter()

    trainer.callbacks.append(Clock())
    model = Tiny()
    trainer.fit(model, Batches(steps))
    return 1e6 * (times["end"] - times["start"]) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import ember.trainer.trainer as trainer_module

    trainer_module._attach_profiler = _attach_anyway  # lets NullWrapped be instrumented (others unchanged)
    variants = {"no profiler code": lambda: None, "None (default)": lambda: None, "null, wrapped": NullWrapped,
                "simple": profilers.SimpleProfiler}
    run(None, 200)  # warm-up: lazy imports, autograd and optimizer first-call costs
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, make in variants.items():
            profiler = make()
            if isinstance(profiler, profilers.SimpleProfiler):
                profiler.describe = lambda: None  # no report printing in a benchmark
            if name == "no profiler code":  # ember as before profilers: no attach/detach calls at all
                trainer_module._attach_profiler = trainer_module._detach_profiler = lambda *a, **k: None
            results[name].append(run(profiler, args.steps))
            trainer_module._attach_profiler, trainer_module._detach_profiler = _attach_anyway, profilers._detach
    base = statistics.median(results["no profiler code"])
    print(f"{args.steps} steps x {args.repeats} repeats, torch {torch.__version__}, 1 thread")
    print(f"{'profiler':18s} {'us/step':>9s} {'min':>9s} {'+us/step':>9s}")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"{name:18s} {median:9.1f} {min(values):9.1f} {median - base:+9.1f}")
    null = profilers.PassThroughProfiler()
    n = 200_000
    start = time.perf_counter()
    for _ in range(n):
        with null.profile("run_training_batch"):
            pass
    print(f"one `with PassThroughProfiler().profile(...)`: {1e9 * (time.perf_counter() - start) / n:.0f} ns")


if __name__ == "__main__":
    main()
