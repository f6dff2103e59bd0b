"""Throughput arithmetic: rolling rates over a window, FLOP counting and the device's peak FLOP/s (for MFU)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import torch

# Peak dense FLOP/s from the vendors' data sheets, by compute dtype ("tf32" is float32 on tensor cores).
# Keys are matched against the lower-cased `torch.cuda.get_device_name()`; more specific names first.
_CUDA_PEAK_FLOPS: list[tuple[str, dict[Any, float]]] = [
    ("h200", {torch.float64: 34e12, torch.float32: 67e12, "tf32": 495e12, torch.bfloat16: 989e12,
              torch.float16: 989e12}),
    ("h100 nvl", {torch.float64: 30e12, torch.float32: 60e12, "tf32": 418e12, torch.bfloat16: 835e12,
                  torch.float16: 835e12}),
    ("h100 pcie", {torch.float64: 26e12, torch.float32: 51e12, "tf32": 378e12, torch.bfloat16: 756e12,
                   torch.float16: 756e12}),
    ("h100", {torch.float64: 34e12, torch.float32: 67e12, "tf32": 495e12, torch.bfloat16: 989e12,
              torch.float16: 989e12}),
    ("a100", {torch.float64: 9.7e12, torch.float32: 19.5e12, "tf32": 156e12, torch.bfloat16: 312e12,
              torch.float16: 312e12}),
    ("a10g", {torch.float32: 31.2e12, "tf32": 62.5e12, torch.bfloat16: 125e12, torch.float16: 125e12}),
    ("l40s", {torch.float32: 91.6e12, "tf32": 183e12, torch.bfloat16: 362e12, torch.float16: 362e12}),
    ("l4", {torch.float32: 30.3e12, "tf32": 60e12, torch.bfloat16: 121e12, torch.float16: 121e12}),
    ("v100", {torch.float64: 7.8e12, torch.float32: 15.7e12, torch.float16: 125e12}),
    ("t4", {torch.float32: 8.1e12, torch.float16: 65e12}),
]


def get_available_flops(device: torch.device, dtype: torch.dtype) -> float | None:
    """The peak FLOP/s of ``device`` for ``dtype``; ``None`` when unknown (CPUs, unlisted GPUs)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device).lower()
    key: Any = dtype
    if dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest":
        key = "tf32"
    for pattern, table in _CUDA_PEAK_FLOPS:
        if pattern in name:
            return table.get(key, table.get(dtype))
    return None


def measure_flops(model: torch.nn.Module, forward_fn: Callable[[], torch.Tensor],
                  loss_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> int:
    """FLOPs of ``forward_fn()`` (plus the backward of ``loss_fn(output)`` when given), counted with
    ``torch.utils.flop_counter``. Build the model on the ``meta`` device to count without computing::

        with torch.device("meta"):
            model, x = MyModel(), torch.randn(32, 128)
        flops_per_batch = measure_flops(model, lambda: model(x), lambda y: y.sum())
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        if loss_fn is None:
            forward_fn()
        else:
            loss_fn(forward_fn()).backward()
    return counter.get_total_flops()


class Throughput:
    """Rates over the last ``window_size`` updates. Feed it running totals with ``update`` and read
    ``compute()``: totals (``time``, ``batches``, ``samples``, ``lengths``) always, per-device rates
    (``device/batches_per_sec``, ``device/samples_per_sec``, ``device/items_per_sec``,
    ``device/flops_per_sec``, ``device/mfu``) once the window is full, global rates when
    ``world_size > 1``."""

    def __init__(self, available_flops: float | None = None, world_size: int = 1, window_size: int = 100,
                 separator: str = "/") -> None:
        if window_size < 2:
            raise ValueError(f"Throughput(window_size={window_size}) needs at least 2 updates to measure a rate.")
        self.available_flops = available_flops
        self.world_size = world_size
        self.separator = separator
        self._time: deque[float] = deque(maxlen=window_size)
        self._batches: deque[int] = deque(maxlen=window_size)
        self._samples: deque[int] = deque(maxlen=window_size)
        self._lengths: deque[int] = deque(maxlen=window_size)
        self._flops: deque[float] = deque(maxlen=window_size)

    def update(self, *, time: float, batches: int, samples: int, lengths: int | None = None,
               flops: float | None = None) -> None:
        """``time``, ``batches``, ``samples``, ``lengths``: totals so far; ``flops``: this batch's FLOPs."""
        if samples < batches:
            raise ValueError(f"Throughput.update: samples ({samples}) must be >= batches ({batches}).")
        if lengths is not None and lengths < samples:
            raise ValueError(f"Throughput.update: lengths ({lengths}) must be >= samples ({samples}).")
        self._time.append(time)
        self._batches.append(batches)
        self._samples.append(samples)
        if lengths is not None:
            self._lengths.append(lengths)
        if flops is not None:
            self._flops.append(flops * self.world_size)

    def compute(self) -> dict[str, float]:
        sep, full = self.separator, self._time.maxlen
        metrics: dict[str, float] = {"time": self._time[-1], "batches": self._batches[-1],
                                     "samples": self._samples[-1]}
        if self._lengths:
            metrics["lengths"] = self._lengths[-1]
        if len(self._time) < full:  # type: ignore[operator]
            return metrics
        elapsed = self._time[-1] - self._time[0]
        if elapsed <= 0:
            return metrics
        rates = {"batches_per_sec": (self._batches[-1] - self._batches[0]) / elapsed,
                 "samples_per_sec": (self._samples[-1] - self._samples[0]) / elapsed}
        if len(self._lengths) == full:
            rates["items_per_sec"] = (self._lengths[-1] - self._lengths[0]) / elapsed
        if len(self._flops) == full:
            # FLOPs done between the first and the last timestamp: every batch but the first in the window
            rates["flops_per_sec"] = (sum(self._flops) - self._flops[0]) / elapsed
        for key, value in rates.items():
            per_device = value / self.world_size if key == "flops_per_sec" else value
            metrics[f"device{sep}{key}"] = per_device
            if self.world_size > 1:
                metrics[key] = value if key == "flops_per_sec" else value * self.world_size
        if "flops_per_sec" in rates and self.available_flops:
            metrics[f"device{sep}mfu"] = metrics[f"device{sep}flops_per_sec"] / self.available_flops
        return metrics

    def reset(self) -> None:
        for window in (self._time, self._batches, self._samples, self._lengths, self._flops):
            window.clear()
