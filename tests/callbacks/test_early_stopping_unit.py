"""Unit tests for ``EarlyStopping`` driven by a stub trainer (the real Trainer is not needed)."""

from __future__ import annotations

import logging
import math
import warnings
from types import SimpleNamespace

import pytest
import torch

from ember.callbacks.early_stopping import EarlyStopping, EarlyStoppingReason
from ember.utilities.exceptions import MisconfigurationException


class StubStrategy:
    def __init__(self, forced=None):
        self.calls = []
        self.forced = forced

    def reduce_boolean_decision(self, decision, all=True):
        self.calls.append((decision, all))
        return decision if self.forced is None else self.forced

    def broadcast(self, obj, src=0):
        return obj

    def barrier(self, name=None):
        pass


def make_trainer(**overrides):
    defaults = dict(
        current_epoch=0,
        global_step=0,
        callback_metrics={},
        should_stop=False,
        fast_dev_run=False,
        sanity_checking=False,
        state=SimpleNamespace(fn="fit"),
        strategy=StubStrategy(),
        num_val_batches=[2],
        val_check_interval=1.0,
        check_val_every_n_epoch=1,
        loggers=[],
        is_global_zero=True,
        lightning_module=None,
    )
    defaults.update(overrides)
    return SimpleNamespace(**defaults)


def run_epochs(cb, values, key="val_loss", trainer=None):
    """Feed one value per epoch in Lightning's hook order; stop when the trainer is told to.

    Returns the epochs that ran and the trainer."""
    t = trainer or make_trainer()
    cb.setup(t, None, "fit")
    ran = []
    for epoch, value in enumerate(values):
        t.current_epoch = epoch
        t.callback_metrics = {key: torch.tensor(float(value))}
        cb.on_validation_end(t, None)
        cb.on_train_epoch_end(t, None)
        ran.append(epoch)
        if t.should_stop:
            break
    return ran, t


# --------------------------------------------------------------------------------------------------
# construction
# --------------------------------------------------------------------------------------------------
def test_defaults_and_state_key():
    cb = EarlyStopping("val_loss")
    assert (cb.monitor, cb.patience, cb.mode, cb.strict, cb.check_finite) == ("val_loss", 3, "min", True, True)
    assert cb.wait_count == 0 and cb.stopped_epoch == 0
    assert cb.stopping_reason is EarlyStoppingReason.NOT_STOPPED and cb.stopping_reason_message is None
    assert torch.isinf(cb.best_score) and cb.best_score > 0
    assert torch.isinf(EarlyStopping("acc", mode="max").best_score) and EarlyStopping("acc", mode="max").best_score < 0
    assert cb.state_key == "EarlyStopping{'monitor': 'val_loss', 'mode': 'min'}"
    assert EarlyStopping("acc", mode="max").state_key == "EarlyStopping{'monitor': 'acc', 'mode': 'max'}"
    assert cb.monitor_op is torch.lt and EarlyStopping("acc", mode="max").monitor_op is torch.gt


def test_min_delta_is_stored_with_the_sign_of_improvement():
    assert EarlyStopping("m", min_delta=0.5).min_delta == -0.5
    assert EarlyStopping("m", min_delta=0.5, mode="max").min_delta == 0.5


@pytest.mark.parametrize(
    ("kwargs", "needles"),
    [
        (dict(monitor="m", mode="maximize"), ["mode='maximize'", "'min'", "'max'"]),
        (dict(monitor="m", patience=-1), ["patience=-1", ">= 0"]),
        (dict(monitor="m", patience=2.5), ["patience=2.5"]),
        (dict(monitor="m", min_delta=-0.1), ["min_delta=-0.1", ">= 0"]),
        (dict(monitor="m", min_delta="big"), ["min_delta", ">= 0"]),
        (dict(monitor=None), ["monitor=None"]),
        (dict(monitor=""), ["monitor=''"]),
    ],
)
def test_invalid_arguments(kwargs, needles):
    with pytest.raises(MisconfigurationException) as err:
        EarlyStopping(**kwargs)
    for needle in needles:
        assert needle in str(err.value)


