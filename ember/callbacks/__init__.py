"""Callbacks: the Callback base and the ones Lightning users expect."""

from ember.callbacks.callback import Callback
from ember.callbacks.early_stopping import EarlyStopping
from ember.callbacks.model_checkpoint import ModelCheckpoint
from ember.callbacks.model_summary import ModelSummary
from ember.callbacks.on_exception_checkpoint import OnExceptionCheckpoint
from ember.callbacks.progress import ProgressBar, TQDMProgressBar

Checkpoint = ModelCheckpoint

__all__ = ["Callback", "Checkpoint", "EarlyStopping", "ModelCheckpoint", "ModelSummary", "OnExceptionCheckpoint",
           "ProgressBar", "TQDMProgressBar"]
