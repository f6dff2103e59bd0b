"""Trainer arguments and bad input: every misuse raises an exception that names the problem and the fix."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import ember as pl
from ember.trainer.trainer import _LATER_STRATEGIES
from ember.utilities.exceptions import MisconfigurationException
from tests.helpers import BoringModel, loader, make_trainer


# -- the module ---------------------------------------------------------------------------------------
def test_module_without_training_step(tmp_path: Any) -> None:
    class NoStep(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    with pytest.raises(MisconfigurationException, match=r"training_step.*define"):
        make_trainer(tmp_path).fit(NoStep(), loader())


def test_plain_nn_module_is_refused(tmp_path: Any) -> None:
    with pytest.raises(MisconfigurationException, match="LightningModule"):
        make_trainer(tmp_path).fit(torch.nn.Linear(4, 1), loader())


class _Optimizers(BoringModel):
    def __init__(self, returned: Any) -> None:
        super().__init__()
        self.returned = returned

    def configure_optimizers(self) -> Any:
        return self.returned(self) if callable(self.returned) else self.returned


@pytest.mark.parametrize("returned", [
    "adam",
    [torch.nn.Linear(1, 1)],
    lambda m: [torch.optim.SGD(m.parameters(), lr=0.1), "not an optimizer"],
    lambda m: {"lr_scheduler": None},
], ids=["string", "list-of-module", "list-with-string", "dict-without-optimizer"])
def test_configure_optimizers_garbage(tmp_path: Any, returned: Any) -> None:
    with pytest.raises(MisconfigurationException, match=r"configure_optimizers.*not a supported format.*optimizer"):
        make_trainer(tmp_path).fit(_Optimizers(returned))


def test_configure_optimizers_missing(tmp_path: Any) -> None:
    class NoOptimizers(BoringModel):
        configure_optimizers = pl.LightningModule.configure_optimizers

    with pytest.raises(MisconfigurationException, match=r"no `configure_optimizers`.*define it"):
        make_trainer(tmp_path).fit(NoOptimizers())


def test_configure_optimizers_none_trains_without_changing_weights(tmp_path: Any) -> None:
    class Counting(_Optimizers):
        calls = 0

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            self.calls += 1
            return super().training_step(batch, batch_idx)

    model = Counting(None)
    before = model.layer.weight.detach().clone()
    trainer = make_trainer(tmp_path, max_epochs=1)
    with pytest.warns(UserWarning, match="without an optimizer"):
        trainer.fit(model)
    assert torch.equal(model.layer.weight, before)
    assert model.calls == 4
    assert trainer.global_step == 4  # as in Lightning, whose stand-in optimizer still counts steps


def test_reduce_on_plateau_without_monitor(tmp_path: Any) -> None:
    def configure(m: Any) -> Any:
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(opt)}

    with pytest.raises(MisconfigurationException, match=r"ReduceLROnPlateau.*monitor.*'val_loss'"):
        make_trainer(tmp_path).fit(_Optimizers(configure))


def test_reduce_on_plateau_monitoring_unlogged_metric(tmp_path: Any) -> None:
    def configure(m: Any) -> Any:
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(opt),
                "monitor": "nope"}

    with pytest.raises(MisconfigurationException, match=r"'nope'.*not logged.*available.*train_loss"):
        make_trainer(tmp_path, limit_val_batches=0).fit(_Optimizers(configure))


def test_scheduler_bad_interval_and_unknown_key(tmp_path: Any) -> None:
    def interval(m: Any) -> Any:
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.StepLR(opt, 1),
                                                   "interval": "batch"}}

    def unknown(m: Any) -> Any:
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.StepLR(opt, 1),
                                                   "every": 2}}

    with pytest.raises(MisconfigurationException, match=r"interval='batch'.*'epoch' or 'step'"):
        make_trainer(tmp_path).fit(_Optimizers(interval))
    with pytest.raises(MisconfigurationException, match=r"unknown keys \['every'\]"):
        make_trainer(tmp_path).fit(_Optimizers(unknown))


def test_two_optimizers_need_manual_optimization(tmp_path: Any) -> None:
    def two(m: Any) -> Any:
        return [torch.optim.SGD(m.parameters(), lr=0.1), torch.optim.Adam(m.parameters())]

    with pytest.raises(MisconfigurationException, match="automatic_optimization = False"):
        make_trainer(tmp_path).fit(_Optimizers(two))


def test_training_step_returning_garbage(tmp_path: Any) -> None:
    class Garbage(BoringModel):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return "loss"

    class NoLossKey(BoringModel):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return {"value": super().training_step(batch, batch_idx)}

    with pytest.raises(MisconfigurationException, match=r"returned a str.*loss tensor"):
        make_trainer(tmp_path).fit(Garbage())
    with pytest.raises(MisconfigurationException, match="without a 'loss' key"):
        make_trainer(tmp_path).fit(NoLossKey())


# -- the data -------------------------------------------------------------------------------------------
def test_empty_train_dataloader(tmp_path: Any) -> None:
    empty = DataLoader(TensorDataset(torch.zeros(0, 4), torch.zeros(0, 1)), batch_size=4)
    with pytest.raises(MisconfigurationException, match=r"train dataloader is empty.*batch_size"):
        make_trainer(tmp_path).fit(BoringModel(), empty)


def test_non_iterable_dataloader(tmp_path: Any) -> None:
    with pytest.raises(MisconfigurationException, match=r"train dataloader is a int.*DataLoader"):
        make_trainer(tmp_path).fit(BoringModel(), 5)


def test_several_val_dataloaders_without_dataloader_idx(tmp_path: Any) -> None:
    with pytest.raises(RuntimeError, match=r"2 val dataloaders.*dataloader_idx=0"):
        make_trainer(tmp_path).fit(BoringModel(), loader(), [loader(8), loader(8)])


def test_dataloaders_and_datamodule_together(tmp_path: Any) -> None:
    with pytest.raises(MisconfigurationException, match="one or the other"):
        make_trainer(tmp_path).fit(BoringModel(), loader(), datamodule=pl.LightningDataModule())


def test_fraction_of_unsized_loader(tmp_path: Any) -> None:
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self) -> Any:
            for i in range(8):
                yield torch.ones(4) * i, torch.ones(1)

    with pytest.raises(ValueError, match=r"limit_train_batches=0\.5.*no length.*int"):
        make_trainer(tmp_path, limit_train_batches=0.5).fit(BoringModel(), DataLoader(Stream(), batch_size=2))


def test_limit_fraction_selecting_zero_batches(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match=r"limit_train_batches=0\.1 selects 0 of the 4 batches"):
        make_trainer(tmp_path, limit_train_batches=0.1).fit(BoringModel())


def test_val_check_interval_larger_than_epoch(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match=r"val_check_interval=10.*number of training batches \(4\).*"
                                         r"check_val_every_n_epoch=None"):
        make_trainer(tmp_path, val_check_interval=10).fit(BoringModel())


# -- hardware, precision, strategy ----------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["17", 17, "fp16", "bf8-mixed"])
def test_bad_precision(tmp_path: Any, precision: Any) -> None:
    with pytest.raises(ValueError, match=rf"precision={precision!r}.*not supported.*'32-true'.*'bf16-mixed'"):
        make_trainer(tmp_path, precision=precision)


def test_bad_accelerator(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match=r"accelerator='quantum'.*not supported.*'auto'.*'cpu'"):
        make_trainer(tmp_path, accelerator="quantum")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
@pytest.mark.parametrize("accelerator", ["gpu", "cuda"])
def test_gpu_accelerator_without_gpu(tmp_path: Any, accelerator: str) -> None:
    with pytest.raises(ValueError, match=rf"accelerator='{accelerator}'.*no CUDA device.*'cpu'"):
        make_trainer(tmp_path, accelerator=accelerator)


def test_tpu_accelerator(tmp_path: Any) -> None:
    with pytest.raises((ValueError, NotImplementedError), match=r"accelerator='tpu'.*use accelerator='cpu'"):
        make_trainer(tmp_path, accelerator="tpu")


@pytest.mark.parametrize("devices, message", [
    (0, r"devices=0.*positive number"),
    (-2, r"devices=-2.*positive number"),
    ("abc", r"devices='abc'.*not understood.*'auto'"),
    ([], r"devices=\[\].*names no device.*devices=\[0\]"),
    (1.5, r"devices=1\.5.*must be an int"),
    (True, r"devices=True.*must be an int"),
])
def test_bad_devices(tmp_path: Any, devices: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_trainer(tmp_path, devices=devices)


@pytest.mark.parametrize("devices", [1, "1", "auto"])
def test_good_devices_on_cpu(tmp_path: Any, devices: Any) -> None:
    trainer = make_trainer(tmp_path, devices=devices)
    assert trainer.strategy.root_device == torch.device("cpu")
    assert trainer.num_devices == 1


def test_16_mixed_on_cpu(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match=r"precision='16-mixed'.*GPU.*'bf16-mixed'"):
        make_trainer(tmp_path, precision="16-mixed")


@pytest.mark.parametrize("precision, expected", [(64, "64-true"), ("32", "32-true"), ("bf16", "bf16-mixed"),
                                                 (None, "32-true"), ("bf16-true", "bf16-true")])
def test_precision_aliases(tmp_path: Any, precision: Any, expected: str) -> None:
    assert make_trainer(tmp_path, precision=precision).precision == expected


# strategies that arrive in later versions of ember (the list shrinks as they land)
@pytest.mark.parametrize("strategy", [s for s in ("ddp", "ddp_spawn", "fsdp", "deepspeed", "xla")
                                      if s in _LATER_STRATEGIES])
def test_later_strategy_not_available_yet(tmp_path: Any, strategy: str) -> None:
    with pytest.raises(NotImplementedError, match=rf"strategy='{strategy}'.*not available yet.*strategy="):
        make_trainer(tmp_path, strategy=strategy)


def test_unknown_strategy(tmp_path: Any) -> None:
    with pytest.raises(MisconfigurationException, match=r"strategy='warp'.*not a known strategy.*'auto'"):
        make_trainer(tmp_path, strategy="warp")


def test_unknown_profiler(tmp_path: Any) -> None:
    with pytest.raises(MisconfigurationException, match=r"profiler='fancy'.*'simple'"):
        make_trainer(tmp_path, profiler="fancy")


def test_plugins_not_available_yet(tmp_path: Any) -> None:
    with pytest.raises(NotImplementedError, match=r"plugins=.*not available yet.*plugins=None"):
        make_trainer(tmp_path, plugins=[object()])


# -- ranges of the int/float arguments -----------------------------------------------------------------
@pytest.mark.parametrize("name, value, accepted", [
    ("accumulate_grad_batches", 0, "int >= 1"),
    ("accumulate_grad_batches", 1.5, "int >= 1"),
    ("limit_train_batches", 1.5, r"float in \[0.0, 1.0\]"),
    ("limit_train_batches", -1, "int >= 0"),
    ("limit_val_batches", -0.5, r"float in \[0.0, 1.0\]"),
    ("limit_test_batches", "all", "int >= 0"),
    ("limit_predict_batches", 2.0, r"float in \[0.0, 1.0\]"),
    ("overfit_batches", 1.5, r"float in \[0.0, 1.0\]"),
    ("val_check_interval", 0, "int > 0"),
    ("val_check_interval", 0.0, r"float in \(0.0, 1.0\]"),
    ("val_check_interval", 1.5, r"float in \(0.0, 1.0\]"),
    ("check_val_every_n_epoch", 0, "int > 0 or None"),
    ("num_sanity_val_steps", -2, "int >= -1"),
    ("log_every_n_steps", -1, "int >= 0"),
    ("max_epochs", -2, "int >= -1"),
    ("min_epochs", -5, "int >= -1"),
    ("max_steps", -3, "int >= -1"),
    ("max_steps", None, "int >= -1"),
    ("min_steps", -2, "int >= -1"),
    ("fast_dev_run", -1, "positive int"),
    ("gradient_clip_val", -1.0, "number >= 0"),
    ("gradient_clip_algorithm", "foo", "'norm', 'value'"),
    ("reload_dataloaders_every_n_epochs", -1, "int >= 0"),
    ("deterministic", "yes", "'warn'"),
])
def test_argument_out_of_range(tmp_path: Any, name: str, value: Any, accepted: str) -> None:
    with pytest.raises(MisconfigurationException, match=rf"Trainer\({name}={value!r}\) is not valid.*{accepted}"):
        make_trainer(tmp_path, **{name: value})


@pytest.mark.parametrize("value", ["bad", "1:2:3", "00:00:aa:00", 5, [1]])
def test_bad_max_time(tmp_path: Any, value: Any) -> None:
    with pytest.raises(MisconfigurationException, match=r"max_time=.*'DD:HH:MM:SS'.*timedelta.*dict"):
        make_trainer(tmp_path, max_time=value)


def test_bad_max_time_dict_keys(tmp_path: Any) -> None:
    with pytest.raises(MisconfigurationException, match=r"max_time=\{'hourz': 1\}.*\{'hours': 1\}"):
        make_trainer(tmp_path, max_time={"hourz": 1})


def test_gradient_clip_algorithm_accepts_value_and_norm(tmp_path: Any) -> None:
    assert make_trainer(tmp_path, gradient_clip_algorithm="value").gradient_clip_algorithm == "value"
    assert make_trainer(tmp_path, gradient_clip_algorithm="norm").gradient_clip_algorithm == "norm"


def test_defaults_match_lightning(tmp_path: Any) -> None:
    trainer = pl.Trainer(default_root_dir=tmp_path)
    assert (trainer.max_epochs, trainer.max_steps, trainer.min_epochs, trainer.min_steps) == (1000, -1, None, None)
    assert (trainer.limit_train_batches, trainer.limit_val_batches, trainer.val_check_interval) == (1.0, 1.0, 1.0)
    assert (trainer.check_val_every_n_epoch, trainer.num_sanity_val_steps, trainer.log_every_n_steps) == (1, 2, 50)
    assert (trainer.accumulate_grad_batches, trainer.gradient_clip_val, trainer.precision) == (1, None, "32-true")
    assert trainer.checkpoint_callback is not None and trainer.progress_bar_callback is not None
    from ember.loggers.tensorboard import _tensorboard_available  # Lightning's rule: TensorBoard when installed

    assert type(trainer.logger).__name__ == ("TensorBoardLogger" if _tensorboard_available() else "CSVLogger")
    assert pl.Trainer(max_steps=5, default_root_dir=tmp_path).max_epochs == -1


# -- combinations ---------------------------------------------------------------------------------------
def test_callbacks_must_be_callbacks(tmp_path: Any) -> None:
    with pytest.raises(MisconfigurationException, match="not Callback instances"):
        make_trainer(tmp_path, callbacks=[object()])


def test_checkpoint_callback_with_checkpointing_disabled(tmp_path: Any) -> None:
    from ember.callbacks import ModelCheckpoint

    with pytest.raises(MisconfigurationException, match=r"enable_checkpointing=False.*ModelCheckpoint"):
        make_trainer(tmp_path, enable_checkpointing=False, callbacks=[ModelCheckpoint()])


def test_bad_logger(tmp_path: Any) -> None:
    with pytest.raises(MisconfigurationException, match=r"logger=.*Logger"):
        make_trainer(tmp_path, logger="csv")


def test_barebones_conflicts(tmp_path: Any) -> None:
    with pytest.raises(MisconfigurationException, match=r"barebones=True.*enable_checkpointing"):
        pl.Trainer(barebones=True, enable_checkpointing=True, default_root_dir=tmp_path)


def test_best_without_checkpointing(tmp_path: Any) -> None:
    trainer = make_trainer(tmp_path, enable_checkpointing=False)
    model = BoringModel()
    trainer.fit(model)
    with pytest.raises(ValueError, match=r'ckpt_path="best".*ModelCheckpoint.*pass a checkpoint path'):
        trainer.validate(model, ckpt_path="best")


def test_best_before_any_checkpoint(tmp_path: Any) -> None:
    trainer = make_trainer(tmp_path, enable_checkpointing=True)
    with pytest.raises(ValueError, match=r'ckpt_path="best".*run fit first'):
        trainer.validate(BoringModel(), ckpt_path="best")


def test_last_without_checkpoint_warns_and_uses_current_weights(tmp_path: Any) -> None:
    model = BoringModel()
    trainer = make_trainer(tmp_path, enable_checkpointing=True)
    with pytest.warns(UserWarning, match=r'ckpt_path="last".*no last checkpoint'):
        result = trainer.validate(model, ckpt_path="last", verbose=False)
    x, y = model.val_dataloader().dataset.tensors
    assert result[0]["val_loss"] == pytest.approx(torch.nn.functional.mse_loss(model(x), y).item())


def test_missing_checkpoint_file(tmp_path: Any) -> None:
    with pytest.raises(FileNotFoundError, match="not found.*missing.ckpt"):
        make_trainer(tmp_path).fit(BoringModel(), ckpt_path=tmp_path / "missing.ckpt")


def test_gradient_clip_val_with_manual_optimization(tmp_path: Any) -> None:
    class Manual(BoringModel):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False

    with pytest.raises(MisconfigurationException, match=r"gradient_clip_val.*manual optimization.*clip_gradients"):
        make_trainer(tmp_path, gradient_clip_val=1.0).fit(Manual())


def test_validate_test_without_steps(tmp_path: Any) -> None:
    class OnlyTrain(BoringModel):
        validation_step = pl.LightningModule.validation_step
        test_step = pl.LightningModule.test_step

    with pytest.raises(MisconfigurationException, match=r"no `validation_step`.*trainer.validate"):
        make_trainer(tmp_path).validate(OnlyTrain())
    with pytest.raises(MisconfigurationException, match=r"no `test_step`.*trainer.test"):
        make_trainer(tmp_path).test(OnlyTrain())


def test_validate_without_model(tmp_path: Any) -> None:
    with pytest.raises(MisconfigurationException, match=r"validate\(\) needs a model"):
        make_trainer(tmp_path).validate()


# -- logging where it is not allowed -------------------------------------------------------------------
class _LogIn(BoringModel):
    def __init__(self, hook: str, value: Any = 1.0, **log_kwargs: Any) -> None:
        super().__init__()
        self.hook, self.value, self.log_kwargs = hook, value, log_kwargs

    def _maybe_log(self, hook: str) -> None:
        if hook == self.hook:
            self.log("x", self.value, **self.log_kwargs)

    def on_fit_start(self) -> None:
        self._maybe_log("on_fit_start")

    def configure_optimizers(self) -> Any:
        self._maybe_log("configure_optimizers")
        return super().configure_optimizers()

    def on_train_epoch_start(self) -> None:
        self._maybe_log("on_train_epoch_start")

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        self._maybe_log("training_step")
        return super().training_step(batch, batch_idx)

    def on_train_end(self) -> None:
        self._maybe_log("on_train_end")


@pytest.mark.parametrize("hook", ["on_fit_start", "configure_optimizers", "on_train_end"])
def test_logging_from_hook_that_forbids_it(tmp_path: Any, hook: str) -> None:
    with pytest.raises(MisconfigurationException, match=rf"self.log\('x'.*`{hook}`.*not supported.*\*_step"):
        make_trainer(tmp_path).fit(_LogIn(hook))


def test_logging_on_step_in_epoch_hook(tmp_path: Any) -> None:
    with pytest.raises(MisconfigurationException, match=r"on_step=True.*on_train_epoch_start.*on_step=False"):
        make_trainer(tmp_path).fit(_LogIn("on_train_epoch_start", on_step=True))


@pytest.mark.parametrize("value, message", [
    (torch.ones(3), r"needs a scalar.*shape \(3,\).*mean\(\)"),
    ("high", r"got a str.*Python number"),
    ({"a": 1.0}, r"got a dict.*log_dict"),
])
def test_logging_bad_values(tmp_path: Any, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_trainer(tmp_path).fit(_LogIn("training_step", value))


def test_logging_bad_reduce_fx(tmp_path: Any) -> None:
    with pytest.raises(MisconfigurationException, match=r"reduce_fx='median'.*'mean', 'max'"):
        make_trainer(tmp_path).fit(_LogIn("training_step", reduce_fx="median"))


def test_logging_reserved_name(tmp_path: Any) -> None:
    class Reserved(_LogIn):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            self.log("acc/dataloader_idx_0", 1.0)
            return super().training_step(batch, batch_idx)

    with pytest.raises(MisconfigurationException, match=r"'acc/dataloader_idx_0'.*may not contain"):
        make_trainer(tmp_path).fit(Reserved("none"))


class _LogsTwice(BoringModel):
    """Logs ``x`` with ``first`` options on batch 0 and ``later`` options after (as Lightning, they must agree)."""

    def __init__(self, first: dict[str, Any], later: dict[str, Any]) -> None:
        super().__init__()
        self.first, self.later = first, later

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        loss = super().training_step(batch, batch_idx)
        self.log("x", loss * batch_idx, **(self.first if batch_idx == 0 else self.later))
        return loss


@pytest.mark.parametrize("later, message", [
    (dict(prog_bar=True), r"prog_bar=True \(was False\)"),
    (dict(on_epoch=True), r"on_epoch=True \(was False\)"),
    (dict(reduce_fx="max"), r"reduce_fx='max' \(was 'mean'\)"),
    (dict(logger=False), r"logger=False \(was True\)"),
])
def test_logging_a_key_again_with_other_options(tmp_path: Any, later: dict[str, Any], message: str) -> None:
    with pytest.raises(MisconfigurationException, match=r"self.log\('x', ...\) was called twice in `training_step` "
                                                        r"with different arguments: " + message):
        make_trainer(tmp_path).fit(_LogsTwice({}, later))


def test_logging_a_key_again_with_options_that_mean_the_same(tmp_path: Any) -> None:
    # in training_step on_step defaults to True and on_epoch to False; "mean" is torch.mean; logger=None is True
    same = dict(on_step=True, on_epoch=False, reduce_fx=torch.mean, logger=True)
    trainer = make_trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    trainer.fit(_LogsTwice({}, same))
    assert trainer.callback_metrics["x"].item() == pytest.approx(3 * trainer.callback_metrics["train_loss"].item())


def test_logging_neither_on_step_nor_on_epoch(tmp_path: Any) -> None:
    with pytest.raises(MisconfigurationException, match=r"on_step=False, on_epoch=False.*never report"):
        make_trainer(tmp_path).fit(_LogIn("training_step", on_step=False, on_epoch=False))


def test_log_outside_trainer_warns() -> None:
    model = BoringModel()
    with pytest.warns(UserWarning, match="outside a Trainer"):
        model.log("x", 1.0)


def test_trainer_property_without_trainer() -> None:
    with pytest.raises(RuntimeError, match="not attached to a Trainer"):
        BoringModel().trainer  # noqa: B018
