"""Strategies: how and where the model runs. Single-device for now; distributed ones come later."""

from __future__ import annotations

from ember.strategies.strategy import SingleDeviceStrategy, Strategy

__all__ = ["SingleDeviceStrategy", "Strategy"]

_LATER = {"DDPStrategy", "FSDPStrategy", "DeepSpeedStrategy", "ModelParallelStrategy", "XLAStrategy"}


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    if name in _LATER:
        raise NotImplementedError(f"ember.strategies.{name} is not available yet: ember runs on a single device "
                                  "for now; use strategy='auto' (or SingleDeviceStrategy).")
    raise AttributeError(f"module 'ember.strategies' has no attribute {name!r}")
