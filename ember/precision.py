"""One object per ``precision=`` value: dtype of weights and inputs, autocast, gradient scaling."""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
from torch.optim import Optimizer

_LEGACY = {64: "64-true", "64": "64-true", 32: "32-true", "32": "32-true", 16: "16-mixed", "16": "16-mixed",
           "bf16": "bf16-mixed"}
_VALUES = ("64-true", "32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed")
_TRUE_DTYPES = {"64-true": torch.float64, "32-true": torch.float32, "16-true": torch.float16,
                "bf16-true": torch.bfloat16}


def _convert_floats(data: Any, dtype: torch.dtype) -> Any:
    if isinstance(data, torch.Tensor):
        return data.to(dtype) if data.is_floating_point() else data
    if isinstance(data, (list, tuple)):
        converted = [_convert_floats(x, dtype) for x in data]
        return type(data)(*converted) if hasattr(data, "_fields") else type(data)(converted)
    if isinstance(data, dict):
        return type(data)((k, _convert_floats(v, dtype)) for k, v in data.items())
    return data


class Precision:
    """Full precision in the dtype of ``precision`` ("32-true" by default): nothing to scale or autocast."""

    scaler: Any = None

    def __init__(self, precision: str = "32-true") -> None:
        self.precision = precision
        self.dtype = _TRUE_DTYPES.get(precision, torch.float32)

    def convert_module(self, module: torch.nn.Module) -> torch.nn.Module:
        return module if self.dtype == torch.float32 else module.to(self.dtype)

    def convert_input(self, batch: Any) -> Any:
        return batch if self.dtype == torch.float32 else _convert_floats(batch, self.dtype)

    def forward_context(self) -> contextlib.AbstractContextManager:
        """Context that every ``*_step`` runs in."""
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return _default_dtype(self.dtype)

    def pre_backward(self, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def optimizer_step(self, optimizer: Optimizer, closure: Callable[[], Any], after_closure: Callable[[], None],
                       **kwargs: Any) -> Any:
        """Step ``optimizer``; the closure must call ``after_closure`` itself (see ``scaler``)."""
        return optimizer.step(closure=closure, **kwargs)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):  # type: ignore[no-untyped-def]
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


class MixedPrecision(Precision):
    """Weights in float32, forward under ``torch.autocast``; float16 on CUDA also scales the loss."""

    def __init__(self, precision: str, device_type: str) -> None:
        super().__init__(precision)
        self.device_type = device_type
        self.autocast_dtype = torch.bfloat16 if precision == "bf16-mixed" else torch.float16
        self.scaler = torch.amp.GradScaler(device_type) if precision == "16-mixed" else None

    def forward_context(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device_type, dtype=self.autocast_dtype)

    def pre_backward(self, loss: torch.Tensor) -> torch.Tensor:
        return loss if self.scaler is None else self.scaler.scale(loss)

    def optimizer_step(self, optimizer: Optimizer, closure: Callable[[], Any], after_closure: Callable[[], None],
                       **kwargs: Any) -> Any:
        if self.scaler is None:
            return optimizer.step(closure=closure, **kwargs)
        # GradScaler.step cannot take a closure: run it first, unscale so that hooks and clipping see true
        # gradients, then step (skipped by the scaler when gradients are not finite).
        loss = closure()
        self.scaler.unscale_(optimizer)
        after_closure()
        if loss is None:  # the user skipped this step by returning None from training_step
            self.scaler.update()
            return None
        out = self.scaler.step(optimizer, **kwargs)
        self.scaler.update()
        return out

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def _normalize_precision(precision: Any) -> str:
    value = _LEGACY.get(precision, precision)
    if value not in _VALUES:
        accepted = ", ".join(repr(v) for v in (*_VALUES, 64, 32, 16, "bf16"))
        raise ValueError(f"Trainer(precision={precision!r}) is not supported; use one of {accepted}.")
    return value


def _select_precision(precision: str, device_type: str) -> Precision:
    if precision == "16-mixed" and device_type == "cpu":
        raise ValueError("Trainer(precision='16-mixed') uses float16 autocast with a GradScaler, which needs a GPU; "
                         "on CPU use precision='bf16-mixed' (or '32-true').")
    if precision.endswith("-mixed"):
        return MixedPrecision(precision, device_type)
    return Precision(precision)
