"""LightningModule features, public import paths, trainer state, precision, determinism and seeding."""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

import ember as pl
from ember.utilities.exceptions import MisconfigurationException
from tests.helpers import BoringModel, loader, make_trainer, reg_data, weights


# -- save_hyperparameters ---------------------------------------------------------------------------
class _All(pl.LightningModule):
    def __init__(self, lr: float = 0.1, hidden: int = 3, net: Any = None) -> None:
        super().__init__()
        self.save_hyperparameters()


class _Ignore(pl.LightningModule):
    def __init__(self, lr: float = 0.1, hidden: int = 3, net: Any = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])


class _Selected(pl.LightningModule):
    def __init__(self, lr: float = 0.1, hidden: int = 3, net: Any = None) -> None:
        super().__init__()
        self.save_hyperparameters("lr", "net")


class _Kwargs(pl.LightningModule):
    def __init__(self, lr: float = 0.1, **kwargs: Any) -> None:
        super().__init__()
        self.save_hyperparameters()


class _Parent(pl.LightningModule):
    def __init__(self, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()


class _Child(_Parent):
    def __init__(self, lr: float = 0.2, extra: int = 5) -> None:
        super().__init__(lr)


@pytest.mark.parametrize("make, expected", [
    (lambda: _All(hidden=4), {"lr": 0.1, "hidden": 4, "net": None}),
    (lambda: _Ignore(net="x"), {"lr": 0.1, "hidden": 3}),
    (lambda: _Selected(net="y"), {"lr": 0.1, "net": "y"}),
    (lambda: _Kwargs(0.3, foo=1, bar="z"), {"lr": 0.3, "foo": 1, "bar": "z"}),
    (lambda: _Child(extra=9), {"lr": 0.2, "extra": 9}),  # the subclass's arguments too, as in Lightning
], ids=["all", "ignore", "selected", "kwargs", "subclass"])
def test_save_hyperparameters(make: Any, expected: dict[str, Any]) -> None:
    assert dict(make().hparams) == expected


def test_save_hyperparameters_from_dict_and_unknown_name() -> None:
    class FromDict(pl.LightningModule):
        def __init__(self, cfg: dict) -> None:
            super().__init__()
            self.save_hyperparameters(cfg)

    assert dict(FromDict({"a": 1, "b": [2]}).hparams) == {"a": 1, "b": [2]}

    class Unknown(pl.LightningModule):
        def __init__(self, lr: float = 0.1) -> None:
            super().__init__()
            self.save_hyperparameters("lr", "nope")

    with pytest.raises(ValueError, match=r"\['nope'\] are not arguments of __init__"):
        Unknown()


def test_hparams_attribute_access() -> None:
    model = _All(lr=0.5)
    assert model.hparams.lr == 0.5 and model.hparams["hidden"] == 3
    model.hparams.lr = 0.7
    assert model.hparams["lr"] == 0.7
    assert model.hparams_initial.lr == 0.5  # the saved copy does not follow later edits
    with pytest.raises(AttributeError, match=r"no 'nope'.*known.*hidden"):
        model.hparams.nope  # noqa: B018
    assert dict(BoringModel().hparams) == {}


def test_load_from_checkpoint_for_kwargs_and_subclass(tmp_path: Any) -> None:
    class Net(_Child):
        def __init__(self, lr: float = 0.2, extra: int = 5) -> None:
            super().__init__(lr, extra)
            self.layer = nn.Linear(4, extra)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return self.layer(batch[0]).sum()

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    trainer = make_trainer(tmp_path)
    trainer.fit(Net(extra=2), loader())
    trainer.save_checkpoint(tmp_path / "net.ckpt")
    loaded = Net.load_from_checkpoint(tmp_path / "net.ckpt")
    assert loaded.layer.out_features == 2 and loaded.hparams.extra == 2


# -- module properties and helpers ------------------------------------------------------------------
def test_device_dtype_print_and_trainer(tmp_path: Any, capsys: Any) -> None:
    seen: dict[str, Any] = {}

    class Inspect(BoringModel):
        def on_train_start(self) -> None:
            seen["device"], seen["dtype"] = self.device, self.dtype
            seen["same"] = self.trainer.lightning_module is self and self.trainer.model is self
            self.print("hello from", self.current_epoch)

    model = Inspect()
    trainer = make_trainer(tmp_path)
    trainer.fit(model)
    assert seen == {"device": torch.device("cpu"), "dtype": torch.float32, "same": True}
    assert "hello from 0" in capsys.readouterr().out
    assert model.trainer is trainer and trainer.lightning_module is model


def test_freeze_unfreeze() -> None:
    model = BoringModel()
    model.freeze()
    assert not model.training and all(not p.requires_grad for p in model.parameters())
    model.unfreeze()
    assert model.training and all(p.requires_grad for p in model.parameters())


def test_global_step_and_epoch_on_module(tmp_path: Any) -> None:
    seen: list[tuple[int, int]] = []

    class Counting(BoringModel):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            seen.append((self.current_epoch, self.global_step))
            return super().training_step(batch, batch_idx)

    make_trainer(tmp_path, max_epochs=2, limit_train_batches=2).fit(Counting())
    assert seen == [(0, 0), (0, 1), (1, 2), (1, 3)]


def test_model_is_in_train_mode_during_training_and_eval_during_validation(tmp_path: Any) -> None:
    modes: list[tuple[str, bool]] = []

    class Modes(BoringModel):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            modes.append(("train", self.training))
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            modes.append(("val", self.training))

    model = Modes()
    make_trainer(tmp_path, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=1).fit(model)
    assert modes == [("val", False), ("train", True), ("val", False)]
    assert model.training


@pytest.mark.parametrize("override", [False, True])
def test_evaluation_restores_submodule_modes_unless_the_hook_is_overridden(tmp_path: Any, override: bool) -> None:
    """As in Lightning: a frozen (eval-mode) submodule stays frozen after validation and test; an override of
    ``on_validation_model_train``/``on_test_model_train`` replaces that restore (here: the default's model.train())."""
    frozen_in_training: list[bool] = []

    class Frozen(BoringModel):
        def __init__(self) -> None:
            super().__init__()
            self.frozen = nn.Dropout(0.5)

        def on_fit_start(self) -> None:
            self.frozen.eval()

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            frozen_in_training.append(self.frozen.training)
            return super().training_step(batch, batch_idx)

    class Overridden(Frozen):
        def on_validation_model_train(self) -> None:
            super().on_validation_model_train()

        def on_test_model_train(self) -> None:
            super().on_test_model_train()

    model = Overridden() if override else Frozen()
    trainer = make_trainer(tmp_path, max_epochs=2, limit_train_batches=1, limit_val_batches=1)
    trainer.fit(model)  # (the sanity check's validation comes first)
    assert frozen_in_training == [override, override]
    model.frozen.eval()
    trainer.test(model)
    assert model.training and model.frozen.training is override


# -- trainer.state ------------------------------------------------------------------------------------
def test_trainer_state_during_hooks(tmp_path: Any) -> None:
    from ember.trainer.states import RunningStage, TrainerFn, TrainerStatus

    seen: list[tuple[str, Any, Any, Any]] = []

    class States(pl.Callback):
        def _record(self, hook: str, trainer: Any) -> None:
            seen.append((hook, trainer.state.fn, trainer.state.stage, trainer.state.status))

        def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
            self._record(f"setup:{stage}", trainer)

        def on_sanity_check_start(self, trainer: Any, pl_module: Any) -> None:
            self._record("sanity", trainer)

        def on_train_batch_start(self, trainer: Any, *args: Any) -> None:
            self._record("train_batch", trainer)

        def on_validation_batch_start(self, trainer: Any, *args: Any) -> None:
            self._record("val_batch", trainer)

        def on_test_start(self, trainer: Any, pl_module: Any) -> None:
            self._record("test", trainer)

        def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
            self._record("predict", trainer)

    trainer = make_trainer(tmp_path, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=1,
                           callbacks=[States()])
    assert trainer.state.status == TrainerStatus.INITIALIZING and trainer.state.fn is None
    model = BoringModel()
    trainer.fit(model)
    assert trainer.state.status == TrainerStatus.FINISHED and trainer.state.finished
    assert trainer.state.fn == TrainerFn.FITTING and trainer.state.stage is None
    trainer.test(model, verbose=False)
    trainer.predict(model)
    running = TrainerStatus.RUNNING
    assert seen == [
        ("setup:fit", TrainerFn.FITTING, RunningStage.TRAINING, running),
        ("sanity", TrainerFn.FITTING, RunningStage.SANITY_CHECKING, running),
        ("val_batch", TrainerFn.FITTING, RunningStage.SANITY_CHECKING, running),
        ("train_batch", TrainerFn.FITTING, RunningStage.TRAINING, running),
        ("val_batch", TrainerFn.FITTING, RunningStage.VALIDATING, running),
        ("setup:test", TrainerFn.TESTING, RunningStage.TESTING, running),
        ("test", TrainerFn.TESTING, RunningStage.TESTING, running),
        ("setup:predict", TrainerFn.PREDICTING, RunningStage.PREDICTING, running),
        ("predict", TrainerFn.PREDICTING, RunningStage.PREDICTING, running),
    ]
    assert TrainerFn.FITTING == "fit" and RunningStage.SANITY_CHECKING == "sanity_check"


def test_interrupted_status(tmp_path: Any) -> None:
    class Boom(BoringModel):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            raise KeyError("boom")

    trainer = make_trainer(tmp_path)
    with pytest.raises(KeyError, match="boom"):
        trainer.fit(Boom())
    assert trainer.interrupted and trainer.state.status == "interrupted"


# -- public import paths ------------------------------------------------------------------------------
def test_lightning_import_paths() -> None:
    from ember.callbacks import Callback, EarlyStopping, ModelCheckpoint, ModelSummary, TQDMProgressBar
    from ember.loggers import CSVLogger, Logger
    from ember.trainer.states import RunningStage, TrainerFn
    from ember.utilities import rank_zero_info, rank_zero_only, rank_zero_warn
    from ember.utilities.exceptions import MisconfigurationException as Misconf

    assert Callback is pl.Callback
    assert issubclass(CSVLogger, Logger)
    for cls in (EarlyStopping, ModelCheckpoint, ModelSummary, TQDMProgressBar):
        assert issubclass(cls, Callback)
    assert issubclass(Misconf, Exception) and Misconf is MisconfigurationException
    assert {fn.value for fn in TrainerFn} == {"fit", "validate", "test", "predict"}
    assert {stage.value for stage in RunningStage} == {"train", "sanity_check", "validate", "test", "predict"}
    assert callable(rank_zero_info) and callable(rank_zero_warn)
    assert pl.LightningDataModule and pl.seed_everything and pl.Trainer


def test_rank_zero_only(monkeypatch: Any) -> None:
    from ember.utilities import rank_zero_only

    @rank_zero_only
    def answer() -> int:
        return 42

    assert answer() == 42
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    assert answer() is None


# -- precision ----------------------------------------------------------------------------------------
class _DtypeProbe(BoringModel):
    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, Any] = {}

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        x, y = batch
        out = self(x)
        self.seen.update(param=self.layer.weight.dtype, input=x.dtype, output=out.dtype,
                         autocast=torch.is_autocast_enabled("cpu"))
        return F.mse_loss(out.float(), y.float())


