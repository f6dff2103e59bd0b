"""Tiny models, data and Trainer settings shared by the behaviour tests (everything lives in memory)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember as pl


def reg_data(n: int = 16, features: int = 4, seed: int = 0) -> TensorDataset:
    """A linear regression problem: ``n`` samples of ``features`` inputs -> one target."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = x.sum(dim=1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=g)
    return TensorDataset(x, y)


def cls_data(n: int = 24, features: int = 4, classes: int = 3, seed: int = 0) -> TensorDataset:
    """A classification problem: ``n`` samples, ``classes`` labels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return TensorDataset(x, y)


def loader(n: int = 16, batch_size: int = 4, shuffle: bool = False, seed: int = 0) -> DataLoader:
    """A DataLoader over :func:`reg_data` (``n // batch_size`` batches when divisible)."""
    return DataLoader(reg_data(n, seed=seed), batch_size=batch_size, shuffle=shuffle)


def reset_parameters(module: nn.Module, seed: int = 0) -> None:
    """Give ``module`` the same initial weights every time, without touching the global RNG."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=g) * 0.5)


class BoringModel(pl.LightningModule):
    """Linear regression: logs ``train_loss`` and ``val_loss``; owns its dataloaders (16 samples, batch 4)."""

    def __init__(self, lr: float = 0.1, n_train: int = 16, n_val: int = 8, batch_size: int = 4) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)
        reset_parameters(self.layer)
        self.lr, self.n_train, self.n_val, self.batch_size = lr, n_train, n_val, batch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.mse_loss(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", F.mse_loss(self(x), y))

    def test_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("test_loss", F.mse_loss(self(x), y))

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        return self(batch[0])

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=self.lr)

    def train_dataloader(self) -> DataLoader:
        return loader(self.n_train, self.batch_size, seed=0)

    def val_dataloader(self) -> DataLoader:
        return loader(self.n_val, self.batch_size, seed=1)

    def test_dataloader(self) -> DataLoader:
        return loader(self.n_val, self.batch_size, seed=2)

    def predict_dataloader(self) -> DataLoader:
        return loader(self.n_val, self.batch_size, seed=3)


class HparamsModel(BoringModel):
    """:class:`BoringModel` that saves its ``__init__`` arguments with ``save_hyperparameters``."""

    def __init__(self, lr: float = 0.1, hidden: int = 3) -> None:
        super().__init__(lr=lr)
        self.save_hyperparameters()
        self.layer = nn.Sequential(nn.Linear(4, hidden), nn.Linear(hidden, 1))
        reset_parameters(self.layer)


def trainer_kwargs(tmp_path: Any, **overrides: Any) -> dict[str, Any]:
    """Quiet, fast Trainer settings (no logger, bar, summary or checkpoints) that ``overrides`` may change."""
    kwargs: dict[str, Any] = dict(accelerator="cpu", devices=1, max_epochs=1, logger=False,
                                  enable_checkpointing=False, enable_progress_bar=False,
                                  enable_model_summary=False, default_root_dir=tmp_path)
    kwargs.update(overrides)
    return kwargs


def make_trainer(tmp_path: Any, **overrides: Any) -> pl.Trainer:
    return pl.Trainer(**trainer_kwargs(tmp_path, **overrides))


def weights(module: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter."""
    return {name: p.detach().clone() for name, p in module.named_parameters()}


class Recorder(pl.Callback):
    """Records (hook name, global_step, batch_idx) for the hooks it overrides."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, Any]] = []

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.calls.append(("train_batch", trainer.global_step, batch_idx))

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.calls.append(("train_epoch", trainer.global_step, trainer.current_epoch))

    def on_validation_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        kind = "sanity_batch" if trainer.sanity_checking else "val_batch"
        self.calls.append((kind, trainer.global_step, batch_idx))

    def count(self, name: str) -> int:
        return sum(1 for call in self.calls if call[0] == name)
