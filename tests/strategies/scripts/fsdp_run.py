"""An FSDP run that tests/strategies/test_fsdp.py starts as a real script (python, relaunched for rank 1).

Each rank writes ``<out>/proc-<global rank>.pt`` with the full (gathered) weights after each phase and the
checkpoints it saw; the test compares them with one process in plain torch.

    python fsdp_run.py OUT
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root: import ember
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ddp_run import GLOBAL_BATCH, LR, N_TRAIN, data

import ember as pl
from ember.callbacks import ModelCheckpoint
from ember.strategies import FSDPStrategy


class MLP(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        self.param_types: list[str] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self(x).float(), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        self.param_types = sorted({type(p).__name__ for p in self.parameters()})  # sharded: DTensor
        return torch.optim.SGD(self.parameters(), lr=LR, momentum=0.9)  # momentum: optimizer state to restore


def full_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
    )

    return {k: v.detach().clone() for k, v in
            get_model_state_dict(model, options=StateDictOptions(full_state_dict=True)).items()}


def fit(out: Path, epochs: int, strategy: Any, ckpt_path: Any = None, callbacks: Any = (), **kwargs: Any) -> Any:
    model = MLP()
    t = pl.Trainer(accelerator="cpu", devices=2, strategy=strategy, max_epochs=epochs, logger=False,
                   enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                   enable_checkpointing=bool(callbacks), callbacks=list(callbacks), default_root_dir=str(out), **kwargs)
    t.fit(model, DataLoader(data(N_TRAIN, 1), batch_size=GLOBAL_BATCH // 2), ckpt_path=ckpt_path)
    return t, model


def main() -> None:
    import ember.checkpoint as checkpoint_module

    out = Path(sys.argv[1])
    saves: list[str] = []
    real_save = checkpoint_module._atomic_save
    checkpoint_module._atomic_save = lambda obj, path: (saves.append(os.path.basename(path)), real_save(obj, path))[1]
    report: dict[str, Any] = {}
    policy = {torch.nn.Linear}
    for kind in ("full", "sharded"):
        t, model = fit(out, 2, FSDPStrategy(auto_wrap_policy=policy, activation_checkpointing_policy=policy,
                                            state_dict_type=kind),
                       callbacks=[ModelCheckpoint(dirpath=str(out / kind), save_last=True)])
        report[kind] = full_weights(model)
        report["global_rank"], report["world_size"] = t.global_rank, t.world_size
        report["param_types"] = model.param_types
        t, model = fit(out, 3, FSDPStrategy(auto_wrap_policy=policy, state_dict_type=kind),
                       ckpt_path=str(out / kind / "last.ckpt"))
        report[f"{kind}_resumed"] = (full_weights(model), t.current_epoch, t.global_step)
    report["saves"] = saves
    t, model = fit(out, 1, FSDPStrategy(auto_wrap_policy=policy), accumulate_grad_batches=2)
    report["accumulated"] = full_weights(model)
    t, model = fit(out, 1, "fsdp_cpu_offload", precision="bf16-mixed")
    report["bf16_offload"] = (full_weights(model), type(t.strategy).__name__, t.precision)
    torch.save(report, out / f"proc-{report['global_rank']}.pt")


if __name__ == "__main__":
    main()
