"""Tuner: lr_find suggests a sensible learning rate; scale_batch_size finds the memory limit; both leave
the model and trainer as they were."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember as pl
from ember.callbacks import BatchSizeFinder, LearningRateFinder
from ember.tuner import Tuner, _LRFinder
from ember.utilities.exceptions import MisconfigurationException
from tests.helpers import BoringModel, make_trainer, weights


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Regression(BoringModel):
    """A small MLP on a noiseless linear target: 64 samples, one batch (so the loss curve is not noise)."""

    def __init__(self, lr: float = 1e-3) -> None:
        super().__init__(lr=lr, n_train=64, batch_size=64)
        torch.manual_seed(0)
        self.layer = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(self.n_train, 4, generator=g)
        return DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=self.batch_size, shuffle=True)


class MemoryLimited(BoringModel):
    """Raises CUDA's out-of-memory error for batches larger than ``limit`` samples (train and validation)."""

    def __init__(self, limit: int, n: int = 200) -> None:
        super().__init__(n_train=n, n_val=n, batch_size=4)
        self.limit = limit
        self.largest = 0

    def _check(self, batch: Any) -> None:
        if len(batch[0]) > self.limit:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        self.largest = max(self.largest, len(batch[0]))

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        self._check(batch)
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._check(batch)
        super().validation_step(batch, batch_idx)


# -- lr_find -------------------------------------------------------------------------------------
def test_lr_find_suggests_a_sensible_lr_and_restores_everything(tmp_path: Any) -> None:
    model = Regression()
    trainer = make_trainer(tmp_path, max_epochs=3)
    before, rng = weights(model), torch.get_rng_state()
    finder = Tuner(trainer).lr_find(model, min_lr=1e-5, max_lr=10, num_training=40)
    assert isinstance(finder, _LRFinder)
    assert len(finder.results["lr"]) == len(finder.results["loss"]) <= 40
    assert finder.results["lr"] == sorted(finder.results["lr"]) and finder.results["lr"][0] == pytest.approx(1e-5)
    suggestion = finder.suggestion()
    assert 1e-4 <= suggestion <= 1, suggestion
    assert model.lr == suggestion  # update_attr
    assert _same(weights(model), before) and torch.equal(torch.get_rng_state(), rng)
    assert all(p.grad is None for p in model.parameters())
    # the trainer is as it was: a normal fit follows, with every default callback and 3 epochs
    assert trainer.max_steps == -1 and trainer.num_sanity_val_steps == 2 and trainer.callbacks == []
    trainer.fit(model)
    assert trainer.current_epoch == 3 and trainer.global_step == 3


def test_lr_find_then_fit_equals_fit_with_the_same_lr(tmp_path: Any) -> None:
    tuned = Regression()
    finder = Tuner(make_trainer(tmp_path)).lr_find(tuned, num_training=30, update_attr=False)
    assert tuned.lr == 1e-3 and finder is not None
    plain = Regression()
    for model in (tuned, plain):
        torch.manual_seed(1)
        make_trainer(tmp_path, max_epochs=2).fit(model)
    assert _same(weights(tuned), weights(plain))


