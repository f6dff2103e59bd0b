"""Per-step cost of ember's loop against a hand-written PyTorch loop and against Lightning.

The same work runs three ways: a tiny MLP (32 -> 64 -> 64 -> 2), cross-entropy, backward, SGD step,
one ``self.log("loss", loss)`` per training step and one validation pass per epoch (logging
``val_loss``). The hand-written loop does the same work by hand, on a model with the same module tree as the
LightningModule (a module whose ``forward`` calls ``self.net``), so that the user's own code costs the same on
both sides: it keeps each step's loss as ``loss.detach()`` (what ``self.log`` keeps for a step value, with no
host sync) and works out the epoch's mean validation loss.

    python benchmarks/overhead.py                       # both data modes, table on stdout
    python benchmarks/overhead.py --data prebatched     # loop cost dominates
    python benchmarks/overhead.py --defaults            # progress bar, CSV logger, checkpoints ON
    python benchmarks/overhead.py --paired 100 --epochs 4  # the frameworks take turns in one process
    python benchmarks/overhead.py --json out.json

Data modes: ``loader`` iterates a ``DataLoader`` over a ``TensorDataset`` (batch 32, shuffled);
``prebatched`` iterates ready ``(x, y)`` batches (a sized iterable, not a list, because both
frameworks read a list as "several dataloaders"), so the framework's own per-step cost dominates.

Method, and why:
- Every (framework, repeat) runs in a fresh subprocess of this file (``--worker NAME``). Fresh
  interpreters keep the runs independent (no allocator, import or autograd state shared between
  frameworks) and let Lightning run from its own interpreter (``--lightning-python``, default: this
  one if it can import Lightning, else ``/tmp/plvenv/bin/python``). Runs alternate
  hand, ember, lightning, hand, ... so that slow drift of the machine hits all of them alike; the
  table reports medians over the repeats.
- Inside a worker, one warm-up run (one epoch, separate model/trainer) precedes the timed runs, so
  first-call costs (lazy imports, autograd and optimizer-state initialisation) are not counted.
  Each worker then does ``--inner`` timed runs (a fresh model and Trainer each), which spreads the
  cost of starting an interpreter and importing torch/Lightning (1-4 s) over more samples.
- The machine is shared and small (2 cores), so noise only ever adds time: the table shows the
  median and the minimum wall time over all runs, and also the process CPU time (``time.process_time``),
  which does not count the time the process waited for a core while other jobs ran. With one
  thread and ``num_workers=0`` all the work is on the main thread, so on a quiet machine the CPU and
  wall columns agree; on a busy one trust the CPU column and the minimum.
- The timed window is the training loop itself: for ember/Lightning from the module's
  ``on_train_start`` to ``on_train_end`` (after setup, model summary and sanity check; both
  frameworks always call these module hooks, so timing them adds no per-step work). Validation
  passes are inside the window for all three. Per-step time = window / training steps. The
  fixed cost outside the window (Trainer construction, setup, teardown) is reported separately.
- ``torch.set_num_threads(1)`` by default: the tensors are far too small for intra-op parallelism
  to help, and on a 2-core machine a second thread only adds noise.
- ``--defaults`` writes a CSVLogger explicitly for both frameworks (Lightning would pick
  TensorBoard where it is installed). Worker output goes to a pipe, as in CI: ember's progress bar
  then prints plain epoch lines while Lightning still draws tqdm; ``--tty`` runs the workers on a
  pseudo-terminal so that both draw a live bar, as for a user at a terminal.

- ``--paired N`` trades the fresh interpreters for steadiness: the frameworks take turns inside one process
  (Lightning too, when this interpreter imports it), N rounds of ``--epochs`` each, and each framework's ratio
  is the median of its per-round ratios to the hand loop. A round lasts seconds, so slow drift of a shared
  machine, which moves separate processes minutes apart by ±10%, cancels within it.

Profile one framework: ``--worker ember --data prebatched --inner 1 --profile out.prof`` writes a
cProfile of the timed runs (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FRAMEWORKS = ("hand", "ember", "lightning")

IN_FEATURES, HIDDEN, CLASSES = 32, 64, 2
TRAIN_SAMPLES, VAL_SAMPLES, BATCH_SIZE = 4096, 512, 32  # 128 training and 16 validation batches per epoch
LR = 0.05


# ---------------------------------------------------------------------------------------------------
# the workload (imported by the workers and by memory.py)
# ---------------------------------------------------------------------------------------------------
class PreBatched:
    """Ready (x, y) batches; sized and iterable, but not a list (a list means several dataloaders)."""

    def __init__(self, batches: list) -> None:
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def make_model():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(IN_FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                         nn.Linear(HIDDEN, CLASSES))


def make_hand_model():
    """The hand-written loop's model: the same module tree and ``forward`` as the LightningModule below (a
    module whose ``forward`` runs ``self.net``), so both sides run the same user code and differ only in the loop."""
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = make_model()

        def forward(self, x):
            return self.net(x)

    return Net()


def make_data(data: str):
    """(train, val) iterables of (x, y) batches, identical for every framework."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(1234)
    teacher = torch.randn(IN_FEATURES, CLASSES, generator=g)
    x = torch.randn(TRAIN_SAMPLES + VAL_SAMPLES, IN_FEATURES, generator=g)
    y = (x @ teacher).argmax(dim=1)
    xt, yt, xv, yv = x[:TRAIN_SAMPLES], y[:TRAIN_SAMPLES], x[TRAIN_SAMPLES:], y[TRAIN_SAMPLES:]
    if data == "loader":
        train = DataLoader(TensorDataset(xt, yt), batch_size=BATCH_SIZE, shuffle=True,
                           generator=torch.Generator().manual_seed(0))
        val = DataLoader(TensorDataset(xv, yv), batch_size=BATCH_SIZE)
        return train, val
    split = lambda a, b: PreBatched([(a[i:i + BATCH_SIZE].clone(), b[i:i + BATCH_SIZE].clone())  # noqa: E731
                                     for i in range(0, len(a), BATCH_SIZE)])
    return split(xt, yt), split(xv, yv)


