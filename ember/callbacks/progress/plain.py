"""Plain-line progress for output that is not a terminal (CI logs, files, pipes).

A bar redrawn with carriage returns turns into one enormous line in a log file. When stdout is not a
terminal (and not a notebook), the progress bars print one line per epoch instead::

    Epoch 3/9: train_loss=0.123 val_loss=0.456 (1.2 s)

and one line at the end of ``validate``/``test``/``predict``.
"""

from __future__ import annotations

import sys
import time
from typing import Any


def _stdout_is_terminal() -> bool:
    try:
        return bool(sys.stdout.isatty())
    except (AttributeError, ValueError):  # no stdout, or a closed one
        return False


def _plain_output() -> bool:
    """Whether progress should be printed as plain lines (stdout is neither a terminal nor a notebook)."""
    return not _stdout_is_terminal() and "ipykernel" not in sys.modules


def _format_value(value: Any) -> str:
    if hasattr(value, "item") and getattr(value, "numel", lambda: 1)() == 1:
        value = value.item()
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _format_metrics(metrics: dict[str, Any]) -> str:
    """``name=value`` pairs; the logger version (``v_num``) is left out of plain lines."""
    return " ".join(f"{k}={_format_value(v)}" for k, v in metrics.items() if k != "v_num")


class _PlainProgress:
    """Times an epoch or a loop and prints its summary line."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    def start(self, what: str) -> None:
        self._started[what] = time.monotonic()

    def seconds(self, what: str) -> float:
        started = self._started.get(what)
        return 0.0 if started is None else time.monotonic() - started

    def epoch_line(self, trainer: Any, metrics: dict[str, Any]) -> str:
        epoch, max_epochs = trainer.current_epoch, getattr(trainer, "max_epochs", -1)
        head = f"Epoch {epoch}/{max_epochs - 1}" if max_epochs and max_epochs > 0 else f"Epoch {epoch}"
        shown = _format_metrics(metrics)
        return f"{head}: {shown} ({self.seconds('epoch'):.1f} s)" if shown else \
            f"{head} ({self.seconds('epoch'):.1f} s)"

    def loop_line(self, description: str, count: int) -> str:
        return f"{description}: {count} batch{'es' if count != 1 else ''} ({self.seconds(description):.1f} s)"

    @staticmethod
    def emit(line: str) -> None:
        print(line, flush=True)