# --------------------------------------------------------------------------------------------------
# patience / min_delta / mode
# --------------------------------------------------------------------------------------------------
def test_patience_min_mode():
    cb = EarlyStopping("val_loss", patience=2)
    ran, t = run_epochs(cb, [5, 4, 4.5, 4.2, 3, 3])
    assert ran == [0, 1, 2, 3] and t.should_stop is True
    assert cb.stopped_epoch == 3 and cb.wait_count == 2 and float(cb.best_score) == 4.0
    assert cb.stopping_reason is EarlyStoppingReason.PATIENCE_EXHAUSTED
    assert "did not improve in the last 2 checks" in cb.stopping_reason_message


def test_improvement_resets_wait_count():
    cb = EarlyStopping("val_loss", patience=2)
    ran, t = run_epochs(cb, [5, 6, 4, 6, 3, 7, 7])
    assert ran == [0, 1, 2, 3, 4, 5, 6] and cb.stopped_epoch == 6 and float(cb.best_score) == 3.0


def test_patience_zero_stops_at_first_non_improvement():
    ran, t = run_epochs(EarlyStopping("val_loss", patience=0), [3, 2, 2])
    assert ran == [0, 1, 2] and t.should_stop


def test_min_delta_min_mode():
    cb = EarlyStopping("val_loss", patience=1, min_delta=0.5)
    ran, t = run_epochs(cb, [5, 4.6, 4.0])
    # 4.6 is only 0.4 better than 5: no improvement, patience 1 is exhausted
    assert ran == [0, 1] and cb.stopped_epoch == 1 and float(cb.best_score) == 5.0
    cb = EarlyStopping("val_loss", patience=1, min_delta=0.5)
    ran, _ = run_epochs(cb, [5, 4.4, 3.8, 3.5])
    assert ran == [0, 1, 2, 3] and float(cb.best_score) == pytest.approx(3.8)


def test_max_mode_with_min_delta():
    cb = EarlyStopping("acc", patience=1, mode="max", min_delta=0.1)
    ran, t = run_epochs(cb, [1, 2, 2.05], key="acc")
    assert ran == [0, 1, 2] and t.should_stop and float(cb.best_score) == 2.0
    cb = EarlyStopping("acc", patience=1, mode="max")
    ran, _ = run_epochs(cb, [1, 2, 3, 2.5], key="acc")
    assert ran == [0, 1, 2, 3] and cb.stopped_epoch == 3


# --------------------------------------------------------------------------------------------------
# thresholds / non-finite
# --------------------------------------------------------------------------------------------------
def test_stopping_threshold_is_strict():
    cb = EarlyStopping("val_loss", stopping_threshold=1.0)
    ran, t = run_epochs(cb, [5, 1.0, 0.9, 0.1])
    assert ran == [0, 1, 2] and cb.stopped_epoch == 2  # 1.0 is not < 1.0
    assert cb.stopping_reason is EarlyStoppingReason.STOPPING_THRESHOLD
    assert "Stopping threshold reached" in cb.stopping_reason_message and "< 1.0" in cb.stopping_reason_message


def test_stopping_threshold_max_mode():
    cb = EarlyStopping("acc", mode="max", stopping_threshold=0.9)
    ran, _ = run_epochs(cb, [0.5, 0.95], key="acc")
    assert ran == [0, 1] and cb.stopping_reason is EarlyStoppingReason.STOPPING_THRESHOLD


def test_divergence_threshold():
    cb = EarlyStopping("val_loss", divergence_threshold=10.0, patience=100)
    ran, t = run_epochs(cb, [5, 10, 11, 1])
    assert ran == [0, 1, 2] and t.should_stop  # 10 is not worse than 10, 11 is
    assert cb.stopping_reason is EarlyStoppingReason.DIVERGENCE_THRESHOLD
    assert "> 10.0" in cb.stopping_reason_message and float(cb.best_score) == 5.0
    cb = EarlyStopping("acc", mode="max", divergence_threshold=0.1, patience=100)
    ran, _ = run_epochs(cb, [0.5, 0.05], key="acc")
    assert ran == [0, 1] and cb.stopping_reason is EarlyStoppingReason.DIVERGENCE_THRESHOLD


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_stops(bad):
    cb = EarlyStopping("val_loss", patience=100)
    ran, t = run_epochs(cb, [5, bad, 1])
    assert ran == [0, 1] and t.should_stop and cb.stopped_epoch == 1
    assert cb.stopping_reason is EarlyStoppingReason.NON_FINITE_METRIC and float(cb.best_score) == 5.0


