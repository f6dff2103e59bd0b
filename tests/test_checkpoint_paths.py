"""ckpt_path values ("last", "hpc", "auto", fsspec URLs), OnExceptionCheckpoint and EMBER_AUTO_RESUME."""

from __future__ import annotations

import os

import fsspec
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember as pl
from ember.callbacks import ModelCheckpoint, OnExceptionCheckpoint


class _Model(pl.LightningModule):
    def __init__(self, fail_at_step: int = -1) -> None:
        super().__init__()
        self.fail_at_step = fail_at_step
        self.layer = nn.Linear(3, 1)

    def training_step(self, batch, batch_idx):
        if self.global_step == self.fail_at_step:
            raise RuntimeError("boom")
        x, y = batch
        return F.mse_loss(self.layer(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader():
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(12, 3, generator=g), torch.randn(12, 1, generator=g)), batch_size=4)


def _trainer(tmp_path, max_epochs=2, **kwargs):
    kwargs.setdefault("logger", False)
    return pl.Trainer(max_epochs=max_epochs, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=tmp_path, **kwargs)


def test_on_exception_checkpoint_saves_last_good_state(tmp_path):
    callback = OnExceptionCheckpoint(tmp_path / "crash")
    trainer = _trainer(tmp_path, callbacks=[callback])
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(_Model(fail_at_step=4), _loader())
    checkpoint = torch.load(callback.ckpt_path, weights_only=True)
    assert checkpoint["global_step"] == 4
    resumed = _trainer(tmp_path, max_epochs=3)
    resumed.fit(_Model(), _loader(), ckpt_path=callback.ckpt_path)
    assert resumed.global_step == 9


def test_on_exception_checkpoint_rejects_path_as_filename(tmp_path):
    with pytest.raises(ValueError, match="plain file name"):
        OnExceptionCheckpoint(tmp_path, filename="a/b")


def test_ckpt_path_last_resumes_from_newest_last_checkpoint(tmp_path):
    trainer = _trainer(tmp_path, callbacks=[ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)])
    trainer.fit(_Model(), _loader())
    fresh = _trainer(tmp_path, max_epochs=3, callbacks=[ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)])
    fresh.fit(_Model(), _loader())  # no ckpt_path: starts over
    assert fresh.global_step == 9
    again = _trainer(tmp_path, max_epochs=4, callbacks=[ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)])
    again.fit(_Model(), _loader(), ckpt_path="last")
    # the second run found last.ckpt taken and wrote last-v1.ckpt (as Lightning does); "last" is the newest
    assert again.ckpt_path == os.path.join(tmp_path, "ck", "last-v1.ckpt")
    assert again.global_step == 12


def test_ckpt_path_last_without_checkpoint_warns_and_starts_fresh(tmp_path):
    trainer = _trainer(tmp_path)
    with pytest.warns(UserWarning, match="no last checkpoint"):
        trainer.fit(_Model(), _loader(), ckpt_path="last")
    assert trainer.global_step == 6


def test_ckpt_path_hpc_and_auto(tmp_path):
    trainer = _trainer(tmp_path)
    with pytest.raises(ValueError, match="hpc_ckpt_N"):
        trainer.fit(_Model(), _loader(), ckpt_path="hpc")
    first = _trainer(tmp_path)
    first.fit(_Model(), _loader())
    first.save_checkpoint(tmp_path / "hpc_ckpt_1.ckpt")
    resumed = _trainer(tmp_path, max_epochs=3)
    resumed.fit(_Model(), _loader(), ckpt_path="hpc")
    assert resumed.global_step == 9 and resumed.ckpt_path.endswith("hpc_ckpt_1.ckpt")
    auto = _trainer(tmp_path, max_epochs=4)
    auto.fit(_Model(), _loader(), ckpt_path="auto")  # newest *.ckpt under default_root_dir
    assert auto.global_step == 12


def test_auto_resume_environment_switch(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_AUTO_RESUME", "1")
    first = _trainer(tmp_path)
    first.fit(_Model(), _loader())  # nothing to resume yet: trains from scratch
    assert first.ckpt_path is None and first.global_step == 6
    second = _trainer(tmp_path, max_epochs=3)
    second.fit(_Model(), _loader())
    assert second.ckpt_path is not None and second.global_step == 9


def test_checkpoints_on_fsspec_memory_filesystem(tmp_path):
    callback = ModelCheckpoint(dirpath="memory://ember-test/ckpts", save_last=True)
    trainer = _trainer(tmp_path, callbacks=[callback])
    trainer.fit(_Model(), _loader())
    fs = fsspec.filesystem("memory")
    names = sorted(os.path.basename(p) for p in fs.ls("/ember-test/ckpts", detail=False))
    assert names == ["epoch=1-step=6.ckpt", "last.ckpt"]
    model = _Model.load_from_checkpoint("memory://ember-test/ckpts/epoch=1-step=6.ckpt")
    assert torch.equal(model.layer.weight, trainer.lightning_module.layer.weight)
    resumed = _trainer(tmp_path, max_epochs=3)
    resumed.fit(_Model(), _loader(), ckpt_path="memory://ember-test/ckpts/last.ckpt")
    assert resumed.global_step == 9
