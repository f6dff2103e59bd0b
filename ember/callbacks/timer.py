"""``Timer``: measure time spent in training/validation/testing, and stop training after a duration."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ember.callbacks.callback import Callback
from ember.trainer.states import RunningStage
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_info

if TYPE_CHECKING:
    from ember.module import LightningModule
    from ember.trainer.trainer import Trainer

_DURATION = re.compile(r"(\d+):(\d\d):(\d\d):(\d\d)")


def _parse_duration(duration: str | timedelta | dict[str, int] | None, argument: str = "Timer(duration") -> float | None:
    if duration is None:
        return None
    if isinstance(duration, timedelta):
        return duration.total_seconds()
    if isinstance(duration, dict):
        try:
            return timedelta(**duration).total_seconds()
        except TypeError as err:
            raise MisconfigurationException(f"{argument}={duration!r}): {err}; use keys of datetime.timedelta "
                                            "such as {'hours': 1}.") from None
    if isinstance(duration, str):
        match = _DURATION.fullmatch(duration.strip())
        if match:
            d, h, m, s = map(int, match.groups())
            return timedelta(days=d, hours=h, minutes=m, seconds=s).total_seconds()
    raise MisconfigurationException(f"{argument}={duration!r}) is not valid; use 'DD:HH:MM:SS', a "
                                    "datetime.timedelta or a dict like {'hours': 1}.")


class Timer(Callback):
    """Track the time spent in each stage and stop ``fit`` once ``duration`` of training has passed.

    Args:
        duration: training time allowed: ``"DD:HH:MM:SS"``, a ``timedelta`` or a dict of ``timedelta``
            arguments; ``None`` only measures.
        interval: check after every training ``"step"`` or at the end of every ``"epoch"``.
        verbose: say when the time limit stops training.

    ``time_elapsed("train")`` survives checkpoints: a resumed run continues the clock.
    """

    def __init__(self, duration: str | timedelta | dict[str, int] | None = None, interval: str = "step",
                 verbose: bool = True) -> None:
        if interval not in ("step", "epoch"):
            raise MisconfigurationException(f"Timer(interval={interval!r}) is not valid; use 'step' or 'epoch'.")
        self._duration = _parse_duration(duration)
        self._interval = interval
        self._verbose = verbose
        self._start_time: dict[RunningStage, float | None] = dict.fromkeys(RunningStage)
        self._end_time: dict[RunningStage, float | None] = dict.fromkeys(RunningStage)
        self._offset = 0.0

    # ---- clocks ----------------------------------------------------------------------------

    def start_time(self, stage: str = RunningStage.TRAINING) -> float | None:
        """``time.monotonic()`` when ``stage`` last started (``None`` if it never did)."""
        return self._start_time[RunningStage(stage)]

    def end_time(self, stage: str = RunningStage.TRAINING) -> float | None:
        """``time.monotonic()`` when ``stage`` last ended (``None`` while it runs or if it never did)."""
        return self._end_time[RunningStage(stage)]

    def time_elapsed(self, stage: str = RunningStage.TRAINING) -> float:
        """Seconds spent in ``stage`` (its last run; for training, including time before a resume)."""
        stage = RunningStage(stage)
        start, end = self._start_time[stage], self._end_time[stage]
        offset = self._offset if stage == RunningStage.TRAINING else 0.0
        if start is None:
            return offset
        return (time.monotonic() if end is None else end) - start + offset

    def time_remaining(self, stage: str = RunningStage.TRAINING) -> float | None:
        """Seconds left of ``duration`` (negative once over); ``None`` without a duration."""
        return None if self._duration is None else self._duration - self.time_elapsed(stage)

    def _start(self, stage: RunningStage) -> None:
        self._start_time[stage], self._end_time[stage] = time.monotonic(), None

    def _end(self, stage: RunningStage) -> None:
        self._end_time[stage] = time.monotonic()

    # ---- hooks -----------------------------------------------------------------------------

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(RunningStage.TRAINING)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end(RunningStage.TRAINING)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(RunningStage.VALIDATING)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end(RunningStage.VALIDATING)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(RunningStage.TESTING)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end(RunningStage.TESTING)

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(RunningStage.PREDICTING)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end(RunningStage.PREDICTING)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._duration is not None:  # a restored clock may already be over
            self._check_time_remaining(trainer)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._interval == "step" and self._duration is not None:
            self._check_time_remaining(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._interval == "epoch" and self._duration is not None:
            self._check_time_remaining(trainer)

    def _check_time_remaining(self, trainer: Trainer) -> None:
        assert self._duration is not None
        # every process must agree, or one would stop while the others wait for it in a collective
        if not trainer.strategy.broadcast(self.time_elapsed(RunningStage.TRAINING) >= self._duration):
            return
        trainer.should_stop = True
        if self._verbose:
            elapsed = timedelta(seconds=int(self.time_elapsed(RunningStage.TRAINING)))
            rank_zero_info(f"Time limit reached. Elapsed time is {elapsed}. Signaling Trainer to stop.")

    # ---- state -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"time_elapsed": {stage.value: self.time_elapsed(stage) for stage in RunningStage}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._offset = float(state_dict.get("time_elapsed", {}).get(RunningStage.TRAINING.value, 0.0))
