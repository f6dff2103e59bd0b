"""``BatchSizeFinder``: find the largest batch size that fits in memory when fit starts (see :mod:`ember.tuner`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ember.callbacks.callback import Callback
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from ember.module import LightningModule
    from ember.trainer.trainer import Trainer

__all__ = ["BatchSizeFinder"]


class BatchSizeFinder(Callback):
    """Before training, run a few steps at growing batch sizes until one runs out of memory, and continue
    the fit with the largest that worked (set as ``batch_arg_name`` on the model, its ``hparams`` or the
    datamodule, which the ``*_dataloader`` methods must read).

    The result is in ``self.optimal_batch_size``. ember runs the search for fit only; to tune the batch
    size of validate/test/predict use ``Tuner(trainer).scale_batch_size(model, method=...)``.

    Args:
        mode: "power" (double until out of memory) or "binsearch" (then bisect, and take ``margin`` off).
        steps_per_trial: steps run at each size.
        init_val: the first size tried.
        max_trials: how many sizes to try at most.
        batch_arg_name: the attribute that holds the batch size.
        margin: the fraction taken off the "binsearch" result, as a safety buffer.
        max_val: the largest size tried.
    """

    SUPPORTED_MODES = ("power", "binsearch")

    def __init__(self, mode: str = "power", steps_per_trial: int = 3, init_val: int = 2, max_trials: int = 25,
                 batch_arg_name: str = "batch_size", margin: float = 0.05, max_val: int = 8192) -> None:
        mode = mode.lower()
        if mode not in self.SUPPORTED_MODES:
            raise ValueError(f"BatchSizeFinder(mode={mode!r}) is not valid; use one of {self.SUPPORTED_MODES}.")
        if not 0.0 <= margin < 1.0:
            raise ValueError(f"BatchSizeFinder(margin={margin}) must be in [0, 1).")
        for name, value in (("steps_per_trial", steps_per_trial), ("init_val", init_val),
                            ("max_trials", max_trials), ("max_val", max_val)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"BatchSizeFinder({name}={value!r}) must be an int >= 1.")
        self._mode, self._steps_per_trial, self._init_val = mode, steps_per_trial, init_val
        self._max_trials, self._batch_arg_name, self._margin, self._max_val = max_trials, batch_arg_name, margin, \
            max_val
        self.optimal_batch_size: int | None = init_val

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit" and trainer._sources.get("train") is not None:
            raise MisconfigurationException(
                "BatchSizeFinder cannot change the batch size of dataloaders passed directly to fit(); build them "
                f"in the LightningModule or a LightningDataModule (reading `{self._batch_arg_name}`) instead.")
        if stage != "fit":
            rank_zero_warn(f"BatchSizeFinder only tunes fit in ember; {stage} keeps the current batch size. Use "
                           f"Tuner(trainer).scale_batch_size(model, method={stage!r}) to tune it.")

    def scale_batch_size(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Run the search now (inside a fit, once the optimizers exist)."""
        from ember.tuner import _scale_batch_size

        self.optimal_batch_size = _scale_batch_size(
            trainer, pl_module, trainer.datamodule, "fit", mode=self._mode, steps_per_trial=self._steps_per_trial,
            init_val=self._init_val, max_trials=self._max_trials, batch_arg_name=self._batch_arg_name,
            margin=self._margin, max_val=self._max_val)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.scale_batch_size(trainer, pl_module)