def test_lr_find_plot_saves_a_png(tmp_path: Any) -> None:
    pytest.importorskip("matplotlib")
    finder = Tuner(make_trainer(tmp_path)).lr_find(Regression(), num_training=40, max_lr=10)
    figure = finder.plot(suggest=True)
    figure.savefig(tmp_path / "lr.png")
    data = (tmp_path / "lr.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000
    assert figure.axes[0].get_xscale() == "log" and len(figure.axes[0].lines) == 2  # the curve and the suggestion


def test_lr_find_early_stops_on_divergence(tmp_path: Any) -> None:
    finder = Tuner(make_trainer(tmp_path)).lr_find(Regression(), min_lr=1e-3, max_lr=1e4, num_training=50,
                                                    update_attr=False)
    assert 5 < len(finder.results["loss"]) < 50
    assert finder.results["loss"][-1] > 4 * min(finder.results["loss"])  # stopped at the first diverged point


def test_lr_find_linear_mode_and_hparams_attribute(tmp_path: Any) -> None:
    class WithHparams(Regression):
        def __init__(self, learning_rate: float = 0.01) -> None:
            super().__init__()
            del self.lr
            self.save_hyperparameters()

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=self.hparams.learning_rate)

    model = WithHparams()
    finder = Tuner(make_trainer(tmp_path)).lr_find(model, mode="linear", min_lr=1e-3, max_lr=0.5, num_training=30)
    lrs = finder.results["lr"]
    assert lrs[1] - lrs[0] == pytest.approx(lrs[2] - lrs[1])
    assert model.hparams.learning_rate == finder.suggestion() != 0.01


def test_lr_find_errors(tmp_path: Any) -> None:
    class NoLr(BoringModel):
        def __init__(self) -> None:
            super().__init__()
            del self.lr

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    tuner = Tuner(make_trainer(tmp_path))
    with pytest.raises(AttributeError, match="learning_rate"):
        tuner.lr_find(NoLr())
    with pytest.raises(MisconfigurationException, match="method='fit'"):
        tuner.lr_find(BoringModel(), method="validate")
    with pytest.raises(ValueError, match="mode"):
        tuner.lr_find(BoringModel(), mode="cubic")


def test_suggestion_needs_points() -> None:
    finder = _LRFinder("exponential", 1e-5, 1.0, 10)
    finder.results = {"lr": [1e-5, 1e-4, 1e-3], "loss": [1.0, 0.9, 0.8]}
    with pytest.warns(UserWarning, match="too few"):
        assert finder.suggestion() is None
    finder.results = {"lr": [1e-4, 1e-3, 1e-2, 1e-1, 1.0], "loss": [1.0, 0.99, 0.5, 0.45, float("nan")]}
    assert finder.suggestion(skip_begin=0, skip_end=0) in (1e-3, 1e-2)  # steepest drop, nan ignored


def test_learning_rate_finder_callback_continues_the_fit_with_the_suggestion(tmp_path: Any) -> None:
    callback = LearningRateFinder(num_training_steps=30, max_lr=10)
    model = Regression()
    trainer = make_trainer(tmp_path, callbacks=[callback], max_epochs=2)
    trainer.fit(model)
    suggestion = callback.optimal_lr.suggestion()
    assert model.lr == suggestion and trainer.optimizers[0].param_groups[0]["lr"] == suggestion
    assert trainer.global_step == 2 and trainer.current_epoch == 2  # the search's steps do not count


# -- scale_batch_size ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode, expected", [("binsearch", 37), ("power", 32)])
def test_scale_batch_size_finds_the_memory_limit(tmp_path: Any, mode: str, expected: int) -> None:
    model = MemoryLimited(limit=37)
    before = weights(model)
    trainer = make_trainer(tmp_path)
    size = Tuner(trainer).scale_batch_size(model, mode=mode, margin=0.0)
    assert size == expected == model.batch_size
    assert _same(weights(model), before)
    trainer.fit(model)  # the trainer works normally afterwards, with the found batch size
    assert model.largest == expected


def test_binsearch_margin_and_hparams(tmp_path: Any) -> None:
    class FromHparams(MemoryLimited):
        def __init__(self, batch_size: int = 4) -> None:
            super().__init__(limit=40)
            del self.batch_size
            self.save_hyperparameters()

        def train_dataloader(self) -> DataLoader:
            return DataLoader(self.train_dataloader_set(), batch_size=self.hparams.batch_size)

        def val_dataloader(self) -> DataLoader:
            return DataLoader(self.train_dataloader_set(), batch_size=self.hparams.batch_size)

        def train_dataloader_set(self) -> TensorDataset:
            return TensorDataset(torch.randn(200, 4), torch.randn(200, 1))

    model = FromHparams()
    size = Tuner(make_trainer(tmp_path)).scale_batch_size(model, mode="binsearch")
    assert size == int(40 * 0.95) == model.hparams.batch_size  # Lightning's default 5% margin


