"""A Logger that keeps everything in memory, for tests that check what callbacks and the Trainer log."""

from __future__ import annotations

from typing import Any

from ember.loggers import Logger


class MemoryLogger(Logger):
    """Records every ``log_metrics`` call as ``(step, metrics)`` and the hyperparameters."""

    def __init__(self) -> None:
        self.calls: list[tuple[int | None, dict[str, Any]]] = []
        self.hparams: dict[str, Any] = {}

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self.calls.append((step, dict(metrics)))

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        self.hparams.update(dict(params))

    def series(self, key: str) -> list[tuple[int | None, Any]]:
        """``[(step, value), ...]`` of every logged value of ``key``."""
        return [(step, metrics[key]) for step, metrics in self.calls if key in metrics]
