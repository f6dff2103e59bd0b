"""``ProgressBar``: the base class of progress-bar callbacks.

It keeps count of the batches processed in the running loop (``train_batch_idx``,
``val_batch_idx``, ...), knows how many batches each loop has (``total_train_batches`` ...) and
gathers what a bar should display (``get_metrics``). Subclasses that override a batch or loop hook
should call ``super()`` so the counters stay right.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ember.callbacks.callback import Callback
from ember.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from ember.module import LightningModule
    from ember.trainer.trainer import Trainer


def _fn_is(trainer: Any, name: str) -> bool:
    state = getattr(trainer, "state", None)
    fn = getattr(state, "fn", None)
    return fn is not None and fn == name


class ProgressBar(Callback):
    """Base class for progress bars; ember's default one is ``TQDMProgressBar``.

    To write your own, override the hooks you need and read the counters, e.g.::

        class PercentBar(ProgressBar):
            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
                print(f"{100 * self.train_batch_idx / self.total_train_batches:.1f}%", end="\\r")
    """

    def __init__(self) -> None:
        self._trainer: Trainer | None = None
        self._current_eval_dataloader_idx: int | None = None
        self._enabled = True
        self._train_batch_idx = 0
        self._val_batch_idx = 0
        self._test_batch_idx = 0
        self._predict_batch_idx = 0

    # ---- on / off --------------------------------------------------------------------------

    def enable(self) -> None:
        """Turn the bar on (the Trainer calls ``disable()`` on ranks other than 0)."""
        self._enabled = True

    def disable(self) -> None:
        """Turn the bar off."""
        self._enabled = False

    @property
    def is_enabled(self) -> bool:
        return bool(self._enabled)

    @property
    def is_disabled(self) -> bool:
        return not self.is_enabled

    # ---- the trainer -----------------------------------------------------------------------

    @property
    def trainer(self) -> Trainer:
        if self._trainer is None:
            raise TypeError(f"The `{self.__class__.__name__}._trainer` reference has not been set yet.")
        return self._trainer

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._trainer = trainer

    # ---- descriptions ----------------------------------------------------------------------

    @property
    def sanity_check_description(self) -> str:
        return "Sanity Checking"

    @property
    def train_description(self) -> str:
        return "Training"

    @property
    def validation_description(self) -> str:
        return "Validation"

    @property
    def test_description(self) -> str:
        return "Testing"

    @property
    def predict_description(self) -> str:
        return "Predicting"

    # ---- counters: batches processed in the running loop -----------------------------------

    @property
    def train_batch_idx(self) -> int:
        """Training batches processed in the current epoch."""
        return self._train_batch_idx

    @property
    def val_batch_idx(self) -> int:
        """Validation (or sanity-check) batches processed in the current dataloader."""
        return self._val_batch_idx

    @property
    def test_batch_idx(self) -> int:
        """Test batches processed in the current dataloader."""
        return self._test_batch_idx

    @property
    def predict_batch_idx(self) -> int:
        """Predict batches processed in the current dataloader."""
        return self._predict_batch_idx

    # ---- totals ----------------------------------------------------------------------------

    @property
    def total_train_batches(self) -> int | float:
        """Training batches per epoch; ``float('inf')`` when the dataloader has no length."""
        return self.trainer.num_training_batches

    @property
    def total_val_batches_current_dataloader(self) -> int | float:
        """Batches in the validation (or sanity-check) dataloader now running."""
        trainer = self.trainer
        idx = self._current_eval_dataloader_idx or 0
        batches = trainer.num_sanity_val_batches if trainer.sanity_checking else trainer.num_val_batches
        return _pick(batches, idx)

    @property
    def total_test_batches_current_dataloader(self) -> int | float:
        return _pick(self.trainer.num_test_batches, self._current_eval_dataloader_idx or 0)

    @property
    def total_predict_batches_current_dataloader(self) -> int | float:
        return _pick(self.trainer.num_predict_batches, self._current_eval_dataloader_idx or 0)

    @property
    def total_val_batches(self) -> int | float:
        """Validation batches (all dataloaders) that will run in the current training epoch; 0
        when this epoch does not validate."""
        trainer = self.trainer
        num_val = list(getattr(trainer, "num_val_batches", None) or [])
        if not num_val:
            return 0
        if _fn_is(trainer, "fit"):
            every = getattr(trainer, "check_val_every_n_epoch", 1)
            if every is not None and every > 0 and (trainer.current_epoch + 1) % every != 0:
                return 0
        return sum(num_val)

    # ---- dataloader switches ---------------------------------------------------------------

    def has_dataloader_changed(self, dataloader_idx: int) -> bool:
        """True (and remembers it) the first time a batch of a new evaluation dataloader arrives."""
        old = self._current_eval_dataloader_idx
        self._current_eval_dataloader_idx = dataloader_idx
        return old != dataloader_idx

    def reset_dataloader_idx_tracker(self) -> None:
        self._current_eval_dataloader_idx = None

    # ---- hooks that keep the counters ------------------------------------------------------

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._train_batch_idx = 0

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._train_batch_idx = batch_idx + 1

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._val_batch_idx = 0

    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx == 0:
            self._val_batch_idx = 0

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:
        self._val_batch_idx = batch_idx + 1

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._test_batch_idx = 0

    def on_test_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx == 0:
            self._test_batch_idx = 0

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:
        self._test_batch_idx = batch_idx + 1

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._predict_batch_idx = 0

    def on_predict_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx == 0:
            self._predict_batch_idx = 0

    def on_predict_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:
        self._predict_batch_idx = batch_idx + 1

    # ---- what to display -------------------------------------------------------------------

    def print(self, *args: Any, **kwargs: Any) -> None:
        """Print a message without breaking the bar; plain ``print`` in the base class."""
        print(*args, **kwargs)

    def get_metrics(
        self, trainer: Trainer, pl_module: LightningModule
    ) -> dict[str, int | str | float | dict[str, float]]:
        """The items shown next to the bar: ``v_num`` (the logger's version) followed by every
        metric logged with ``prog_bar=True``. Override to add or drop items."""
        standard = get_standard_metrics(trainer)
        pbar_metrics = getattr(trainer, "progress_bar_metrics", None) or {}
        duplicates = [k for k in pbar_metrics if k in standard]
        if duplicates:
            rank_zero_warn(
                f"The progress bar already tracks a metric with the name(s) '{', '.join(duplicates)}' and"
                f" `self.log('{duplicates[0]}', ..., prog_bar=True)` will overwrite this value. "
                " If this is undesired, change the name or override `get_metrics()` in the progress bar callback.",
            )
        return {**standard, **pbar_metrics}


def _pick(batches: Any, idx: int) -> int | float:
    if isinstance(batches, (list, tuple)):
        return batches[idx] if idx < len(batches) else 0
    return batches if batches is not None else 0


def get_standard_metrics(trainer: Any) -> dict[str, int | str]:
    """``{"v_num": version}`` from the trainer's logger(s); ``{}`` without one.

    With several loggers the distinct versions are joined with ``_``; a string version is cut to
    its last 4 characters to keep the bar short.
    """
    loggers = list(getattr(trainer, "loggers", None) or [])
    if not loggers:
        return {}
    versions: list[Any] = []
    for logger in loggers:
        v = getattr(logger, "version", None)
        if v is None or v == "":
            continue
        if v not in versions:
            versions.append(v)
    if not versions:
        return {}
    version: int | str = versions[0] if len(versions) == 1 else "_".join(str(v) for v in versions)
    if isinstance(version, str):
        version = version[-4:]
    return {"v_num": version}


def _convert_inf(x: int | float | None) -> int | float | None:
    """Lengths a bar cannot show (``inf``/``nan``/``None``) become ``None`` (an open-ended bar)."""
    if x is None:
        return None
    if isinstance(x, float) and (math.isinf(x) or math.isnan(x)):
        return None
    return x
