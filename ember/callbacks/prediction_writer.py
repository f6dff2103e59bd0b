"""``BasePredictionWriter``: write predictions out (to files, a database...) as ``trainer.predict`` runs.

Subclass it and implement ``write_on_batch_end`` and/or ``write_on_epoch_end``. Each call gets the
indices of the samples in the dataset (``batch_indices``), recorded from the dataloader's sampler, so
predictions can be matched to their inputs even when the data is shuffled. Use it with
``trainer.predict(..., return_predictions=False)`` to keep memory flat on large data sets.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

import torch

from ember.callbacks.callback import Callback
from ember.utilities.exceptions import MisconfigurationException

if TYPE_CHECKING:
    from ember.module import LightningModule
    from ember.trainer.trainer import Trainer

_INTERVALS = ("batch", "epoch", "batch_and_epoch")


class _IndexRecorder:
    """A batch sampler that remembers the sample indices of each batch it hands out."""

    def __init__(self, batch_sampler: Any) -> None:
        self.batch_sampler = batch_sampler
        self.seen: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        self.seen = []
        for indices in self.batch_sampler:
            self.seen.append(list(indices))
            yield indices

    def __len__(self) -> int:
        return len(self.batch_sampler)


def _recording_loader(loader: Any) -> tuple[Any, _IndexRecorder | None]:
    """A copy of a map-style DataLoader whose batch sampler records indices (other loaders unchanged)."""
    from torch.utils.data import DataLoader, IterableDataset

    if isinstance(loader, DataLoader) and isinstance(loader.batch_sampler, _IndexRecorder):
        return loader, loader.batch_sampler
    if not isinstance(loader, DataLoader) or isinstance(loader.dataset, IterableDataset) or \
            loader.batch_sampler is None:
        return loader, None
    recorder = _IndexRecorder(loader.batch_sampler)
    copy = DataLoader(loader.dataset, batch_sampler=recorder, num_workers=loader.num_workers,
                      collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, timeout=loader.timeout,
                      worker_init_fn=loader.worker_init_fn, multiprocessing_context=loader.multiprocessing_context,
                      generator=loader.generator, prefetch_factor=loader.prefetch_factor,
                      persistent_workers=loader.persistent_workers)
    return copy, recorder


def _to_cpu(data: Any) -> Any:
    if isinstance(data, torch.Tensor):
        return data.detach().cpu()
    if isinstance(data, dict):
        return {k: _to_cpu(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(_to_cpu(v) for v in data) if not hasattr(data, "_fields") else type(data)(
            *(_to_cpu(v) for v in data))
    return data


class BasePredictionWriter(Callback):
    """Base class for writing predictions during ``trainer.predict``.

    Args:
        write_interval: ``"batch"`` calls ``write_on_batch_end`` after each batch, ``"epoch"`` calls
            ``write_on_epoch_end`` once with all predictions, ``"batch_and_epoch"`` both.

    Example::

        class TorchWriter(BasePredictionWriter):
            def __init__(self, out_dir):
                super().__init__(write_interval="batch")
                self.out_dir = out_dir

            def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                                   dataloader_idx):
                torch.save({"prediction": prediction, "indices": batch_indices},
                           os.path.join(self.out_dir, f"{dataloader_idx}-{batch_idx}.pt"))
    """

    def __init__(self, write_interval: Literal["batch", "epoch", "batch_and_epoch"] = "batch") -> None:
        if write_interval not in _INTERVALS:
            raise MisconfigurationException(f"BasePredictionWriter(write_interval={write_interval!r}) is not "
                                            f"valid; use one of {', '.join(map(repr, _INTERVALS))}.")
        self.write_interval = write_interval
        self._recorders: list[_IndexRecorder | None] = []
        self._predictions: list[list[Any]] = []
        self._batch_indices: list[list[list[int]]] = []

    @property
    def _on_batch(self) -> bool:
        return self.write_interval in ("batch", "batch_and_epoch")

    @property
    def _on_epoch(self) -> bool:
        return self.write_interval in ("epoch", "batch_and_epoch")

    def write_on_batch_end(self, trainer: Trainer, pl_module: LightningModule, prediction: Any,
                           batch_indices: list[int] | None, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        """Write the predictions of one batch; ``batch_indices`` are its samples' indices in the dataset."""
        raise NotImplementedError(f"{type(self).__name__}(write_interval={self.write_interval!r}) must implement "
                                  "write_on_batch_end.")

    def write_on_epoch_end(self, trainer: Trainer, pl_module: LightningModule, predictions: list[Any],
                           batch_indices: list[list[list[int]]]) -> None:
        """Write all predictions (a list of batch outputs, one list per dataloader when there are several);
        ``batch_indices[dataloader][batch]`` lists each batch's sample indices."""
        raise NotImplementedError(f"{type(self).__name__}(write_interval={self.write_interval!r}) must implement "
                                  "write_on_epoch_end.")

    # ---- hooks -----------------------------------------------------------------------------

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        loaders = trainer.predict_dataloaders
        self._recorders = []
        if isinstance(loaders, list):
            for i, loader in enumerate(loaders):  # replaced in place: the predict loop iterates this list
                loaders[i], recorder = _recording_loader(loader)
                self._recorders.append(recorder)
        self._predictions = [[] for _ in self._recorders]
        self._batch_indices = [[] for _ in self._recorders]

    def _indices(self, batch_idx: int, dataloader_idx: int) -> list[int]:
        recorder = self._recorders[dataloader_idx] if dataloader_idx < len(self._recorders) else None
        if recorder is None or batch_idx >= len(recorder.seen):
            return []
        return recorder.seen[batch_idx]

    def on_predict_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        indices = self._indices(batch_idx, dataloader_idx)
        if self._on_epoch and dataloader_idx < len(self._predictions):
            self._predictions[dataloader_idx].append(_to_cpu(outputs))
            self._batch_indices[dataloader_idx].append(indices)
        if self._on_batch:
            self.write_on_batch_end(trainer, pl_module, outputs, indices, batch, batch_idx, dataloader_idx)

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._on_epoch:
            return
        predictions = self._predictions[0] if len(self._predictions) == 1 else self._predictions
        self.write_on_epoch_end(trainer, pl_module, predictions, self._batch_indices)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._predictions, self._batch_indices = [], []
