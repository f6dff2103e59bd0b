"""Callbacks: the Callback base and the ones Lightning users expect."""

from ember.callbacks.batch_size_finder import BatchSizeFinder
from ember.callbacks.callback import Callback
from ember.callbacks.device_stats_monitor import DeviceStatsMonitor
from ember.callbacks.early_stopping import EarlyStopping
from ember.callbacks.finetuning import BackboneFinetuning, BaseFinetuning
from ember.callbacks.gradient_accumulation_scheduler import GradientAccumulationScheduler
from ember.callbacks.lambda_function import LambdaCallback
from ember.callbacks.lr_finder import LearningRateFinder
from ember.callbacks.lr_monitor import LearningRateMonitor
from ember.callbacks.model_checkpoint import ModelCheckpoint
from ember.callbacks.model_summary import ModelSummary
from ember.callbacks.on_exception_checkpoint import OnExceptionCheckpoint
from ember.callbacks.prediction_writer import BasePredictionWriter
from ember.callbacks.progress import ProgressBar, TQDMProgressBar
from ember.callbacks.progress.rich_progress import RichProgressBar
from ember.callbacks.rich_model_summary import RichModelSummary
from ember.callbacks.spike import SpikeDetection
from ember.callbacks.stochastic_weight_avg import StochasticWeightAveraging
from ember.callbacks.throughput_monitor import ThroughputMonitor
from ember.callbacks.timer import Timer
from ember.callbacks.weight_averaging import EMAWeightAveraging, WeightAveraging

Checkpoint = ModelCheckpoint

__all__ = ["BatchSizeFinder", "Callback", "Checkpoint", "EarlyStopping", "LearningRateFinder", "ModelCheckpoint",
           "ModelSummary", "OnExceptionCheckpoint", "ProgressBar", "TQDMProgressBar"]
__all__ += ["BackboneFinetuning", "BaseFinetuning", "BasePredictionWriter", "DeviceStatsMonitor",
            "EMAWeightAveraging", "GradientAccumulationScheduler", "LambdaCallback", "LearningRateMonitor",
            "RichModelSummary", "RichProgressBar", "SpikeDetection", "StochasticWeightAveraging", "ThroughputMonitor",
            "Timer", "WeightAveraging"]
