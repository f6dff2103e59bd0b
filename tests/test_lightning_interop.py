"""Checkpoints move both ways between ember and the real PyTorch Lightning 2.6 (installed by the dev extra)."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember

lightning = pytest.importorskip("pytorch_lightning", reason="the dev extra installs pytorch-lightning")


def _module_class(pl):
    class Regressor(pl.LightningModule):
        def __init__(self, hidden: int = 8, lr: float = 0.05) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = nn.Sequential(nn.Linear(4, hidden), nn.Tanh(), nn.Linear(hidden, 1))

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.mse_loss(self.net(x), y)

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)
            return [opt], [torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)]

    return Regressor


def _loader():
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(24, 4, generator=g), torch.randn(24, 1, generator=g)),
                      batch_size=4)


def _trainer(pl, tmp_path, max_epochs):
    return pl.Trainer(max_epochs=max_epochs, logger=False, enable_progress_bar=False, enable_model_summary=False,
                      accelerator="cpu", devices=1, default_root_dir=tmp_path)


def _fit(pl, tmp_path, max_epochs, ckpt_path=None, seed=0):
    torch.manual_seed(seed)
    model = _module_class(pl)()
    trainer = _trainer(pl, tmp_path, max_epochs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, _loader(), ckpt_path=ckpt_path)
    return model, trainer


@pytest.mark.parametrize(("first", "second"), [(lightning, ember), (ember, lightning)])
def test_resume_across_frameworks_matches_uninterrupted(tmp_path, first, second):
    """Fit 2 epochs in one framework, resume to 4 in the other: same weights as 4 epochs straight."""
    reference, _ = _fit(lightning, tmp_path / "ref", 4)
    _, trainer = _fit(first, tmp_path / "a", 2)
    path = trainer.checkpoint_callback.best_model_path
    assert path.endswith("epoch=1-step=12.ckpt")
    resumed, trainer = _fit(second, tmp_path / "b", 4, ckpt_path=path, seed=1)
    assert trainer.global_step == 24 and trainer.current_epoch == 4
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.05 * 0.5**4)
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("writer", "reader"), [(lightning, ember), (ember, lightning)])
def test_load_from_checkpoint_across_frameworks(tmp_path, writer, reader):
    trained, trainer = _fit(writer, tmp_path, 1)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    loaded = _module_class(reader).load_from_checkpoint(path)
    assert loaded.hparams.hidden == 8 and loaded.hparams.lr == 0.05
    for name, value in trained.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value)


def test_ember_checkpoint_has_lightning_layout(tmp_path):
    _, trainer = _fit(ember, tmp_path, 1)
    checkpoint = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)
    reference_keys = set(torch.load(_fit(lightning, tmp_path / "pl", 1)[1].checkpoint_callback.best_model_path,
                                    weights_only=False))
    assert reference_keys <= set(checkpoint)