def test_scale_batch_size_stops_at_the_dataset_size_and_max_val(tmp_path: Any) -> None:
    tuner = Tuner(make_trainer(tmp_path))
    assert tuner.scale_batch_size(MemoryLimited(limit=10_000, n=50), mode="power") == 64  # >= 50 samples: stop
    assert tuner.scale_batch_size(MemoryLimited(limit=10_000, n=500), mode="power", max_val=20) == 20


def test_scale_batch_size_for_validation(tmp_path: Any) -> None:
    model = MemoryLimited(limit=21)
    assert Tuner(make_trainer(tmp_path)).scale_batch_size(model, method="validate", mode="binsearch",
                                                           margin=0) == 21


def test_scale_batch_size_reraises_other_errors_and_refuses_direct_dataloaders(tmp_path: Any) -> None:
    class Broken(MemoryLimited):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            raise RuntimeError("shape mismatch")

    tuner = Tuner(make_trainer(tmp_path))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        tuner.scale_batch_size(Broken(limit=8))
    with pytest.raises(MisconfigurationException, match="passed directly"):
        tuner.scale_batch_size(BoringModel(), train_dataloaders=DataLoader(TensorDataset(torch.randn(4, 4))))
    with pytest.raises(RuntimeError, match="no batch size"):
        tuner.scale_batch_size(MemoryLimited(limit=0), init_val=2)


def test_scale_batch_size_of_a_datamodule(tmp_path: Any) -> None:
    class LimitedData(pl.LightningDataModule):
        def __init__(self) -> None:
            super().__init__()
            self.batch_size = 2

        def train_dataloader(self) -> DataLoader:
            return DataLoader(TensorDataset(torch.randn(100, 4), torch.randn(100, 1)), batch_size=self.batch_size)

    class Limited(MemoryLimited):
        def train_dataloader(self) -> None:  # the datamodule's loader is used
            raise AssertionError("unused")

        def val_dataloader(self) -> DataLoader:
            return DataLoader(TensorDataset(torch.randn(8, 4), torch.randn(8, 1)), batch_size=4)

    data = LimitedData()
    model = Limited(limit=25)
    del model.batch_size
    size = Tuner(make_trainer(tmp_path)).scale_batch_size(model, datamodule=data, mode="binsearch", margin=0)
    assert size == data.batch_size == 25


def test_batch_size_finder_callback(tmp_path: Any) -> None:
    callback = BatchSizeFinder(mode="binsearch", margin=0.0, steps_per_trial=1)
    model = MemoryLimited(limit=13)
    trainer = make_trainer(tmp_path, callbacks=[callback], max_epochs=1)
    trainer.fit(model)
    assert callback.optimal_batch_size == model.batch_size == 13 == model.largest
    assert trainer.global_step == 16  # ceil(200 / 13): the epoch ran with the found size


def test_oom_detection() -> None:
    from ember.tuner import _is_oom_error

    assert _is_oom_error(RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"))
    assert _is_oom_error(torch.cuda.OutOfMemoryError("whatever"))
    assert _is_oom_error(RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory"))
    assert not _is_oom_error(RuntimeError("size mismatch"))
    assert not _is_oom_error(ValueError("out of memory"))


def test_tuner_skips_under_fast_dev_run(tmp_path: Any) -> None:
    trainer = pl.Trainer(fast_dev_run=True, default_root_dir=tmp_path, enable_progress_bar=False,
                         enable_model_summary=False)
    with pytest.warns(UserWarning, match="fast_dev_run"):
        assert Tuner(trainer).lr_find(BoringModel()) is None
