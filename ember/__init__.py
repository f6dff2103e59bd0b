"""ember: the PyTorch Lightning 2.x training API, small and fast. ``import ember as pl``."""

from __future__ import annotations

import importlib
from types import ModuleType

from ember.callbacks.callback import Callback
from ember.datamodule import LightningDataModule
from ember.module import LightningModule
from ember.seed import seed_everything
from ember.trainer.trainer import Trainer

__version__ = "0.1.0"

__all__ = ["Callback", "LightningDataModule", "LightningModule", "Trainer", "seed_everything"]

# `pl.loggers.CSVLogger(...)`, `pl.tuner.Tuner(...)`: submodules load on first use, keeping `import ember` fast
_SUBMODULES = {"accelerators", "callbacks", "cli", "core", "loggers", "plot", "profilers", "strategies", "trainer",
               "tuner", "utilities"}


def __getattr__(name: str) -> ModuleType:
    if name in _SUBMODULES:
        return importlib.import_module(f"ember.{name}")
    raise AttributeError(f"module 'ember' has no attribute {name!r}")
