"""``WeightAveraging`` and ``EMAWeightAveraging``: keep an averaged copy of the weights during training.

The copy is a ``torch.optim.swa_utils.AveragedModel``, updated after optimizer steps (and/or epochs, as
``should_update`` decides). Validation runs on the averaged weights (they are swapped in for the
validation epoch and swapped back after), checkpoints store them as ``state_dict`` (the live weights go to
``current_model_state``, so that resuming continues training exactly), and when training ends they
replace the model's weights.
"""

from __future__ import annotations

import itertools
from copy import deepcopy
from typing import TYPE_CHECKING, Any

import torch

from ember.callbacks.callback import Callback
from ember.callbacks.stochastic_weight_avg import _averaged_model
from ember.utilities.rank_zero import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:
    from ember.module import LightningModule
    from ember.trainer.trainer import Trainer


class WeightAveraging(Callback):
    """Average the model's weights as training goes; the base of :class:`EMAWeightAveraging`.

    Args:
        device: where the averaged copy lives; ``None`` keeps it with the model.
        use_buffers: average buffers (batch-norm statistics) too; ``False`` averages parameters only.
        **kwargs: passed to ``AveragedModel`` (``avg_fn=...`` or ``multi_avg_fn=...``; the default is the
            equal-weight average, i.e. SWA).

    Override ``should_update(step_idx=None, epoch_idx=None)`` to choose when to update (default: after
    every optimizer step).
    """

    def __init__(self, device: torch.device | str | int | None = None, use_buffers: bool = True,
                 **kwargs: Any) -> None:
        self._device = torch.device(device) if isinstance(device, str) else device
        self._use_buffers = use_buffers
        self._kwargs = kwargs
        self._average_model: torch.optim.swa_utils.AveragedModel | None = None
        self._latest_update_step = 0
        self._latest_update_epoch = -1

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        """Whether to fold the current weights in after optimizer step ``step_idx`` (0-based) or at the end
        of epoch ``epoch_idx``; exactly one of them is given."""
        return step_idx is not None

    @property
    def average_model(self) -> torch.nn.Module | None:
        """The averaged copy of the LightningModule (``None`` before fit)."""
        return None if self._average_model is None else self._average_model.module

    # ---- training --------------------------------------------------------------------------

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        from ember.module import LightningModule

        if type(pl_module).configure_model is not LightningModule.configure_model:
            rank_zero_warn("WeightAveraging copies the whole model; layers created in configure_model are built "
                           "now, unsharded.")
            pl_module.configure_model()
        self._average_model = _averaged_model(pl_module, self._device or pl_module.device,
                                              use_buffers=self._use_buffers, **self._kwargs)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step > self._latest_update_step and self.should_update(step_idx=step - 1):
            assert self._average_model is not None
            self._average_model.update_parameters(pl_module)
            self._latest_update_step = step

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch = trainer.current_epoch
        if epoch > self._latest_update_epoch and self.should_update(epoch_idx=epoch):
            assert self._average_model is not None
            self._average_model.update_parameters(pl_module)
            self._latest_update_epoch = epoch

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._average_model is not None:
            for average, current in self._pairs(pl_module):
                current.data.copy_(average.data)

    # ---- validation runs on the averaged weights -------------------------------------------

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._average_model is not None:
            self._swap(pl_module)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._average_model is not None:
            self._swap(pl_module)

    def _pairs(self, pl_module: LightningModule) -> Any:
        assert self._average_model is not None
        average = self._average_model.module
        return zip(itertools.chain(average.parameters(), average.buffers()),
                   itertools.chain(pl_module.parameters(), pl_module.buffers()))

    def _swap(self, pl_module: LightningModule) -> None:
        for average, current in self._pairs(pl_module):
            held = average.data.clone()
            average.data.copy_(current.data)
            current.data.copy_(held)

    # ---- checkpoints -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"latest_update_step": self._latest_update_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._latest_update_step = state_dict["latest_update_step"]

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if self._average_model is None:
            rank_zero_info("WeightAveraging: a checkpoint saved outside fit holds the model's weights only.")
            return
        state = self._average_model.state_dict()
        checkpoint["current_model_state"] = checkpoint["state_dict"]
        checkpoint["state_dict"] = {k[len("module."):]: v for k, v in state.items() if k.startswith("module.")}
        checkpoint["averaging_state"] = {k: v for k, v in state.items() if not k.startswith("module.")}

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if self._average_model is None:
            rank_zero_warn("WeightAveraging: loading a checkpoint outside fit; the averaging state is not "
                           "restored (fine for test/predict).")
        elif "current_model_state" in checkpoint and "averaging_state" in checkpoint:
            state = {f"module.{k}": v for k, v in checkpoint["state_dict"].items()}
            self._average_model.load_state_dict({**state, **checkpoint["averaging_state"]})
            pl_module.load_state_dict(checkpoint["current_model_state"])
        else:
            rank_zero_warn("WeightAveraging: the checkpoint was saved without weight averaging; the average "
                           "starts from its weights.")
            self._average_model.module.load_state_dict(deepcopy(checkpoint["state_dict"]), strict=False)


class EMAWeightAveraging(WeightAveraging):
    """Exponential moving average of the weights: ``ema = decay * ema + (1 - decay) * weights``.

    Args:
        device: where the averaged copy lives; ``None`` keeps it with the model.
        use_buffers: average buffers too.
        decay: the EMA decay.
        update_every_n_steps: update after every n-th optimizer step.
        update_starting_at_step: first optimizer step (0-based) that updates; ``None``: from the start.
        update_starting_at_epoch: if given, also update at the end of every epoch from this one on.
    """

    def __init__(self, device: torch.device | str | int | None = None, use_buffers: bool = True,
                 decay: float = 0.999, update_every_n_steps: int = 1, update_starting_at_step: int | None = None,
                 update_starting_at_epoch: int | None = None, **kwargs: Any) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMAWeightAveraging(decay={decay}) must be in [0, 1].")
        from torch.optim.swa_utils import get_ema_multi_avg_fn

        super().__init__(device=device, use_buffers=use_buffers, multi_avg_fn=get_ema_multi_avg_fn(decay), **kwargs)
        self.decay = decay
        self.update_every_n_steps = update_every_n_steps
        self.update_starting_at_step = update_starting_at_step
        self.update_starting_at_epoch = update_starting_at_epoch

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        if step_idx is not None:
            started = self.update_starting_at_step is None or step_idx >= self.update_starting_at_step
            if started and self.update_every_n_steps > 0 and step_idx % self.update_every_n_steps == 0:
                return True
        if epoch_idx is not None:
            return self.update_starting_at_epoch is not None and epoch_idx >= self.update_starting_at_epoch
        return False
