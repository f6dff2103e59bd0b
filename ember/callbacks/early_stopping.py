"""``EarlyStopping``: stop ``fit`` once a monitored metric has stopped improving."""

from __future__ import annotations

import logging
import math
from enum import Enum
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import Tensor

from ember.callbacks.callback import Callback
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_only, rank_zero_warn

if TYPE_CHECKING:
    from ember.module import LightningModule
    from ember.trainer.trainer import Trainer

log = logging.getLogger(__name__)


class EarlyStoppingReason(Enum):
    """Why :class:`EarlyStopping` asked the trainer to stop (``NOT_STOPPED`` while it has not)."""

    NOT_STOPPED = 0
    STOPPING_THRESHOLD = 1
    DIVERGENCE_THRESHOLD = 2
    PATIENCE_EXHAUSTED = 3
    NON_FINITE_METRIC = 4


class EarlyStopping(Callback):
    """Watch ``monitor`` and set ``trainer.should_stop`` when it stops improving.

    Args:
        monitor: key of ``trainer.callback_metrics`` to watch.
        min_delta: a change of at most this much (in the good direction) does not count as improvement.
        patience: how many checks in a row without improvement are tolerated before stopping. A check
            happens once per epoch by default, or after every validation run when validation does not run
            exactly once at the end of every epoch.
        verbose: log each improvement and the reason for stopping.
        mode: ``"min"`` (lower is better) or ``"max"`` (higher is better).
        strict: raise when ``monitor`` is missing from the logged metrics (otherwise skip the check).
        check_finite: stop as soon as the metric is NaN or infinite.
        stopping_threshold: stop at once when the metric gets better than this value.
        divergence_threshold: stop at once when the metric gets worse than this value.
        check_on_train_epoch_end: check at the end of the training epoch (``True``) or after validation
            (``False``). ``None``: at the epoch end when validation runs once at the end of every epoch
            (``val_check_interval == 1.0`` and ``check_val_every_n_epoch == 1``), otherwise after each
            validation.
        log_rank_zero_only: in multi-process runs, log only on global rank 0.
    """

    mode_dict: dict[str, Callable[..., Tensor]] = {"min": torch.lt, "max": torch.gt}
    order_dict = {"min": "<", "max": ">"}

    def __init__(
        self,
        monitor: str,
        min_delta: float = 0.0,
        patience: int = 3,
        verbose: bool = False,
        mode: str = "min",
        strict: bool = True,
        check_finite: bool = True,
        stopping_threshold: float | None = None,
        divergence_threshold: float | None = None,
        check_on_train_epoch_end: bool | None = None,
        log_rank_zero_only: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(monitor, str) or not monitor:
            raise MisconfigurationException(
                f"EarlyStopping(monitor={monitor!r}) is not supported: `monitor` must be the name of a "
                f"logged metric, e.g. EarlyStopping(monitor='val_loss')."
            )
        if mode not in self.mode_dict:
            raise MisconfigurationException(
                f"EarlyStopping(mode={mode!r}) is not supported: `mode` must be 'min' (stop when "
                f"{monitor!r} stops decreasing) or 'max' (stop when it stops increasing)."
            )
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise MisconfigurationException(
                f"EarlyStopping(patience={patience!r}) is not supported: `patience` must be an int >= 0 "
                f"(the number of checks without improvement to tolerate)."
            )
        try:
            min_delta = float(min_delta)
        except (TypeError, ValueError):
            min_delta = float("nan")
        if math.isnan(min_delta) or min_delta < 0:
            raise MisconfigurationException(
                f"EarlyStopping(min_delta={min_delta!r}) is not supported: `min_delta` must be a number "
                f">= 0; the direction of improvement comes from `mode`."
            )
        self.monitor = monitor
        self.patience = patience
        self.verbose = verbose
        self.mode = mode
        self.strict = strict
        self.check_finite = check_finite
        self.stopping_threshold = stopping_threshold
        self.divergence_threshold = divergence_threshold
        self.log_rank_zero_only = log_rank_zero_only
        self._check_on_train_epoch_end = check_on_train_epoch_end

        # stored signed, so that "improved" is always monitor_op(current - min_delta, best)
        self.min_delta = min_delta if mode == "max" else -min_delta
        self.wait_count = 0
        self.stopped_epoch = 0
        self.stopping_reason = EarlyStoppingReason.NOT_STOPPED
        self.stopping_reason_message: str | None = None
        self.best_score: Tensor = torch.tensor(float("inf") if mode == "min" else float("-inf"))

    @property
    def monitor_op(self) -> Callable[..., Tensor]:
        return self.mode_dict[self.mode]

    @property
    def state_key(self) -> str:
        return self._generate_state_key(monitor=self.monitor, mode=self.mode)

    def state_dict(self) -> dict[str, Any]:
        return {
            "wait_count": self.wait_count,
            "stopped_epoch": self.stopped_epoch,
            "best_score": self.best_score,
            "patience": self.patience,
            "stopping_reason": self.stopping_reason.value,
            "stopping_reason_message": self.stopping_reason_message,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.wait_count = state_dict["wait_count"]
        self.stopped_epoch = state_dict["stopped_epoch"]
        self.best_score = state_dict["best_score"]
        self.patience = state_dict["patience"]
        reason = state_dict.get("stopping_reason", EarlyStoppingReason.NOT_STOPPED)
        self.stopping_reason = reason if isinstance(reason, EarlyStoppingReason) else EarlyStoppingReason(reason)
        self.stopping_reason_message = state_dict.get("stopping_reason_message")

    # ------------------------------------------------------------------------------------------
    # hooks
    # ------------------------------------------------------------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._check_on_train_epoch_end is None:
            # validation once at the end of every epoch: check at the epoch end (after it). Otherwise
            # validation runs several times per epoch or skips epochs, so check after each validation.
            self._check_on_train_epoch_end = (
                trainer.val_check_interval == 1.0 and trainer.check_val_every_n_epoch == 1
            )

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._check_on_train_epoch_end or self._should_skip_check(trainer):
            return
        self._run_early_stopping_check(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._check_on_train_epoch_end or self._should_skip_check(trainer):
            return
        self._run_early_stopping_check(trainer)

    # ------------------------------------------------------------------------------------------
    # the check
    # ------------------------------------------------------------------------------------------
    @staticmethod
    def _should_skip_check(trainer: Trainer) -> bool:
        return trainer.state.fn != "fit" or bool(trainer.sanity_checking) or bool(trainer.fast_dev_run)

    def _validate_condition_metric(self, logs: dict[str, Any]) -> bool:
        if logs.get(self.monitor) is not None:
            return True
        available = ", ".join(f"`{k}`" for k in logs) or "(none logged)"
        message = (
            f"EarlyStopping(monitor={self.monitor!r}) cannot run: {self.monitor!r} is not among the logged "
            f"metrics. Available metrics: {available}. Log it with `self.log({self.monitor!r}, value)` or "
            f"pass one of the available names as `monitor`."
        )
        if self.strict:
            raise RuntimeError(message)
        if self.verbose:
            rank_zero_warn(message, category=RuntimeWarning)
        return False

    def _run_early_stopping_check(self, trainer: Trainer) -> None:
        logs = trainer.callback_metrics
        if not self._validate_condition_metric(logs):
            return
        current = logs[self.monitor]
        if not isinstance(current, Tensor):
            current = torch.tensor(float(current))
        current = current.detach().squeeze()

        should_stop, reason = self._evaluate_stopping_criteria(current)
        should_stop = bool(trainer.strategy.reduce_boolean_decision(should_stop, all=False))
        trainer.should_stop = bool(trainer.should_stop) or should_stop
        if should_stop:
            self.stopped_epoch = trainer.current_epoch
        if reason and self.verbose:
            self._log_info(trainer, reason, self.log_rank_zero_only)

    def _evaluate_stopping_criteria(self, current: Tensor) -> tuple[bool, str | None]:
        op = self.order_dict[self.mode]
        best = self.best_score.to(current.device)
        if self.check_finite and not torch.isfinite(current):
            self.stopping_reason = EarlyStoppingReason.NON_FINITE_METRIC
            message = (
                f"Monitored metric {self.monitor} = {current.item()} is not finite (best so far "
                f"{best.item():.3f}). Signaling Trainer to stop."
            )
            should_stop = True
        elif self.stopping_threshold is not None and self.monitor_op(current, self.stopping_threshold):
            self.stopping_reason = EarlyStoppingReason.STOPPING_THRESHOLD
            message = (
                f"Stopping threshold reached: {self.monitor} = {current.item()} {op} "
                f"{self.stopping_threshold}. Signaling Trainer to stop."
            )
            should_stop = True
        elif self.divergence_threshold is not None and self.monitor_op(-current, -self.divergence_threshold):
            self.stopping_reason = EarlyStoppingReason.DIVERGENCE_THRESHOLD
            worse = self.order_dict["max" if self.mode == "min" else "min"]
            message = (
                f"Divergence threshold reached: {self.monitor} = {current.item()} {worse} "
                f"{self.divergence_threshold}. Signaling Trainer to stop."
            )
            should_stop = True
        elif self.monitor_op(current - self.min_delta, best):
            if torch.isfinite(best):
                message = (
                    f"Metric {self.monitor} improved by {abs(best - current).item():.3f} >= min_delta = "
                    f"{abs(self.min_delta)}. New best score: {current.item():.3f}"
                )
            else:
                message = f"Metric {self.monitor} improved. New best score: {current.item():.3f}"
            self.best_score = current
            self.wait_count = 0
            return False, message
        else:
            self.wait_count += 1
            if self.wait_count < self.patience:
                return False, None
            self.stopping_reason = EarlyStoppingReason.PATIENCE_EXHAUSTED
            message = (
                f"Monitored metric {self.monitor} did not improve in the last {self.wait_count} checks. "
                f"Best score: {best.item():.3f}. Signaling Trainer to stop."
            )
            should_stop = True
        self.stopping_reason_message = message
        return should_stop, message

    @staticmethod
    def _log_info(trainer: Trainer | None, message: str, log_rank_zero_only: bool) -> None:
        rank = getattr(trainer, "global_rank", None) if trainer is not None else None
        if rank is None:
            rank = getattr(rank_zero_only, "rank", 0)
        world_size = getattr(trainer, "world_size", 1) if trainer is not None else 1
        if world_size > 1:
            message = f"[rank: {rank}] {message}"
        if log_rank_zero_only and rank != 0:
            return
        log.info(message)
