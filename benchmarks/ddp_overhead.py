"""DDP on 2 CPU processes (gloo): ember vs a hand-written DDP loop, per-step time.

    python benchmarks/ddp_overhead.py [--repeats 3] [--steps 512]

Each run is a fresh `torchrun --nproc_per_node=2` job; the two kinds alternate. Both train the same MLP with
DistributedDataParallel over a DistributedSampler (batch 32 per rank), SGD, one loss all-reduce logged per
step (`self.log(..., sync_dist=True)` in ember, `dist.all_reduce` by hand). Rank 0 reports the time per step
inside the training loop (wall and process CPU time).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(kind: str, steps: int, out: str) -> None:
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    n = steps * 32 * 2
    data = TensorDataset(torch.randn(n, 32, generator=g), torch.randint(0, 2, (n,), generator=g))

    def net() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))

    if kind == "hand":
        dist.init_process_group("gloo")
        model = nn.parallel.DistributedDataParallel(net())
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        loader = DataLoader(data, batch_size=32, sampler=DistributedSampler(data, shuffle=True, seed=0))
        loader.sampler.set_epoch(0)
        start, cpu = time.perf_counter(), time.process_time()
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            logged = loss.detach().clone()
            dist.all_reduce(logged)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        rank = dist.get_rank()
    else:
        sys.path.insert(0, str(ROOT))
        import ember as pl

        times: dict[str, float] = {}

        class M(pl.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.net = net()

            def forward(self, x):
                return self.net(x)

            def training_step(self, batch, batch_idx):
                x, y = batch
                loss = F.cross_entropy(self(x), y)
                self.log("loss", loss, sync_dist=True)
                return loss

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.01)

            def on_train_start(self):
                times["wall"], times["cpu"] = time.perf_counter(), time.process_time()

            def on_train_end(self):
                times["wall"], times["cpu"] = time.perf_counter() - times["wall"], time.process_time() - times["cpu"]

        trainer = pl.Trainer(strategy="ddp", devices=2, accelerator="cpu", max_epochs=1, logger=False,
                             enable_progress_bar=False, enable_checkpointing=False, enable_model_summary=False,
                             num_sanity_val_steps=0)
        trainer.fit(M(), DataLoader(data, batch_size=32, shuffle=True))
        wall, cpu, rank = times["wall"], times["cpu"], trainer.global_rank
    if rank == 0:
        Path(out).write_text(json.dumps({"wall_ms": wall / steps * 1e3, "cpu_ms": cpu / steps * 1e3}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--worker", choices=("hand", "ember"))
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.out)
        return
    results: dict[str, list[dict[str, float]]] = {"hand": [], "ember": []}
    for _ in range(args.repeats):
        for kind in ("hand", "ember"):
            out = tempfile.mktemp(suffix=".json")
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                   f"--master_port={_free_port()}", __file__, "--worker", kind, "--steps", str(args.steps),
                   "--out", out]
            subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            results[kind].append(json.loads(Path(out).read_text()))
    hand_wall = statistics.median(r["wall_ms"] for r in results["hand"])
    hand_cpu = statistics.median(r["cpu_ms"] for r in results["hand"])
    print(f"DDP, 2 CPU processes (gloo), {args.steps} steps/run, median of {args.repeats} runs (rank 0)")
    print(f"{'':8}{'wall ms/step':>14}{'x hand':>9}{'cpu ms/step':>14}{'x hand':>9}")
    for kind in ("hand", "ember"):
        wall = statistics.median(r["wall_ms"] for r in results[kind])
        cpu = statistics.median(r["cpu_ms"] for r in results[kind])
        print(f"{kind:8}{wall:>14.3f}{wall / hand_wall:>9.2f}{cpu:>14.3f}{cpu / hand_cpu:>9.2f}")


if __name__ == "__main__":
    main()