def run_hand(data: str, epochs: int) -> dict:
    import torch
    import torch.nn.functional as F

    model = make_hand_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    train, val = make_data(data)
    steps, val_loss, logged = 0, float("nan"), {}
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        model.train()
        for x, y in train:
            loss = F.cross_entropy(model(x), y)
            logged["loss"] = loss.detach()  # self.log("loss", loss): the step value, kept without a host sync
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
        model.eval()
        with torch.no_grad():
            total, count = torch.zeros(()), 0
            for x, y in val:
                total += F.cross_entropy(model(x), y) * len(x)
                count += len(x)
        model.train()
        val_loss = (total / count).item()
    loop_s, loop_cpu_s = time.perf_counter() - start, time.process_time() - start_cpu
    return {"loop_s": loop_s, "loop_cpu_s": loop_cpu_s, "fit_s": loop_s, "steps": steps, "val_loss": val_loss}


def import_framework(name: str):
    """(pl, CSVLogger class) for "ember" or "lightning"."""
    if name == "ember":
        if str(REPO) not in sys.path:  # the checkout's ember, whatever the working directory
            sys.path.insert(0, str(REPO))
        import ember as pl
        from ember.loggers import CSVLogger

        return pl, CSVLogger
    try:
        import pytorch_lightning as pl
        from pytorch_lightning.loggers import CSVLogger
    except ImportError:
        import lightning.pytorch as pl
        from lightning.pytorch.loggers import CSVLogger
    import logging

    for logger_name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric"):
        logging.getLogger(logger_name).setLevel(logging.ERROR)
    return pl, CSVLogger


def make_module_class(pl):
    import torch
    import torch.nn.functional as F

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = make_model()
            self.t_start = self.t_end = self.cpu_start = self.cpu_end = 0.0
            self.last_val_loss = float("nan")

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self(x), y)
            self.log("loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self(x), y)
            self.log("val_loss", loss)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=LR)

        def on_train_start(self) -> None:
            self.t_start, self.cpu_start = time.perf_counter(), time.process_time()

        def on_train_end(self) -> None:
            self.t_end, self.cpu_end = time.perf_counter(), time.process_time()

    return Module


def run_framework(name: str, data: str, epochs: int, defaults: bool, root: str) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    pl, CSVLogger = import_framework(name)
    Module = make_module_class(pl)
    model = Module()
    train, val = make_data(data)
    if defaults:  # an explicit CSVLogger: Lightning would pick TensorBoard where it is installed
        kwargs = dict(logger=CSVLogger(save_dir=root))
    else:
        kwargs = dict(enable_progress_bar=False, enable_checkpointing=False, logger=False,
                      enable_model_summary=False, num_sanity_val_steps=0)
    start = time.perf_counter()
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, default_root_dir=root, **kwargs)
    trainer.fit(model, train_dataloaders=train, val_dataloaders=val)
    fit_s = time.perf_counter() - start
    val_loss = trainer.callback_metrics.get("val_loss")
    return {"loop_s": model.t_end - model.t_start, "loop_cpu_s": model.cpu_end - model.cpu_start, "fit_s": fit_s,
            "steps": trainer.global_step,
            "val_loss": float(val_loss) if val_loss is not None else float("nan")}


