"""Train a small network on scikit-learn's bundled digits data set: ``python -m ember.demo``.

Uses what a Lightning user would write: a LightningModule, a LightningDataModule, the default progress
bar, CSV logger and checkpointing, then ``trainer.test`` on the best checkpoint.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember as pl
from ember.callbacks import EarlyStopping, ModelCheckpoint


class DigitsDataModule(pl.LightningDataModule):
    """8x8 handwritten digits (1797 images), split 60/20/20 with a fixed seed."""

    def __init__(self, batch_size: int = 64) -> None:
        super().__init__()
        self.save_hyperparameters()

    def setup(self, stage: str) -> None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
        y = torch.tensor(digits.target, dtype=torch.long)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        n_train, n_val = int(0.6 * len(x)), int(0.2 * len(x))
        parts = order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]
        self.train_set, self.val_set, self.test_set = (TensorDataset(x[i], y[i]) for i in parts)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=256)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=256)


class DigitsClassifier(pl.LightningModule):
    """A two-layer MLP with dropout."""

    def __init__(self, hidden: int = 128, lr: float = 3e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.log(f"{stage}_loss", loss, prog_bar=True)
        if stage != "train":
            self.log(f"{stage}_acc", (logits.argmax(-1) == y).float().mean(), prog_bar=True)
        return loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
        return {"optimizer": optimizer, "lr_scheduler": scheduler, "monitor": "val_loss"}


def main(argv: list[str] | None = None) -> float:
    """Train, test the best checkpoint, print and return the test accuracy."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--root-dir", default=None, help="where logs and checkpoints go (default: a temp dir)")
    args = parser.parse_args(argv)
    root = args.root_dir or tempfile.mkdtemp(prefix="ember-demo-")
    pl.seed_everything(0)
    trainer = pl.Trainer(
        max_epochs=args.max_epochs,
        default_root_dir=root,
        callbacks=[ModelCheckpoint(monitor="val_acc", mode="max"),
                   EarlyStopping(monitor="val_acc", mode="max", patience=6)],
    )
    datamodule = DigitsDataModule()
    trainer.fit(DigitsClassifier(), datamodule=datamodule)
    (result,) = trainer.test(ckpt_path="best", datamodule=datamodule)
    print(f"best checkpoint: {trainer.checkpoint_callback.best_model_path}")
    print(f"logs: {trainer.log_dir}")
    print(f"test accuracy: {result['test_acc']:.4f}")
    return result["test_acc"]


if __name__ == "__main__":
    main()
