"""What the monitoring callbacks share: when a step is due for logging, and sending numbers to the loggers."""

from __future__ import annotations

from typing import Any


def _should_update_logs(trainer: Any, batch_idx: int | None = None) -> bool:
    """Lightning's rule: every ``log_every_n_steps`` optimizer steps while training (counted before the step
    runs), every ``log_every_n_steps`` batches in evaluation (``batch_idx`` given), and when stopping."""
    every = trainer.log_every_n_steps
    if not every:
        return False
    step = (batch_idx + 1) if batch_idx is not None else trainer._progress.batches_that_stepped + 1
    return step % every == 0 or bool(trainer.should_stop)


def _log_to_loggers(trainer: Any, metrics: dict[str, Any], step: int | None = None) -> None:
    """Send plain numbers straight to every logger, at the step the trainer's own training metrics use."""
    if not metrics:
        return
    step = trainer._progress.batches_that_stepped if step is None else step
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=step)
