"""The Callback base class: every hook ember calls, as a no-op method.

Where each hook fires during ``Trainer.fit`` (callbacks run before the LightningModule's hook of the
same name, except that ModelCheckpoint/EarlyStopping's ``on_train_epoch_end`` runs after the
module's)::

    setup("fit")                    # after prepare_data, configure_callbacks, module.setup
    configure_model / configure_optimizers      (module only)
    on_fit_start
    on_sanity_check_start
        on_validation_start ... on_validation_batch_start/end ... on_validation_end
    on_sanity_check_end
    on_train_start
    for epoch:
        on_train_epoch_start
        for batch:
            on_before_batch_transfer / transfer_batch_to_device / on_after_batch_transfer  (module)
            on_train_batch_start        # returning -1 from the module's hook ends the epoch
            optimizer_step(closure):    # the closure runs:
                training_step, on_before_zero_grad, optimizer_zero_grad,
                on_before_backward, backward, on_after_backward
                on_before_optimizer_step, configure_gradient_clipping
            on_train_batch_end
            [validation when due: on_validation_start ... on_validation_end]
        on_train_epoch_end
    on_train_end
    on_fit_end
    teardown("fit")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch.optim import Optimizer

    from ember.module import LightningModule
    from ember.trainer.trainer import Trainer


class Callback:
    """Base class for callbacks; override the hooks you need."""

    @property
    def state_key(self) -> str:
        """Key under which this callback's ``state_dict`` is stored in a checkpoint."""
        return self.__class__.__qualname__

    def _generate_state_key(self, **kwargs: Any) -> str:
        return f"{self.__class__.__qualname__}{repr(kwargs)}"

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Called when fit, validate, test or predict begins."""

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Called when fit, validate, test or predict ends."""

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when fit begins."""

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when fit ends."""

    def on_sanity_check_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called before the sanity validation steps."""

    def on_sanity_check_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called after the sanity validation steps."""

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """Called before each training batch (after it was moved to the device)."""

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Called after each training batch; ``outputs`` is what ``training_step`` returned."""

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when a training epoch begins."""

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when a training epoch ends (after its last validation)."""

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when a validation epoch begins."""

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when a validation epoch ends."""

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when a test epoch begins."""

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when a test epoch ends."""

    def on_predict_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when a predict epoch begins."""

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when a predict epoch ends."""

    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Called before each validation batch."""

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:
        """Called after each validation batch."""

    def on_test_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Called before each test batch."""

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:
        """Called after each test batch."""

    def on_predict_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Called before each predict batch."""

    def on_predict_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:
        """Called after each predict batch."""

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when training begins (after the sanity check)."""

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when training ends."""

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when a validation loop begins."""

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when a validation loop ends."""

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the test loop begins."""

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the test loop ends."""

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the predict loop begins."""

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called when the predict loop ends."""

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        """Called when fit, validate, test or predict is interrupted by an exception."""

    def state_dict(self) -> dict[str, Any]:
        """State saved in checkpoints under :attr:`state_key`."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def on_save_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Called when a checkpoint dict is being built; may edit it."""

    def on_load_checkpoint(
        self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Called when a checkpoint is being restored."""

    def on_before_backward(
        self, trainer: Trainer, pl_module: LightningModule, loss: torch.Tensor
    ) -> None:
        """Called before ``loss.backward()``."""

    def on_after_backward(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Called after ``loss.backward()``, before the optimizer step."""

    def on_before_optimizer_step(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: Optimizer
    ) -> None:
        """Called before ``optimizer.step()`` (after gradients are unscaled, before clipping)."""

    def on_before_zero_grad(
        self, trainer: Trainer, pl_module: LightningModule, optimizer: Optimizer
    ) -> None:
        """Called before ``optimizer.zero_grad()``."""
