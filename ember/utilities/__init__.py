"""Helpers Lightning users import from ``lightning.pytorch.utilities``."""

from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import (
    rank_zero_debug,
    rank_zero_deprecation,
    rank_zero_info,
    rank_zero_only,
    rank_zero_warn,
)
from ember.utilities.throughput import measure_flops

__all__ = [
    "MisconfigurationException",
    "measure_flops",
    "rank_zero_debug",
    "rank_zero_deprecation",
    "rank_zero_info",
    "rank_zero_only",
    "rank_zero_warn",
]