def test_check_finite_false_counts_nan_as_no_improvement():
    cb = EarlyStopping("val_loss", patience=2, check_finite=False)
    ran, t = run_epochs(cb, [5, math.nan, 4, math.nan, math.nan, 1])
    assert ran == [0, 1, 2, 3, 4] and cb.stopping_reason is EarlyStoppingReason.PATIENCE_EXHAUSTED


# --------------------------------------------------------------------------------------------------
# missing metric
# --------------------------------------------------------------------------------------------------
def test_strict_missing_metric_raises_with_available_names():
    cb = EarlyStopping("val_acc")
    t = make_trainer(callback_metrics={"val_loss": torch.tensor(1.0), "train_loss": torch.tensor(2.0)})
    cb.setup(t, None, "fit")
    with pytest.raises(RuntimeError) as err:
        cb.on_train_epoch_end(t, None)
    message = str(err.value)
    assert "val_acc" in message and "`val_loss`" in message and "`train_loss`" in message


def test_non_strict_missing_metric_is_skipped():
    cb = EarlyStopping("val_acc", strict=False, patience=0)
    t = make_trainer(callback_metrics={"val_loss": torch.tensor(1.0)})
    cb.setup(t, None, "fit")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # silent unless verbose
        cb.on_train_epoch_end(t, None)
    assert t.should_stop is False and cb.wait_count == 0
    verbose = EarlyStopping("val_acc", strict=False, verbose=True)
    verbose.setup(t, None, "fit")
    with pytest.warns(RuntimeWarning, match="val_acc"):
        verbose.on_train_epoch_end(t, None)


# --------------------------------------------------------------------------------------------------
# when the check runs
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("explicit", "vci", "cve", "nvb", "expected"),
    [
        (None, 1.0, 1, [2], True),
        (None, 1.0, 1, [0], True),
        (None, 0.5, 1, [2], False),
        (None, 100, 1, [2], False),
        (None, 1.0, 3, [2], False),
        (True, 0.5, 3, [2], True),
        (False, 1.0, 1, [0], False),
    ],
)
def test_check_on_train_epoch_end_resolution(explicit, vci, cve, nvb, expected):
    cb = EarlyStopping("m", check_on_train_epoch_end=explicit, patience=0)
    t = make_trainer(val_check_interval=vci, check_val_every_n_epoch=cve, num_val_batches=nvb)
    cb.setup(t, None, "fit")
    assert cb._check_on_train_epoch_end is expected
    # the check runs in exactly one of the two hooks
    t.callback_metrics = {"m": torch.tensor(1.0)}
    cb.on_validation_end(t, None)
    assert (cb.best_score == 1.0).item() is (not expected)
    cb.on_train_epoch_end(t, None)
    assert float(cb.best_score) == 1.0


def test_check_after_each_validation_counts_checks_not_epochs():
    cb = EarlyStopping("val_loss", patience=2)
    t = make_trainer(val_check_interval=0.5)
    cb.setup(t, None, "fit")
    for i, value in enumerate([3.0, 2.0, 2.5, 2.4]):  # two validations per epoch
        t.current_epoch = i // 2
        t.callback_metrics = {"val_loss": torch.tensor(value)}
        cb.on_validation_end(t, None)
        cb.on_train_epoch_end(t, None)  # ignored: the check runs after validation
    assert t.should_stop and cb.stopped_epoch == 1 and cb.wait_count == 2


@pytest.mark.parametrize(
    "overrides",
    [dict(sanity_checking=True), dict(fast_dev_run=1), dict(state=SimpleNamespace(fn="validate"))],
)
def test_skipped_outside_real_fit(overrides):
    for flag in (True, False):
        cb = EarlyStopping("missing", check_on_train_epoch_end=flag, patience=0)
        t = make_trainer(**overrides)
        cb.setup(t, None, "fit")
        cb.on_validation_end(t, None)  # would raise (strict, missing metric) if it checked
        cb.on_train_epoch_end(t, None)
        assert t.should_stop is False


