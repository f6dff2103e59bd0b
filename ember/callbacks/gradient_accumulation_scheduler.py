"""``GradientAccumulationScheduler``: change ``trainer.accumulate_grad_batches`` from one epoch to the next."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ember.callbacks.callback import Callback
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from ember.module import LightningModule
    from ember.trainer.trainer import Trainer


class GradientAccumulationScheduler(Callback):
    """Accumulate gradients over a number of batches that depends on the epoch.

    Args:
        scheduling: ``{first epoch (0-based): factor}``; ``{0: 1, 4: 2, 8: 4}`` steps the optimizer every
            batch in epochs 0-3, every 2 batches in epochs 4-7 and every 4 from epoch 8 on. Epochs before
            the first key use 1.

    Do not combine it with ``Trainer(accumulate_grad_batches=...)``.
    """

    def __init__(self, scheduling: dict[int, int]) -> None:
        if not scheduling:
            raise TypeError("GradientAccumulationScheduler(scheduling=...) needs at least one {epoch: factor} entry.")
        if any(not isinstance(k, int) or isinstance(k, bool) or k < 0 for k in scheduling):
            raise MisconfigurationException(f"GradientAccumulationScheduler: epochs must be ints >= 0, got "
                                            f"{list(scheduling)}.")
        if any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in scheduling.values()):
            raise MisconfigurationException(f"GradientAccumulationScheduler: factors must be ints >= 1, got "
                                            f"{list(scheduling.values())}.")
        self.scheduling = {0: 1, **scheduling}
        self.epochs = sorted(self.scheduling)
        self._checked = False

    def going_to_accumulate_grad_batches(self) -> bool:
        return any(factor > 1 for factor in self.scheduling.values())

    def get_accumulate_grad_batches(self, epoch: int) -> int:
        """The factor in force at ``epoch``."""
        return self.scheduling[max(e for e in self.epochs if e <= epoch)] if epoch >= 0 else 1

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not pl_module.automatic_optimization:
            raise RuntimeError("GradientAccumulationScheduler works with automatic optimization only; with "
                               "`automatic_optimization = False` accumulate in training_step yourself.")
        if not self._checked and trainer.accumulate_grad_batches != 1:
            raise ValueError("Trainer(accumulate_grad_batches=...) and GradientAccumulationScheduler were both "
                             "given; use one of them.")
        self._checked = True
        from ember.module import LightningModule

        overridden = [name for name in ("optimizer_step", "optimizer_zero_grad")
                      if getattr(type(pl_module), name) is not getattr(LightningModule, name)]
        if overridden and self.going_to_accumulate_grad_batches():
            rank_zero_warn(f"GradientAccumulationScheduler: the module overrides {', '.join(overridden)}, which "
                           "then runs once per optimizer step, not once per batch.")

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainer.accumulate_grad_batches = self.get_accumulate_grad_batches(trainer.current_epoch)
