"""Type names Lightning users import from ``utilities.types``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union

import torch

from ember.optimization import LRSchedulerConfig

STEP_OUTPUT = Union[torch.Tensor, Mapping[str, Any], None]
EVAL_DATALOADERS = Any
TRAIN_DATALOADERS = Any
OptimizerLRScheduler = Any
LRSchedulerTypeUnion = Any
LRSchedulerPLType = Any

__all__ = ["EVAL_DATALOADERS", "LRSchedulerConfig", "LRSchedulerPLType", "LRSchedulerTypeUnion",
           "OptimizerLRScheduler", "STEP_OUTPUT", "TRAIN_DATALOADERS"]