@pytest.mark.parametrize("precision, param, inp, out, autocast", [
    ("64-true", torch.float64, torch.float64, torch.float64, False),
    ("bf16-true", torch.bfloat16, torch.bfloat16, torch.bfloat16, False),
    ("bf16-mixed", torch.float32, torch.float32, torch.bfloat16, True),
    ("32-true", torch.float32, torch.float32, torch.float32, False),
])
def test_precision(tmp_path: Any, precision: str, param: torch.dtype, inp: torch.dtype, out: torch.dtype,
                   autocast: bool) -> None:
    model = _DtypeProbe()
    before = weights(model)
    trainer = make_trainer(tmp_path, precision=precision, limit_val_batches=0)
    trainer.fit(model)
    assert model.seen == {"param": param, "input": inp, "output": out, "autocast": autocast}
    assert model.layer.weight.dtype == param
    assert not torch.equal(model.layer.weight.float(), before["layer.weight"])  # it trained
    assert torch.get_default_dtype() == torch.float32  # restored after the run


def test_bf16_mixed_predictions_and_float_weights(tmp_path: Any) -> None:
    model = BoringModel()
    trainer = make_trainer(tmp_path, precision="bf16-mixed")
    predictions = trainer.predict(model)
    assert predictions[0].dtype == torch.bfloat16
    assert model.layer.weight.dtype == torch.float32