def test_decision_is_reduced_across_ranks():
    cb = EarlyStopping("val_loss", patience=5)
    t = make_trainer(strategy=StubStrategy(forced=True))  # another rank wants to stop
    ran, t = run_epochs(cb, [5, 4], trainer=t)
    assert ran == [0] and t.should_stop and cb.stopped_epoch == 0
    assert t.strategy.calls == [(False, False)]  # this rank said no; any-rank (all=False) semantics
    cb = EarlyStopping("val_loss", patience=0)
    t = make_trainer(strategy=StubStrategy(forced=False))
    ran, t = run_epochs(cb, [5, 6, 7], trainer=t)
    assert ran == [0, 1, 2] and not t.should_stop and cb.stopped_epoch == 0


def test_existing_stop_request_is_not_cleared():
    cb = EarlyStopping("val_loss")
    t = make_trainer(should_stop=True, callback_metrics={"val_loss": torch.tensor(1.0)})
    cb.setup(t, None, "fit")
    cb.on_train_epoch_end(t, None)
    assert t.should_stop is True and cb.stopped_epoch == 0


def test_metric_with_extra_dims_and_python_floats():
    cb = EarlyStopping("val_loss", patience=0)
    t = make_trainer()
    cb.setup(t, None, "fit")
    t.callback_metrics = {"val_loss": torch.tensor([[2.0]])}
    cb.on_train_epoch_end(t, None)
    assert cb.best_score.shape == () and float(cb.best_score) == 2.0
    t.callback_metrics = {"val_loss": 3.0}
    cb.on_train_epoch_end(t, None)
    assert t.should_stop


# --------------------------------------------------------------------------------------------------
# state & logging
# --------------------------------------------------------------------------------------------------
def test_state_dict_round_trip(tmp_path):
    cb = EarlyStopping("val_loss", patience=2)
    run_epochs(cb, [5, 4, 4.5, 4.2])
    state = cb.state_dict()
    assert state["wait_count"] == 2 and state["stopped_epoch"] == 3 and state["patience"] == 2
    assert float(state["best_score"]) == 4.0
    assert state["stopping_reason"] == EarlyStoppingReason.PATIENCE_EXHAUSTED.value
    path = tmp_path / "es.pt"
    torch.save(state, path)  # must survive a weights_only load
    fresh = EarlyStopping("val_loss", patience=9)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    assert (fresh.wait_count, fresh.stopped_epoch, fresh.patience) == (2, 3, 2)
    assert float(fresh.best_score) == 4.0 and fresh.stopping_reason is EarlyStoppingReason.PATIENCE_EXHAUSTED
    # a state with only the four classic keys loads too
    old = EarlyStopping("val_loss")
    old.load_state_dict({"wait_count": 1, "stopped_epoch": 0, "best_score": torch.tensor(0.5), "patience": 4})
    assert old.wait_count == 1 and old.patience == 4 and old.stopping_reason is EarlyStoppingReason.NOT_STOPPED
    # resumed counting continues from the restored state
    ran, t = run_epochs(old, [0.7, 0.8, 0.9, 1.0])
    assert ran == [0, 1, 2] and t.should_stop


def test_verbose_logs_improvement_and_reason(caplog):
    cb = EarlyStopping("val_loss", patience=1, verbose=True)
    with caplog.at_level(logging.INFO, logger="ember"):
        run_epochs(cb, [5, 4, 4.5])
    text = caplog.text
    assert "Metric val_loss improved. New best score: 5.000" in text
    assert "improved by 1.000 >= min_delta = 0.0. New best score: 4.000" in text
    assert "did not improve in the last 1 checks. Best score: 4.000. Signaling Trainer to stop." in text


def test_quiet_by_default(caplog):
    with caplog.at_level(logging.INFO, logger="ember"):
        run_epochs(EarlyStopping("val_loss", patience=0), [5, 6])
    assert caplog.text == ""


def test_rank_prefix_and_rank_zero_only(caplog):
    t = make_trainer(world_size=2, global_rank=1)
    with caplog.at_level(logging.INFO, logger="ember"):
        run_epochs(EarlyStopping("val_loss", patience=0, verbose=True), [5], trainer=t)
    assert "[rank: 1] Metric val_loss improved" in caplog.text
    caplog.clear()
    t = make_trainer(world_size=2, global_rank=1)
    with caplog.at_level(logging.INFO, logger="ember"):
        run_epochs(EarlyStopping("val_loss", patience=0, verbose=True, log_rank_zero_only=True), [5], trainer=t)
    assert caplog.text == ""
