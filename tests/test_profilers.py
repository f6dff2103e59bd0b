"""Profilers: Trainer(profiler=...) reports per-hook/step times; without one nothing is wrapped."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

import ember as pl
from ember.profilers import AdvancedProfiler, PassThroughProfiler, Profiler, PyTorchProfiler, SimpleProfiler
from ember.utilities.exceptions import MisconfigurationException
from tests.helpers import BoringModel, make_trainer


class HookLog(pl.Callback):
    """Records every hook it sees, and whether the trainer's dispatcher was wrapped at that time."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.wrapped: set[bool] = set()

    def _log(self, trainer: Any, name: str) -> None:
        self.calls.append(name)
        self.wrapped.add("_hook" in vars(trainer))

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self._log(trainer, "on_train_batch_start")

    def on_before_backward(self, trainer: Any, pl_module: Any, loss: Any) -> None:
        self._log(trainer, "on_before_backward")

    def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
        self._log(trainer, "on_train_batch_end")

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
        self._log(trainer, "on_validation_batch_end")

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._log(trainer, "on_train_epoch_end")


class LoggingModel(BoringModel):
    def __init__(self) -> None:
        super().__init__()
        self.module_calls: list[str] = []

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self.module_calls.append("on_train_batch_start")

    def on_train_epoch_end(self) -> None:
        self.module_calls.append("on_train_epoch_end")


def _fit(tmp_path: Any, profiler: Any, **kwargs: Any) -> tuple[pl.Trainer, HookLog, LoggingModel]:
    log = HookLog()
    trainer = make_trainer(tmp_path, profiler=profiler, callbacks=[log], max_epochs=2, **kwargs)
    model = LoggingModel()
    trainer.fit(model)
    return trainer, log, model


def test_default_is_a_pass_through_and_wraps_nothing(tmp_path: Any) -> None:
    trainer, log, _ = _fit(tmp_path, None)
    assert isinstance(trainer.profiler, PassThroughProfiler)
    assert log.wrapped == {False}  # the plain dispatcher ran every hook
    with trainer.profiler.profile("anything"):  # the null object still works for user code
        pass


def test_simple_profiler_reports_at_the_end_of_fit(tmp_path: Any, capsys: Any) -> None:
    trainer, log, _ = _fit(tmp_path, "simple")
    report = capsys.readouterr().out
    assert report.startswith("FIT Profiler Report")
    for action in ("run_training_epoch", "run_training_batch", "[LightningModule]LoggingModel.training_step",
                   "[LightningModule]LoggingModel.validation_step", "[LightningModule]LoggingModel.backward",
                   "[Callback]HookLog.on_train_batch_end", "[Strategy]SingleDeviceStrategy.batch_to_device"):
        assert action in report
    durations = trainer.profiler.recorded_durations
    assert len(durations["run_training_batch"]) == 8  # 2 epochs x 4 batches
    assert len(durations["run_training_epoch"]) == 2
    assert len(durations["[LightningModule]LoggingModel.training_step"]) == 8
    # a batch's time contains its training_step's
    assert sum(durations["run_training_batch"]) >= sum(durations["[LightningModule]LoggingModel.training_step"])
    assert log.wrapped == {True}
    assert "_hook" not in vars(trainer) and "forward_context" not in vars(trainer.strategy.precision)


def test_profiling_keeps_the_hook_order(tmp_path: Any) -> None:
    _, plain, plain_model = _fit(tmp_path / "a", None)
    _, profiled, profiled_model = _fit(tmp_path / "b", SimpleProfiler())
    assert profiled.calls == plain.calls and profiled_model.module_calls == plain_model.module_calls


def test_report_file_per_stage(tmp_path: Any, capsys: Any) -> None:
    profiler = SimpleProfiler(dirpath=tmp_path / "prof", filename="perf", extended=False)
    trainer, _, model = _fit(tmp_path, profiler)
    trainer.validate(model, verbose=False)
    assert capsys.readouterr().out == ""
    fit_report = (tmp_path / "prof" / "fit-perf.txt").read_text()
    validate_report = (tmp_path / "prof" / "validate-perf.txt").read_text()
    assert "run_training_batch" in fit_report and "Mean duration (s)" in fit_report
    assert "validation_step" in validate_report and "run_training_batch" not in validate_report  # one call each


def test_advanced_profiler(tmp_path: Any, capsys: Any) -> None:
    profiler = AdvancedProfiler()  # all lines: which ones rank first by time varies from run to run
    _fit(tmp_path, profiler)
    report = capsys.readouterr().out
    assert "Profile stats for: [LightningModule]LoggingModel.training_step" in report
    assert "Profile stats for: run_training_batch" in report
    assert "function calls" in report and "mse_loss" in report  # cProfile saw the model's code


def test_pytorch_profiler_writes_a_chrome_trace(tmp_path: Any, capsys: Any) -> None:
    profiler = PyTorchProfiler(dirpath=tmp_path / "trace", row_limit=10)
    _fit(tmp_path, profiler, limit_val_batches=1, num_sanity_val_steps=0)
    report = capsys.readouterr().out
    assert "FIT Profiler Report" in report and "run_training_batch" in report
    trace = tmp_path / "trace" / "fit.pt.trace.json"
    assert profiler.trace_path == str(trace)
    names = {event.get("name") for event in json.loads(trace.read_text())["traceEvents"]}
    assert {"run_training_batch", "[LightningModule]LoggingModel.training_step"} <= names
    assert any(str(name).startswith("[module]torch.nn.modules.linear.Linear") for name in names)


def test_profiler_is_detached_after_an_error(tmp_path: Any) -> None:
    class Broken(BoringModel):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            raise ValueError("boom")

    trainer = make_trainer(tmp_path, profiler="simple")
    with pytest.raises(ValueError, match="boom"):
        trainer.fit(Broken())
    assert "_hook" not in vars(trainer) and "_to_device" not in vars(trainer)
    assert "forward_context" not in vars(trainer.strategy.precision)


def test_custom_profiler_sees_balanced_actions(tmp_path: Any) -> None:
    class Recording(Profiler):
        def __init__(self) -> None:
            super().__init__()
            self.events: list[tuple[str, str]] = []
            self.described = 0

        def start(self, action_name: str) -> None:
            self.events.append(("start", action_name))

        def stop(self, action_name: str) -> None:
            self.events.append(("stop", action_name))

        def describe(self) -> None:
            self.described += 1

    profiler = Recording()
    make_trainer(tmp_path, profiler=profiler, max_steps=3).fit(BoringModel())
    open_actions: list[str] = []
    for kind, name in profiler.events:
        if kind == "start":
            open_actions.append(name)
        else:
            assert open_actions.pop() == name  # properly nested
    assert not open_actions and profiler.described == 1 and profiler._stage == "fit"


@pytest.mark.parametrize("value", ["fancy", 3])
def test_invalid_profiler(tmp_path: Any, value: Any) -> None:
    with pytest.raises(MisconfigurationException, match="profiler="):
        make_trainer(tmp_path, profiler=value)


def test_barebones_refuses_a_profiler(tmp_path: Any) -> None:
    with pytest.raises(MisconfigurationException, match="barebones"):
        pl.Trainer(barebones=True, profiler="simple")


def test_profile_context_and_errors() -> None:
    profiler = SimpleProfiler()
    profiler.setup("fit")
    with profiler.profile("work"):
        torch.ones(3).sum()
    assert len(profiler.recorded_durations["work"]) == 1
    with pytest.raises(ValueError, match="never started"):
        profiler.stop("other")
    assert "work" in profiler.summary()
