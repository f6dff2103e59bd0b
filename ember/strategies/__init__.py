"""Strategies: how and where the model runs: one device, or one process per device with DDP."""

from __future__ import annotations

from ember.strategies.strategy import SingleDeviceStrategy, Strategy

__all__ = ["DDPStrategy", "DeepSpeedStrategy", "FSDPStrategy", "SingleDeviceStrategy", "Strategy"]

_LATER = {"ModelParallelStrategy", "XLAStrategy"}


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    if name == "DDPStrategy":  # imported on first use: torch.distributed set-up costs nothing until then
        from ember.strategies.ddp import DDPStrategy

        return DDPStrategy
    if name == "FSDPStrategy":
        from ember.strategies.fsdp import FSDPStrategy

        return FSDPStrategy
    if name == "DeepSpeedStrategy":  # the deepspeed package itself is imported only when the engine is built
        from ember.strategies.deepspeed import DeepSpeedStrategy

        return DeepSpeedStrategy
    if name in _LATER:
        raise NotImplementedError(f"ember.strategies.{name} is not available yet; use strategy='auto', "
                                  "SingleDeviceStrategy or DDPStrategy.")
    raise AttributeError(f"module 'ember.strategies' has no attribute {name!r}")
