"""Exact resume: "train, save at any point, resume" gives bit-identical results to the uninterrupted run."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember as pl


class _Net(pl.LightningModule):
    def __init__(self, accumulate_scheduler: bool = True) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self.net(x), y))

    def on_train_start(self):
        # draws from the RNG the shuffle uses, between creating the first epoch's iterator and its first batch
        torch.rand(3)

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.2, momentum=0.9)
        step = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.8)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5)
        return [opt], [{"scheduler": step, "interval": "step"},
                       {"scheduler": plateau, "monitor": "val_loss", "interval": "epoch"}]


class _SaveEverywhere(pl.Callback):
    """Saves a checkpoint after every batch, every validation and every epoch end."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = dirpath

    def _save(self, trainer, name: str) -> None:
        trainer.save_checkpoint(os.path.join(self.dirpath, f"{name}.ckpt"))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._save(trainer, f"batch{trainer._progress.total_batch_idx}")

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self._save(trainer, f"val{trainer._progress.total_batch_idx}")

    def on_train_epoch_end(self, trainer, pl_module):
        self._save(trainer, f"epoch{trainer.current_epoch}")


def _data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g))


def _run(tmp_path, ckpt_path=None, save_dir=None, max_epochs=3):
    pl.seed_everything(7, verbose=False)
    model = _Net()
    callbacks = [_SaveEverywhere(save_dir)] if save_dir else []
    trainer = pl.Trainer(max_epochs=max_epochs, accumulate_grad_batches=3, val_check_interval=0.5,
                         limit_val_batches=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks,
                         default_root_dir=tmp_path)
    train = DataLoader(_data(40, 1), batch_size=4, shuffle=True)  # 10 batches per epoch
    val = DataLoader(_data(16, 2), batch_size=4)
    trainer.fit(model, train, val, ckpt_path=ckpt_path)
    after = (torch.rand(1).item(), trainer.optimizers[0].state_dict())
    return model, trainer, after


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    saves = tmp / "saves"
    saves.mkdir()
    model, trainer, after = _run(tmp, save_dir=str(saves))
    return {"weights": {k: v.clone() for k, v in model.state_dict().items()}, "step": trainer.global_step,
            "epoch": trainer.current_epoch, "after": after, "saves": saves,
            "metrics": {k: v.clone() for k, v in trainer.callback_metrics.items()}}


# cut points: mid accumulation window, window boundary, just before/after a validation, last batch of an
# epoch, inside validation, inside on_train_epoch_end, in the last epoch
@pytest.mark.parametrize("cut", ["batch1", "batch3", "batch5", "batch10", "batch14", "val5", "val10",
                                 "epoch0", "epoch1", "batch27"])
def test_resume_reproduces_uninterrupted_run(tmp_path, reference, cut):
    ckpt = reference["saves"] / f"{cut}.ckpt"
    assert ckpt.exists(), sorted(p.name for p in reference["saves"].iterdir())
    model, trainer, after = _run(tmp_path, ckpt_path=str(ckpt))
    for name, value in reference["weights"].items():
        assert torch.equal(model.state_dict()[name], value), f"{name} differs after resuming from {cut}"
    assert trainer.global_step == reference["step"]
    assert trainer.current_epoch == reference["epoch"]
    assert after[0] == reference["after"][0], "the random state after fit differs"
    assert set(trainer.callback_metrics) == set(reference["metrics"])
    for key, value in reference["metrics"].items():
        assert torch.equal(trainer.callback_metrics[key], value), key


def test_checkpoint_loads_with_weights_only(reference):
    checkpoint = torch.load(reference["saves"] / "batch5.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 1 and checkpoint["epoch"] == 0
    assert checkpoint["loops"]["fit_loop"]["state_dict"]["ember"]["progress"]["batch_idx"] == 5
    assert "grads" in checkpoint["loops"]["fit_loop"]["state_dict"]["ember"]  # mid accumulation window