def run_once(name: str, data: str, epochs: int, defaults: bool, root: str) -> dict:
    if name == "hand":
        return run_hand(data, epochs)
    return run_framework(name, data, epochs, defaults, root)


def worker(args: argparse.Namespace) -> None:
    import resource

    import torch

    torch.set_num_threads(args.threads)
    if args.worker != "hand":
        import_framework(args.worker)
    import_maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory(prefix="ember-bench-") as root:
        os.chdir(root)  # anything a framework writes by default lands in the temporary directory
        if args.warmup_epochs:
            run_once(args.worker, args.data, args.warmup_epochs, args.defaults, os.path.join(root, "warmup"))
        if args.profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        runs = [run_once(args.worker, args.data, args.epochs, args.defaults, os.path.join(root, f"run{i}"))
                for i in range(args.inner)]
        if args.profile:
            profiler.disable()
            profiler.dump_stats(args.profile)
    result = dict(framework=args.worker, data=args.data, defaults=args.defaults, runs=runs,
                  import_maxrss_kb=import_maxrss_kb, maxrss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    print("RESULT " + json.dumps(result), flush=True)


def paired_worker(args: argparse.Namespace) -> None:
    """``--paired N``: the frameworks take turns inside this one process, N rounds of short runs (the order
    rotates every round). A round lasts a few seconds, so the ratio within it cancels the drift of a busy machine
    that separate processes minutes apart do not; the median of the per-round ratios is the statistic."""
    import torch

    torch.set_num_threads(args.threads)
    names = args.frameworks.split(",")
    for name in names:
        if name != "hand":
            import_framework(name)
    rounds: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="ember-bench-") as root:
        os.chdir(root)
        for name in names:
            run_once(name, args.data, args.warmup_epochs, args.defaults, os.path.join(root, "warmup"))
        for i in range(args.paired):
            turn = i % len(names)
            order = names[turn:] + names[:turn]
            runs = {name: run_once(name, args.data, args.epochs, args.defaults, os.path.join(root, f"run{i}"))
                    for name in order}
            rounds.append({name: 1e3 * r["loop_cpu_s"] / r["steps"] for name, r in runs.items()})
    print("RESULT " + json.dumps({"data": args.data, "epochs": args.epochs, "rounds": rounds}), flush=True)


def summarize_paired(result: dict) -> dict:
    """Per framework: median CPU ms/step, and the median (and quartiles) of its per-round ratio to the hand loop."""
    rounds = result["rounds"]
    summary: dict[str, dict] = {}
    for name in rounds[0]:
        ratios = sorted(r[name] / r["hand"] for r in rounds)
        q1, median, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        summary[name] = {"steps": result["epochs"] * 128, "cpu_ms_per_step": statistics.median(r[name] for r in rounds),
                         "x_hand_cpu_ms_per_step": median, "x_hand_q1": q1, "x_hand_q3": q3, "x_hand_min": ratios[0],
                         "x_hand_max": ratios[-1], "rounds_cpu_ms_per_step": [r[name] for r in rounds]}
    return summary


def print_paired(data: str, result: dict, summary: dict, args: argparse.Namespace) -> None:
    flags = "  defaults=ON" if args.defaults else ""
    print(f"\ndata={data}{flags}: {len(result['rounds'])} rounds of {result['epochs'] * 128}-step runs in one process, "
          f"frameworks taking turns")
    print(f"{'':10s} {'cpu ms/step':>11s} {'x hand (median of rounds)':>26s} {'quartiles':>13s} {'+us/step':>9s}")
    hand = summary["hand"]["cpu_ms_per_step"]
    for name, row in summary.items():
        print(f"{name:10s} {row['cpu_ms_per_step']:11.4f} {row['x_hand_cpu_ms_per_step']:26.3f} "
              f"{row['x_hand_q1']:6.3f}-{row['x_hand_q3']:.3f} {1e3 * (row['cpu_ms_per_step'] - hand):9.1f}",
              flush=True)


