"""ember: the PyTorch Lightning 2.x training API, small and fast. ``import ember as pl``."""

from ember.callbacks.callback import Callback
from ember.datamodule import LightningDataModule
from ember.module import LightningModule
from ember.seed import seed_everything
from ember.trainer.trainer import Trainer

__version__ = "0.1.0"

__all__ = ["Callback", "LightningDataModule", "LightningModule", "Trainer", "seed_everything"]
