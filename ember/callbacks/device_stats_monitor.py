"""``DeviceStatsMonitor``: log device (and optionally CPU) statistics around every batch.

Keys are ``DeviceStatsMonitor.<hook>/<stat>``, e.g. ``DeviceStatsMonitor.on_train_batch_end/cpu_percent``
or ``.../allocated_bytes.all.current`` on CUDA (``torch.cuda.memory_stats``). CPU statistics
(``cpu_percent``, ``cpu_vm_percent``, ``cpu_swap_percent``) need ``psutil``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ember.callbacks._logging import _should_update_logs
from ember.callbacks.callback import Callback
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.imports import _package_available

if TYPE_CHECKING:
    from ember.module import LightningModule
    from ember.trainer.trainer import Trainer


def get_cpu_stats() -> dict[str, float]:
    """CPU utilisation, virtual memory and swap use, in percent (needs ``psutil``)."""
    if not _package_available("psutil"):
        raise ModuleNotFoundError("CPU statistics need `psutil`; `pip install psutil`.")
    import psutil

    return {"cpu_vm_percent": psutil.virtual_memory().percent, "cpu_percent": psutil.cpu_percent(),
            "cpu_swap_percent": psutil.swap_memory().percent}


def get_device_stats(device: torch.device) -> dict[str, float]:
    """What can be measured about ``device``: CUDA allocator statistics, MPS memory, CPU usage."""
    if device.type == "cuda":
        return {k: float(v) for k, v in torch.cuda.memory_stats(device).items() if isinstance(v, (int, float))}
    if device.type == "mps":
        return {"mps.current_allocated_bytes": float(torch.mps.current_allocated_memory()),
                "mps.driver_allocated_bytes": float(torch.mps.driver_allocated_memory())}
    return get_cpu_stats()


class DeviceStatsMonitor(Callback):
    """Log device statistics at the start and end of every train/validation/test batch that is due for
    logging (``Trainer(log_every_n_steps=...)``).

    Args:
        cpu_stats: ``None`` logs CPU statistics only when training on the CPU, ``True`` always (with the
            device's), ``False`` never.
    """

    def __init__(self, cpu_stats: bool | None = None) -> None:
        self._cpu_stats = cpu_stats

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if not trainer.loggers:
            raise MisconfigurationException("DeviceStatsMonitor needs a logger, but the Trainer has none "
                                            "(logger=False); pass logger=True or a Logger.")
        on_cpu = trainer.strategy.root_device.type == "cpu"
        if (self._cpu_stats or (self._cpu_stats is None and on_cpu)) and not _package_available("psutil"):
            raise ModuleNotFoundError("DeviceStatsMonitor cannot log CPU statistics without `psutil`; "
                                      "`pip install psutil` or pass cpu_stats=False.")

    def _log_stats(self, trainer: Trainer, hook: str, batch_idx: int | None = None) -> None:
        if not trainer.loggers or not _should_update_logs(trainer, batch_idx):
            return
        device = trainer.strategy.root_device
        if device.type == "cpu":
            if self._cpu_stats is False:
                return
            stats = get_cpu_stats()
        else:
            stats = get_device_stats(device)
            if self._cpu_stats:
                stats.update(get_cpu_stats())
        prefix = f"{type(self).__qualname__}.{hook}"
        for logger in trainer.loggers:
            sep = logger.group_separator
            logger.log_metrics({f"{prefix}{sep}{k}": v for k, v in stats.items()},
                               step=trainer._progress.batches_that_stepped)

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._log_stats(trainer, "on_train_batch_start")

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._log_stats(trainer, "on_train_batch_end")

    def on_validation_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        self._log_stats(trainer, "on_validation_batch_start", batch_idx)

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self._log_stats(trainer, "on_validation_batch_end", batch_idx)

    def on_test_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        self._log_stats(trainer, "on_test_batch_start", batch_idx)

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        self._log_stats(trainer, "on_test_batch_end", batch_idx)
