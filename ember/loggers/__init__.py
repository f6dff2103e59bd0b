"""Experiment loggers: ``from ember.loggers import CSVLogger, Logger``."""

from __future__ import annotations

from typing import Any

from ember.loggers.csv_logs import CSVLogger
from ember.loggers.logger import DummyLogger, Logger, rank_zero_experiment

__all__ = ["CSVLogger", "DummyLogger", "Logger", "rank_zero_experiment"]

# Lightning loggers that ember does not ship yet. Naming them gives a clear error instead of
# a bare AttributeError.
_NOT_YET = {
    "TensorBoardLogger": "tensorboard",
    "MLFlowLogger": "mlflow",
    "WandbLogger": "wandb",
    "CometLogger": "comet",
    "NeptuneLogger": "neptune",
}


def __getattr__(name: str) -> Any:
    if name in _NOT_YET:
        raise ImportError(
            f"ember.loggers.{name} is not available in this version of ember; it arrives in a"
            f" later release. Use ember.loggers.CSVLogger, or subclass ember.loggers.Logger to send"
            f" metrics to {_NOT_YET[name]} yourself."
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
