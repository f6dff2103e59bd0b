"""Lightning's ``core`` names: LightningModule, LightningDataModule, optimizers."""

from ember.datamodule import LightningDataModule
from ember.module import LightningModule
from ember.optimization import LightningOptimizer

__all__ = ["LightningDataModule", "LightningModule", "LightningOptimizer"]