# -- determinism, inference mode, anomaly detection ---------------------------------------------------
def test_deterministic(tmp_path: Any) -> None:
    previous = torch.are_deterministic_algorithms_enabled()
    try:
        trainer = make_trainer(tmp_path, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        trainer.fit(BoringModel())
        make_trainer(tmp_path, deterministic=False)
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(previous)


@pytest.mark.parametrize("inference_mode", [True, False])
def test_inference_mode(tmp_path: Any, inference_mode: bool) -> None:
    seen: list[tuple[str, bool, bool]] = []

    class Probe(BoringModel):
        def validation_step(self, batch: Any, batch_idx: int) -> None:
            seen.append((self.trainer.state.fn.value, torch.is_inference_mode_enabled(), torch.is_grad_enabled()))

        def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
            seen.append(("predict", torch.is_inference_mode_enabled(), torch.is_grad_enabled()))
            return None

    model = Probe()
    trainer = make_trainer(tmp_path, inference_mode=inference_mode, limit_val_batches=1, num_sanity_val_steps=0)
    trainer.fit(model)
    trainer.validate(model, verbose=False)
    trainer.predict(model, return_predictions=False)
    assert seen[0] == ("fit", False, False)  # validation inside fit: no_grad (Lightning does the same)
    assert seen[1] == ("validate", inference_mode, False)
    assert seen[-1] == ("predict", inference_mode, False)


@pytest.mark.filterwarnings("ignore:Error detected in SqrtBackward0")
def test_detect_anomaly(tmp_path: Any) -> None:
    flags: list[bool] = []

    class Probe(BoringModel):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            flags.append(torch.is_anomaly_enabled())
            return super().training_step(batch, batch_idx)

    make_trainer(tmp_path, detect_anomaly=True, limit_train_batches=1).fit(Probe())
    make_trainer(tmp_path, limit_train_batches=1).fit(Probe())
    assert flags == [True, False]

    class NaNLoss(BoringModel):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return torch.sqrt(self(batch[0]).sum() * 0 - 1)  # sqrt(-1): NaN in the backward

    with pytest.raises(RuntimeError, match="nan|NaN"):
        make_trainer(tmp_path, detect_anomaly=True, limit_train_batches=1).fit(NaNLoss())


# -- seeding ------------------------------------------------------------------------------------------
class _Random(BoringModel):
    def __init__(self) -> None:
        super().__init__()
        self.dropout = nn.Dropout(0.5)
        self.order: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(self.dropout(x))

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        self.order.append(batch[0][:, 0].clone())
        return super().training_step(batch, batch_idx)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(reg_data(16), batch_size=4, shuffle=True, num_workers=0)


def test_seed_everything_makes_runs_identical(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    monkeypatch.delenv("PL_SEED_WORKERS", raising=False)
    runs = []
    for _ in range(2):
        assert pl.seed_everything(42, workers=True) == 42
        model = _Random()
        torch.nn.init.normal_(model.layer.weight)  # uses the seeded global RNG
        make_trainer(tmp_path, max_epochs=2, limit_val_batches=0).fit(model)
        runs.append((model.order, weights(model)))
    assert os.environ["PL_GLOBAL_SEED"] == "42" and os.environ["PL_SEED_WORKERS"] == "1"
    (order_a, weights_a), (order_b, weights_b) = runs
    assert all(torch.equal(a, b) for a, b in zip(order_a, order_b))
    assert not torch.equal(order_a[0], order_a[4])  # shuffled differently in each epoch
    for name, value in weights_a.items():
        assert torch.equal(weights_b[name], value)

    pl.seed_everything(7)
    model = _Random()
    torch.nn.init.normal_(model.layer.weight)
    make_trainer(tmp_path, max_epochs=2, limit_val_batches=0).fit(model)
    assert not torch.equal(model.order[0], order_a[0]) or not torch.equal(model.order[1], order_a[1])
    assert os.environ["PL_SEED_WORKERS"] == "0"


def test_seed_everything_from_environment(monkeypatch: Any) -> None:
    monkeypatch.setenv("PL_GLOBAL_SEED", "123")
    assert pl.seed_everything() == 123
    first = torch.rand(2)
    torch.manual_seed(123)
    assert torch.equal(first, torch.rand(2))


# -- barebones ----------------------------------------------------------------------------------------
def test_barebones(tmp_path: Any) -> None:
    trainer = pl.Trainer(barebones=True, max_epochs=1, default_root_dir=tmp_path)
    assert trainer.callbacks == [] and trainer.loggers == []
    assert trainer.checkpoint_callback is None and trainer.progress_bar_callback is None
    model = BoringModel()
    with pytest.raises(MisconfigurationException, match=r"self.log\(\).*barebones=True"):
        trainer.fit(model)

    class Silent(BoringModel):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            return F.mse_loss(self(x), y)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            pass

    trainer = pl.Trainer(barebones=True, max_epochs=2, default_root_dir=tmp_path)
    trainer.fit(Silent())
    assert trainer.global_step == 8
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_submodules_reachable_as_attributes_like_lightning() -> None:
    import ember as pl

    assert pl.loggers.CSVLogger is not None and pl.callbacks.ModelCheckpoint is not None
    assert pl.tuner.Tuner is not None and pl.core.LightningModule is pl.LightningModule
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        pl.nope  # noqa: B018
