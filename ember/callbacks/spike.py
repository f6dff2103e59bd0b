"""``SpikeDetection``: notice training-loss spikes against a running window of recent losses.

A loss is a spike when, after ``warmup`` batches, it is worse than the previous loss and differs from
the window's running mean by more than ``atol`` and by more than ``rtol * mean`` (and by more than
``n_std`` standard deviations, when given); a non-finite loss is always a spike with ``finite_only``.
On a spike the batch and the one before it are recorded in ``bad_batches`` and in
``exclude_batches_path`` (JSON), then training either stops with ``TrainingSpikeException``
(``action="error"``, Lightning's behaviour) or goes on with a warning (``action="warn"``).
"""

from __future__ import annotations

import json
import math
import os
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import torch

from ember.callbacks.callback import Callback
from ember.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from ember.module import LightningModule
    from ember.trainer.trainer import Trainer


class TrainingSpikeException(RuntimeError):
    """Raised by :class:`SpikeDetection` when the training loss spikes."""

    def __init__(self, batch_idx: int, *args: Any) -> None:
        super().__init__(f"Training spike detected in batch {batch_idx}", *args)
        self.batch_idx = batch_idx


class SpikeDetection(Callback):
    """Detect training-loss spikes.

    Args:
        mode: ``"min"`` when lower losses are better, ``"max"`` otherwise.
        window: how many recent (non-spike) losses the running mean and standard deviation cover.
        warmup: batches (``batch_idx``) before detection starts.
        atol: absolute tolerance: a spike differs from the mean by at least this much (``None``: no check).
        rtol: relative tolerance: a spike differs from the mean by at least ``rtol * |mean|``.
        exclude_batches_path: JSON file (or folder for ``skip_batches.json``) listing the batches to skip
            when re-running; default ``<default_root_dir>/skip_batches.json``.
        finite_only: treat NaN/inf losses as spikes (``False``: ignore them for the statistics only).
        action: ``"error"`` raises ``TrainingSpikeException``; ``"warn"`` warns and keeps training.
        n_std: if given, a spike must also lie more than this many running standard deviations away.
    """

    def __init__(self, mode: Literal["min", "max"] = "min", window: int = 10, warmup: int = 1,
                 atol: float | None = None, rtol: float | None = 2.0,
                 exclude_batches_path: str | os.PathLike | None = None, finite_only: bool = True,
                 action: Literal["error", "warn"] = "error", n_std: float | None = None) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"SpikeDetection(mode={mode!r}): use 'min' or 'max'.")
        if action not in ("error", "warn"):
            raise ValueError(f"SpikeDetection(action={action!r}): use 'error' or 'warn'.")
        if window < 1:
            raise ValueError(f"SpikeDetection(window={window}): use a window of at least 1 loss.")
        self.mode = mode
        self.window = window
        self.warmup = warmup
        self.atol = atol
        self.rtol = rtol
        self.n_std = n_std
        self.exclude_batches_path = None if exclude_batches_path is None else os.fspath(exclude_batches_path)
        self.finite_only = finite_only
        self.action = action
        self.bad_batches: list[int] = []
        self.spikes: list[dict[str, Any]] = []  # every spike seen: epoch, batch_idx, global_step, loss, mean
        self.last_val: float | None = None
        self._values: deque[float] = deque(maxlen=window)

    # ---- statistics ------------------------------------------------------------------------

    @property
    def running_mean(self) -> float | None:
        return sum(self._values) / len(self._values) if self._values else None

    @property
    def running_std(self) -> float | None:
        if len(self._values) < 2:
            return None
        mean = self.running_mean
        return math.sqrt(sum((v - mean) ** 2 for v in self._values) / (len(self._values) - 1))  # type: ignore

    def _is_spike(self, loss: float) -> bool:
        if not math.isfinite(loss):
            return self.finite_only
        mean = self.running_mean
        if mean is None:
            return False
        if self.last_val is not None:
            change = loss - self.last_val
            if (change <= 0) if self.mode == "min" else (change >= 0):
                return False  # as good as or better than the previous loss
        gap = abs(loss - mean)
        if self.atol is not None and gap < abs(self.atol):
            return False
        if self.rtol is not None and gap < abs(self.rtol * mean):
            return False
        std = self.running_std
        return not (self.n_std is not None and std is not None and gap <= self.n_std * std)

    # ---- the hook --------------------------------------------------------------------------

    @torch.no_grad()
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if isinstance(outputs, torch.Tensor):
            loss_tensor = outputs
        elif isinstance(outputs, Mapping) and "loss" in outputs:
            loss_tensor = outputs["loss"]
        else:
            raise TypeError(f"SpikeDetection needs training_step to return the loss (a tensor or a dict with "
                            f"'loss'); got {type(outputs).__name__}.")
        loss = float(loss_tensor.detach().float().mean())  # one host sync per batch
        if batch_idx >= self.warmup and self._is_spike(loss):
            self._handle_spike(trainer, batch_idx, loss)
        elif math.isfinite(loss):
            self._values.append(loss)
            self.last_val = loss

    def _handle_spike(self, trainer: Trainer, batch_idx: int, loss: float) -> None:
        self.bad_batches.extend([batch_idx - 1, batch_idx])
        self.spikes.append({"epoch": trainer.current_epoch, "batch_idx": batch_idx,
                            "global_step": trainer.global_step, "loss": loss, "running_mean": self.running_mean})
        path = self._path(trainer)
        if trainer.is_global_zero:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path, "w") as f:
                json.dump(self.bad_batches, f, indent=4)
        if self.action == "error":
            raise TrainingSpikeException(batch_idx=batch_idx)
        rank_zero_warn(f"Training loss spike in batch {batch_idx} of epoch {trainer.current_epoch}: loss {loss:.4g}"
                       f" against a running mean of {self.running_mean:.4g}; recorded in {path}.")

    def _path(self, trainer: Trainer) -> str:
        path = self.exclude_batches_path or trainer.default_root_dir
        return path if path.endswith(".json") else os.path.join(path, "skip_batches.json")

    # ---- state -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"last_val": self.last_val, "mode": self.mode, "warmup": self.warmup, "atol": self.atol,
                "rtol": self.rtol, "bad_batches": list(self.bad_batches), "bad_batches_path": self.exclude_batches_path,
                "values": list(self._values), "spikes": list(self.spikes)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_val = state_dict.get("last_val")
        self.bad_batches = list(state_dict.get("bad_batches", []))
        self.exclude_batches_path = state_dict.get("bad_batches_path", self.exclude_batches_path)
        self._values = deque(state_dict.get("values", []), maxlen=self.window)
        self.spikes = list(state_dict.get("spikes", []))
