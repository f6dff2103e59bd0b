"""``LearningRateFinder``: run a learning-rate range test when fit starts (see :mod:`ember.tuner`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ember.callbacks.callback import Callback

if TYPE_CHECKING:
    from ember.module import LightningModule
    from ember.trainer.trainer import Trainer

__all__ = ["LearningRateFinder"]


class LearningRateFinder(Callback):
    """Before training, try ``num_training_steps`` learning rates from ``min_lr`` to ``max_lr`` and (with
    ``update_attr``) continue the fit with the suggested one, set on the model and its optimizer.

    The result is in ``self.optimal_lr`` (``.results``, ``.suggestion()``, ``.plot()``). To search again
    later, call ``self.lr_find(trainer, pl_module)`` from another hook (e.g. ``on_train_epoch_start``).

    Args:
        min_lr, max_lr: the range searched.
        num_training_steps: optimizer steps (and learning rates) tried.
        mode: "exponential" (evenly spaced on a log scale) or "linear".
        early_stop_threshold: stop when the smoothed loss exceeds this multiple of the best one (None: never).
        update_attr: set the suggestion on the model (``lr``, ``learning_rate`` or ``attr_name``, as an
            attribute or in ``hparams``).
        attr_name: the attribute to set, when not ``lr``/``learning_rate``.
    """

    SUPPORTED_MODES = ("linear", "exponential")

    def __init__(self, min_lr: float = 1e-8, max_lr: float = 1, num_training_steps: int = 100,
                 mode: str = "exponential", early_stop_threshold: float | None = 4.0, update_attr: bool = True,
                 attr_name: str = "") -> None:
        mode = mode.lower()
        if mode not in self.SUPPORTED_MODES:
            raise ValueError(f"LearningRateFinder(mode={mode!r}) is not valid; use one of {self.SUPPORTED_MODES}.")
        if not 0 < min_lr < max_lr:
            raise ValueError(f"LearningRateFinder needs 0 < min_lr < max_lr, got min_lr={min_lr}, max_lr={max_lr}.")
        if num_training_steps < 1:
            raise ValueError(f"LearningRateFinder(num_training_steps={num_training_steps}) must be >= 1.")
        self._min_lr, self._max_lr, self._num_training_steps = min_lr, max_lr, num_training_steps
        self._mode, self._early_stop_threshold = mode, early_stop_threshold
        self._update_attr, self._attr_name = update_attr, attr_name
        self.optimal_lr: Any = None

    def lr_find(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Run the range test now (inside a fit, once the optimizers exist)."""
        from ember.tuner import _lr_find

        self.optimal_lr = _lr_find(trainer, pl_module, min_lr=self._min_lr, max_lr=self._max_lr,
                                   num_training=self._num_training_steps, mode=self._mode,
                                   early_stop_threshold=self._early_stop_threshold, update_attr=self._update_attr,
                                   attr_name=self._attr_name)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.lr_find(trainer, pl_module)
