"""Experiment loggers: ``from ember.loggers import CSVLogger, TensorBoardLogger, MLFlowLogger, WandbLogger``."""

from __future__ import annotations

from typing import Any

from ember.loggers.csv_logs import CSVLogger
from ember.loggers.logger import DummyLogger, Logger, rank_zero_experiment

__all__ = ["CSVLogger", "DummyLogger", "Logger", "MLFlowLogger", "TensorBoardLogger", "WandbLogger",
           "rank_zero_experiment"]

# The loggers for third-party services import their package only when used: ``import ember`` stays light.
_LAZY = {
    "TensorBoardLogger": "ember.loggers.tensorboard",
    "MLFlowLogger": "ember.loggers.mlflow",
    "WandbLogger": "ember.loggers.wandb",
}
# Lightning loggers that ember does not ship. Naming them gives a clear error instead of a bare AttributeError.
_NOT_YET = {
    "CometLogger": "comet",
    "NeptuneLogger": "neptune",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _NOT_YET:
        raise ImportError(
            f"ember.loggers.{name} is not available in this version of ember. Use ember.loggers.CSVLogger,"
            f" TensorBoardLogger, MLFlowLogger or WandbLogger, or subclass ember.loggers.Logger to send"
            f" metrics to {_NOT_YET[name]} yourself."
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