# ---------------------------------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------------------------------
def _can_import_lightning(python: str) -> bool:
    code = ("import importlib.util as u, sys; sys.exit(0 if u.find_spec('pytorch_lightning') or "
            "(u.find_spec('lightning') and u.find_spec('lightning.pytorch')) else 1)")
    try:
        return subprocess.run([python, "-c", code], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def find_lightning_python(explicit: str | None) -> str | None:
    candidates = [explicit] if explicit else [os.environ.get("LIGHTNING_PYTHON"), sys.executable,
                                              "/tmp/plvenv/bin/python"]
    for python in candidates:
        if python and (python == sys.executable or os.path.exists(python)) and _can_import_lightning(python):
            return python
    return None


def worker_command(python: str, name: str, data: str, args: argparse.Namespace) -> list[str]:
    cmd = [python, str(Path(__file__).resolve()), "--worker", name, "--data", data, "--epochs", str(args.epochs),
           "--warmup-epochs", str(args.warmup_epochs), "--inner", str(args.inner), "--threads", str(args.threads)]
    return cmd + (["--defaults"] if args.defaults else [])


def run_worker(cmd: list[str], timeout: float = 600, tty: bool = False) -> dict:
    """Run one worker; with ``tty`` its stdout/stderr is a pseudo-terminal (progress bars draw as for a user)."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if tty:
        output, err = _run_in_pty(cmd, env, timeout), ""
    else:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        output, err = proc.stdout, proc.stderr
    match = re.search(r"RESULT (\{.*\})", output)
    if match:
        return json.loads(match.group(1))
    raise RuntimeError(f"worker failed ({' '.join(cmd)}):\n{output[-3000:]}\n{err[-3000:]}")


def _run_in_pty(cmd: list[str], env: dict[str, str], timeout: float) -> str:
    import pty
    import threading

    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:  # what a terminal does: read everything the bars draw
        while True:
            try:
                data = os.read(master, 1 << 16)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc.wait(timeout=timeout)
    finally:
        reader.join(timeout=5)
        os.close(master)
    return b"".join(chunks).decode(errors="replace")


def measure(data: str, args: argparse.Namespace, pythons: dict[str, str]) -> dict:
    runs: dict[str, list[dict]] = {name: [] for name in pythons}
    rss: dict[str, list[int]] = {name: [] for name in pythons}
    for repeat in range(args.repeats):
        for name, python in pythons.items():
            result = run_worker(worker_command(python, name, data, args), tty=args.tty)
            runs[name].extend(result["runs"])
            rss[name].append(result["maxrss_kb"])
            if args.verbose:
                times = " ".join(f"{1e3 * r['loop_s'] / r['steps']:.4f}" for r in result["runs"])
                print(f"  [{data} #{repeat}] {name:9s} {times} ms/step", file=sys.stderr, flush=True)
    summary: dict[str, dict] = {}
    for name, results in runs.items():
        wall = [1e3 * r["loop_s"] / r["steps"] for r in results]
        cpu = [1e3 * r["loop_cpu_s"] / r["steps"] for r in results]
        summary[name] = {
            "steps": results[0]["steps"],
            "ms_per_step": statistics.median(wall),
            "ms_per_step_min": min(wall),
            "ms_per_step_max": max(wall),
            "cpu_ms_per_step": statistics.median(cpu),
            "cpu_ms_per_step_min": min(cpu),
            "fixed_s": statistics.median(r["fit_s"] - r["loop_s"] for r in results),
            "val_loss": results[0]["val_loss"],
            "maxrss_mb": statistics.median(rss[name]) / 1024,
            "runs_ms_per_step": wall,
            "runs_cpu_ms_per_step": cpu,
        }
    hand = summary.get("hand")
    for row in summary.values():
        for key in ("ms_per_step", "ms_per_step_min", "cpu_ms_per_step", "cpu_ms_per_step_min"):
            row[f"x_hand_{key}"] = row[key] / hand[key] if hand else None
        row["overhead_us_per_step"] = 1e3 * (row["ms_per_step"] - hand["ms_per_step"]) if hand else None
        row["cpu_overhead_us_per_step"] = 1e3 * (row["cpu_ms_per_step"] - hand["cpu_ms_per_step"]) if hand else None
    return summary


def print_table(data: str, summary: dict, args: argparse.Namespace) -> None:
    import torch

    steps = next(iter(summary.values()))["steps"]
    flags = ("  defaults=ON" if args.defaults else "") + ("  tty" if args.tty else "")
    print(f"\ndata={data}{flags}  ({steps} steps/run, {args.repeats} processes x {args.inner} runs, "
          f"torch {torch.__version__}, {args.threads} thread(s))")
    header = (f"{'':10s} {'wall ms/step':>12s} {'min':>7s} {'x hand':>7s} {'x (min)':>8s} {'+us/step':>9s} | "
              f"{'cpu ms/step':>11s} {'x hand':>7s} {'+us/step':>9s} | {'fixed s':>7s}")
    print(header)
    print("-" * len(header))
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    for name, row in summary.items():
        print(f"{name:10s} {row['ms_per_step']:12.4f} {row['ms_per_step_min']:7.4f} "
              f"{fmt(row['x_hand_ms_per_step'], '.2f'):>7s} {fmt(row['x_hand_ms_per_step_min'], '.2f'):>8s} "
              f"{fmt(row['overhead_us_per_step'], '.1f'):>9s} | {row['cpu_ms_per_step']:11.4f} "
              f"{fmt(row['x_hand_cpu_ms_per_step'], '.2f'):>7s} {fmt(row['cpu_overhead_us_per_step'], '.1f'):>9s} | "
              f"{row['fixed_s']:7.3f}")
    print("medians over processes x runs; x (min): ratio of the fastest runs; cpu: process CPU time (ignores time "
          "the process waited for a core); fixed s: time in fit() outside the training loop", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=("loader", "prebatched", "both"), default="both")
    parser.add_argument("--defaults", action="store_true",
                        help="progress bar, CSV logger, checkpointing and model summary ON for ember/Lightning")
    parser.add_argument("--tty", action="store_true",
                        help="run workers on a pseudo-terminal, so that progress bars draw as they would for a user "
                             "(by default output goes to a pipe: ember prints plain epoch lines, Lightning still "
                             "draws tqdm)")
    parser.add_argument("--epochs", type=int, default=16, help="timed epochs (128 steps each)")
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="fresh subprocesses per framework")
    parser.add_argument("--inner", type=int, default=2, help="timed runs inside each subprocess")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS), help="comma-separated subset")
    parser.add_argument("--lightning-python", default=None, help="interpreter that can import Lightning")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--verbose", action="store_true", help="print every run as it finishes")
    parser.add_argument("--paired", type=int, default=0, metavar="N",
                        help="N rounds in which the frameworks (Lightning if this interpreter imports it) take turns "
                             "inside one process (see paired_worker); use a small --epochs: --paired 100 --epochs 4")
    parser.add_argument("--worker", choices=FRAMEWORKS + ("paired",), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--profile", default=None,
                        help="with --worker: write a cProfile of the timed run to this file")
    args = parser.parse_args(argv)
    if args.worker:
        if args.data == "both":
            parser.error("--worker needs --data loader or --data prebatched")
        paired_worker(args) if args.worker == "paired" else worker(args)
        return
    modes = ("loader", "prebatched") if args.data == "both" else (args.data,)
    if args.paired:
        names = args.frameworks.split(",")
        if "lightning" in names and not _can_import_lightning(sys.executable):
            print("Lightning is not importable in this interpreter: skipped.", file=sys.stderr)
            names.remove("lightning")
        if len(names) < 2 or names[0] != "hand" or not set(names) <= set(FRAMEWORKS):
            parser.error(f"--paired needs --frameworks hand,... (the hand loop first, then some of {FRAMEWORKS[1:]})")
        results = {}
        for data in modes:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "paired", "--data", data, "--epochs",
                   str(args.epochs), "--warmup-epochs", str(args.warmup_epochs), "--threads", str(args.threads),
                   "--paired", str(args.paired), "--frameworks", ",".join(names)]
            raw = run_worker(cmd + (["--defaults"] if args.defaults else []), timeout=3600)
            results[data] = summarize_paired(raw)
            print_paired(data, raw, results[data], args)
        if args.json:  # the same layout as the table's JSON, so that plot.py reads either
            meta = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "threads": args.threads,
                    "epochs": args.epochs, "paired": args.paired, "defaults": args.defaults}
            Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2))
        return
    pythons: dict[str, str] = {}
    for name in args.frameworks.split(","):
        if name == "lightning":
            python = find_lightning_python(args.lightning_python)
            if python is None:
                print("Lightning is not importable (pytorch_lightning / lightning.pytorch): skipped.",
                      file=sys.stderr)
                continue
            pythons[name] = python
        elif name in FRAMEWORKS:
            pythons[name] = sys.executable
        else:
            parser.error(f"unknown framework {name!r}; choose from {', '.join(FRAMEWORKS)}")
    results = {}
    for data in modes:
        results[data] = measure(data, args, pythons)
        print_table(data, results[data], args)
    if args.json:
        meta = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "threads": args.threads,
                "epochs": args.epochs, "repeats": args.repeats, "inner": args.inner, "defaults": args.defaults,
                "tty": args.tty,
                "pythons": pythons}
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
