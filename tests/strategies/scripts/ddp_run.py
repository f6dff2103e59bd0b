"""A DDP run that tests/strategies/test_ddp.py starts as a real script (python, torchrun, ddp_spawn).

Each process that runs the script to its end writes ``<out>/proc-<global rank>.pt`` with what it saw:
ranks, weights after each phase, metrics, checkpoints written, collective results. The test compares
them with a single-process reference computed with plain torch.

    python ddp_run.py OUT --scenario full|basic|fail|hang [--strategy ddp] [--devices 2] [--num-nodes 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root: import ember

import ember as pl  # noqa: E402
from ember.callbacks import ModelCheckpoint  # noqa: E402
from ember.loggers import CSVLogger  # noqa: E402
from ember.strategies import DDPStrategy  # noqa: E402

N_TRAIN, N_VAL, GLOBAL_BATCH, LR = 32, 16, 8, 0.1


def data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return TensorDataset(x, x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(n, 1, generator=g))


class Regression(pl.LightningModule):
    def __init__(self, fail_at: int = -1, hang_at: int = -1) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Linear(4, 1)
        self.fail_at, self.hang_at = fail_at, hang_at

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if batch_idx == self.fail_at and self.global_rank == 1:
            print(f"rank 1 raises at {time.time()}", flush=True)
            raise ValueError(f"rank 1 exploded at batch {batch_idx}")
        if batch_idx == self.hang_at and self.global_rank == 1:
            print(f"rank 1 hangs at {time.time()}", flush=True)
            time.sleep(120)  # the others wait in the gradient all-reduce until the process-group timeout
        x, y = batch
        loss = torch.nn.functional.mse_loss(self(x), y)
        rank = float(self.global_rank)
        self.log("train_loss", loss, on_step=True, on_epoch=True, sync_dist=True)
        self.log("rank_mean", rank, on_step=False, on_epoch=True, sync_dist=True)
        self.log("rank_sum", rank, on_step=True, on_epoch=True, reduce_fx="sum", sync_dist=True)
        self.log("rank_max", rank, on_step=False, on_epoch=True, reduce_fx="max", sync_dist=True)
        self.log("rank_min", rank, on_step=False, on_epoch=True, reduce_fx="min", sync_dist=True)
        self.log("weighted", rank, on_step=False, on_epoch=True, batch_size=1 + 2 * self.global_rank, sync_dist=True)
        if self.global_rank == 0:  # logged by one rank only: rank_zero_only skips the sync that would wait for rank 1
            self.log("rank0_only", rank + 7, on_step=False, on_epoch=True, sync_dist=True, rank_zero_only=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self(x), y), sync_dist=True)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return batch[0]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=LR)


class NoSyncOff(DDPStrategy):
    """Synchronises gradients on every micro-batch (to compare with DDP's no_sync)."""

    def no_backward_sync(self, module: Any) -> Any:
        import contextlib

        return contextlib.nullcontext()


def loaders(world_size: int) -> tuple[DataLoader, DataLoader]:
    per_rank = GLOBAL_BATCH // world_size
    return (DataLoader(data(N_TRAIN, 1), batch_size=per_rank),
            DataLoader(data(N_VAL, 2), batch_size=per_rank))


def trainer(args: argparse.Namespace, out: Path, **kwargs: Any) -> pl.Trainer:
    options = dict(accelerator="cpu", devices=args.devices, num_nodes=args.num_nodes, strategy=args.strategy,
                   logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                   num_sanity_val_steps=0, default_root_dir=str(out))
    options.update(kwargs)
    return pl.Trainer(**options)


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def metrics(t: pl.Trainer) -> dict[str, float]:
    return {k: float(v) for k, v in t.callback_metrics.items()}


def comm_counter(counts: list[int]) -> Any:
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    def hook(state, bucket):  # type: ignore[no-untyped-def]  # (DDP checks the annotations: none here)
        counts.append(1)
        return allreduce_hook(state, bucket)

    return hook


def full(args: argparse.Namespace, out: Path, report: dict[str, Any]) -> None:
    """fit with checkpointing and logging, resume, accumulation with/without no_sync, eval, collectives."""
    import ember.checkpoint as trainer_module  # where Strategy.save_checkpoint finds it

    saves: list[str] = []
    real_save = trainer_module._atomic_save
    trainer_module._atomic_save = lambda obj, path: (saves.append(str(path)), real_save(obj, path))[1]

    model = Regression()
    t = trainer(args, out, max_epochs=2, enable_progress_bar=True, enable_checkpointing=True,
                logger=CSVLogger(str(out / "logs")),
                callbacks=[ModelCheckpoint(dirpath=str(out / "ckpt"), save_last=True)])
    train, val = loaders(t.world_size)
    report.update(world_size=t.world_size, global_rank=t.global_rank, local_rank=t.local_rank,
                  node_rank=t.node_rank, num_nodes=t.num_nodes, is_global_zero=t.is_global_zero,
                  num_devices=t.num_devices, strategy=type(t.strategy).__name__)
    t.fit(model, train, val)
    report.update(fit=weights(model), fit_metrics=metrics(t), saves=list(saves),
                  pbar_disabled=t.progress_bar_callback.is_disabled,
                  train_batches=t.num_training_batches, sampler=type(t.train_dataloader.sampler).__name__,
                  best_model_path=t.checkpoint_callback.best_model_path, model_is_module=t.model is model)

    resumed = Regression()
    t = trainer(args, out, max_epochs=3)
    t.fit(resumed, *loaders(t.world_size), ckpt_path=str(out / "ckpt" / "last.ckpt"))
    report.update(resumed=weights(resumed), resumed_epoch=t.current_epoch, resumed_step=t.global_step)

    for name, strategy_cls in (("accumulated", DDPStrategy), ("accumulated_no_sync_off", NoSyncOff)):
        counts: list[int] = []
        model = Regression()
        t = trainer(args, out, max_epochs=1, accumulate_grad_batches=2,
                    strategy=strategy_cls(ddp_comm_hook=comm_counter(counts), timeout=timedelta(seconds=60)))
        t.fit(model, *loaders(t.world_size))
        report[name], report[f"{name}_allreduces"] = weights(model), len(counts)

    model = Regression()
    t = trainer(args, out)
    report["validate"] = t.validate(model, loaders(t.world_size)[1], verbose=False)
    predict_loader = DataLoader(TensorDataset(torch.arange(10.0)), batch_size=2)
    report["predictions"] = torch.cat(t.predict(model, predict_loader)).tolist()

    strategy = t.strategy
    rank = t.global_rank
    report.update(
        gathered=strategy.all_gather(torch.tensor([rank, 10 * rank])).tolist(),
        gathered_dict=model.all_gather({"r": rank})["r"].tolist(),
        broadcast=(strategy.broadcast({"from": rank}), strategy.broadcast(rank, src=1)),
        reduced={op: float(strategy.reduce(torch.tensor(rank + 1.0), reduce_op=op)) for op in
                 ("mean", "sum", "max", "min")},
        decisions=(strategy.reduce_boolean_decision(rank == 0, all=False),
                   strategy.reduce_boolean_decision(rank == 0, all=True)))
    strategy.barrier()
    trainer_module._atomic_save = real_save


def basic(args: argparse.Namespace, out: Path, report: dict[str, Any]) -> None:
    """fit (+ validate): the weights and synced metrics the test compares with one process."""
    model = Regression()
    t = trainer(args, out, max_epochs=2, enable_checkpointing=True,
                callbacks=[ModelCheckpoint(dirpath=str(out / "ckpt"))])
    t.fit(model, *loaders(t.world_size))
    report.update(world_size=t.world_size, global_rank=t.global_rank, node_rank=t.node_rank, fit=weights(model),
                  fit_metrics=metrics(t), state=str(t.state.status), global_step=t.global_step,
                  best_model_path=t.checkpoint_callback.best_model_path, main_pid=os.getpid())
    if args.strategy == "ddp_spawn":  # validate with ddp_fork: both ways of starting workers, one script
        t = trainer(args, out, strategy="ddp_fork")
    report["validate"] = t.validate(model, loaders(t.world_size)[1], verbose=False)
    if args.strategy == "ddp_spawn":  # a worker that raises: its error reaches this process
        try:
            t.fit(Regression(fail_at=2), loaders(t.world_size)[0])
        except Exception as err:  # noqa: BLE001
            report["worker_error"] = f"{type(err).__name__}: {err}"


def failing(args: argparse.Namespace, out: Path, report: dict[str, Any]) -> None:
    model = Regression(fail_at=2) if args.scenario == "fail" else Regression(hang_at=1)
    strategy = DDPStrategy(start_method="popen" if args.strategy == "ddp" else "spawn",
                           timeout=timedelta(seconds=args.timeout))
    t = trainer(args, out, max_epochs=1, strategy=strategy)
    t.fit(model, loaders(2)[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--scenario", default="basic", choices=("full", "basic", "fail", "hang"))
    parser.add_argument("--strategy", default="ddp")
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--num-nodes", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    out = Path(args.out)
    report: dict[str, Any] = {"argv": sys.argv}
    {"full": full, "basic": basic, "fail": failing, "hang": failing}[args.scenario](args, out, report)
    torch.save(report, out / f"proc-{report.get('global_rank', 0)}.pt")


if __name__ == "__main__":
    main()
