"""``StochasticWeightAveraging`` (SWA): average the weights of the last epochs, on ``torch.optim.swa_utils``.

From epoch ``swa_epoch_start`` on, the optimizer's learning rate follows ``SWALR`` (annealed to
``swa_lrs``) and, at the start of each of those epochs, the current weights are folded into an
``AveragedModel``. When training ends the averaged weights replace the model's; a model with batch norm
then gets its running statistics recomputed with one forward pass over the training data
(``torch.optim.swa_utils.update_bn``), instead of Lightning's extra training epoch, so ``max_epochs``
and ``current_epoch`` stay what the user asked for, and the weights stay the exact average (Lightning's
extra epoch ends with an optimizer step that applies the last real batch's gradients once more).
Without batch norm the weights equal Lightning's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ember.callbacks.callback import Callback
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:
    from ember.module import LightningModule
    from ember.trainer.trainer import Trainer

_AvgFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def _averaged_model(module: nn.Module, device: Any, **kwargs: Any) -> torch.optim.swa_utils.AveragedModel:
    """An ``AveragedModel`` around a trainer-free copy of ``module``."""
    trainer = getattr(module, "_trainer", None)
    if trainer is not None:
        module._trainer = None  # AveragedModel deep-copies the module: keep the Trainer out of it
    try:
        return torch.optim.swa_utils.AveragedModel(module, device=device, **kwargs)
    finally:
        if trainer is not None:
            module._trainer = trainer


def _has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


class StochasticWeightAveraging(Callback):
    """Stochastic Weight Averaging (Izmailov et al., 2018) for one optimizer.

    Args:
        swa_lrs: the learning rate(s) SWA anneals to: one float for all parameter groups or one per group.
        swa_epoch_start: first SWA epoch: an int (1-based epoch number) or a float fraction of ``max_epochs``.
        annealing_epochs: epochs over which the learning rate anneals to ``swa_lrs``.
        annealing_strategy: ``"cos"`` or ``"linear"``.
        avg_fn: ``(averaged_param, current_param, num_averaged) -> new averaged_param``; the default is the
            equal-weight running mean.
        device: where the averaged copy lives (``None``: with the model). CPU by default, to spare GPU memory.
    """

    def __init__(self, swa_lrs: float | list[float], swa_epoch_start: int | float = 0.8, annealing_epochs: int = 10,
                 annealing_strategy: str = "cos", avg_fn: _AvgFn | None = None,
                 device: torch.device | str | None = torch.device("cpu")) -> None:
        if isinstance(swa_epoch_start, bool) or not isinstance(swa_epoch_start, (int, float)) or (
                isinstance(swa_epoch_start, int) and swa_epoch_start < 1) or (
                isinstance(swa_epoch_start, float) and not 0 <= swa_epoch_start <= 1):
            raise MisconfigurationException(f"StochasticWeightAveraging(swa_epoch_start={swa_epoch_start!r}): use "
                                            "an int >= 1 or a float in [0, 1].")
        lrs_ok = (isinstance(swa_lrs, (int, float)) and not isinstance(swa_lrs, bool) and swa_lrs > 0) or (
            isinstance(swa_lrs, (list, tuple)) and len(swa_lrs) > 0 and all(
                isinstance(lr, (int, float)) and lr > 0 for lr in swa_lrs))
        if not lrs_ok:
            raise MisconfigurationException(f"StochasticWeightAveraging(swa_lrs={swa_lrs!r}): use a float > 0 or a "
                                            "list of floats > 0 (one per parameter group).")
        if annealing_strategy not in ("cos", "linear"):
            raise MisconfigurationException(f"StochasticWeightAveraging(annealing_strategy={annealing_strategy!r}):"
                                            " use 'cos' or 'linear'.")
        if avg_fn is not None and not callable(avg_fn):
            raise MisconfigurationException("StochasticWeightAveraging(avg_fn=...) must be callable.")
        if device is not None and not isinstance(device, (torch.device, str)):
            raise MisconfigurationException(f"StochasticWeightAveraging(device={device!r}): use a torch.device, a "
                                            "string or None.")
        self._swa_epoch_start = swa_epoch_start
        self._swa_lrs = swa_lrs
        self._annealing_epochs = annealing_epochs
        self._annealing_strategy = annealing_strategy
        self._avg_fn = avg_fn
        self._device = device
        self._average_model: torch.optim.swa_utils.AveragedModel | None = None
        self._swa_scheduler: Any = None
        self._scheduler_state: dict[str, Any] | None = None
        self._pending_state: tuple[int, dict[str, Any] | None] | None = None  # from a checkpoint
        self._initialized = False
        self._latest_update_epoch = -1
        self._max_epochs = -1

    # ---- the SWA window --------------------------------------------------------------------

    @property
    def swa_start(self) -> int:
        """First SWA epoch, 0-based."""
        assert isinstance(self._swa_epoch_start, int), "swa_start is known once fit has started"
        return max(self._swa_epoch_start - 1, 0)

    @property
    def swa_end(self) -> float:
        """Last SWA epoch, 0-based (the last training epoch; infinite without max_epochs)."""
        return float("inf") if self._max_epochs == -1 else self._max_epochs - 1

    @property
    def n_averaged(self) -> Tensor | None:
        """How many weight snapshots the average holds."""
        return None if self._average_model is None else self._average_model.n_averaged

    @property
    def average_model(self) -> nn.Module | None:
        """The averaged copy of the LightningModule (``None`` before fit)."""
        return None if self._average_model is None else self._average_model.module

    @staticmethod
    def pl_module_contains_batch_norm(pl_module: nn.Module) -> bool:
        return _has_batch_norm(pl_module)

    # ---- hooks -----------------------------------------------------------------------------

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._average_model = _averaged_model(pl_module, self._device or pl_module.device, avg_fn=self._avg_fn,
                                              use_buffers=False)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if len(trainer.optimizers) != 1:
            raise MisconfigurationException(f"StochasticWeightAveraging works with one optimizer; "
                                            f"configure_optimizers returned {len(trainer.optimizers)}.")
        if len(trainer.lr_scheduler_configs) > 1:
            raise MisconfigurationException("StochasticWeightAveraging works with at most one LR scheduler.")
        if isinstance(self._swa_epoch_start, float):
            if trainer.max_epochs == -1:
                raise MisconfigurationException("StochasticWeightAveraging(swa_epoch_start=<fraction>) needs "
                                                "max_epochs; give swa_epoch_start as an int epoch instead.")
            self._swa_epoch_start = int(trainer.max_epochs * self._swa_epoch_start)
        self._max_epochs = trainer.max_epochs
        self._load_average_state()
        if self._scheduler_state is not None:
            trainer.lr_scheduler_configs.clear()  # the SWALR from the checkpoint takes over at the next epoch

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epoch = trainer.current_epoch
        in_window = self.swa_start <= epoch <= self.swa_end
        if in_window and not self._initialized:
            self._start_swa(trainer, pl_module)
        if in_window and epoch > self._latest_update_epoch:
            assert self._average_model is not None
            self._average_model.update_parameters(pl_module)
            self._latest_update_epoch = epoch

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        finished = self._max_epochs == -1 or trainer.current_epoch - 1 == self.swa_end
        if not (finished and self._initialized and self._average_model is not None):
            return
        self.transfer_weights(self._average_model.module, pl_module)
        if _has_batch_norm(pl_module):
            self._recompute_batch_norm(trainer, pl_module)

    def _start_swa(self, trainer: Trainer, pl_module: LightningModule) -> None:
        from ember.optimization import LRSchedulerConfig

        self._initialized = True
        optimizer = trainer.optimizers[0]
        lrs = self._swa_lrs if isinstance(self._swa_lrs, (list, tuple)) else [self._swa_lrs] * len(
            optimizer.param_groups)
        for lr, group in zip(lrs, optimizer.param_groups):
            group["initial_lr"] = lr
        self._swa_scheduler = torch.optim.swa_utils.SWALR(
            optimizer, swa_lr=list(lrs), anneal_epochs=self._annealing_epochs,
            anneal_strategy=self._annealing_strategy,  # type: ignore[arg-type]
            last_epoch=trainer.max_epochs if self._annealing_strategy == "cos" else -1)
        if self._scheduler_state is not None:
            self._swa_scheduler.load_state_dict(self._scheduler_state)
        elif trainer.current_epoch != self.swa_start:
            rank_zero_warn("StochasticWeightAveraging starts after swa_start without state from a checkpoint.")
        config = LRSchedulerConfig(self._swa_scheduler)
        if trainer.lr_scheduler_configs:
            old = trainer.lr_scheduler_configs[0]
            if old.interval != "epoch" or old.frequency != 1:
                rank_zero_warn(f"StochasticWeightAveraging steps its scheduler every epoch; it replaces {old}.")
            rank_zero_info(f"Swapping scheduler `{type(old.scheduler).__name__}` for "
                           f"`{type(self._swa_scheduler).__name__}`")
            trainer.lr_scheduler_configs[0] = config
        else:
            trainer.lr_scheduler_configs.append(config)

    def _recompute_batch_norm(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Running statistics for the averaged weights: one pass over (at most ``limit_train_batches`` of)
        the training data, ``forward`` on the first element of each batch."""
        from itertools import islice

        loader = trainer.train_dataloader
        limit = trainer.num_training_batches
        batches = loader if limit == float("inf") else islice(loader, int(limit))
        modes = {m: m.training for m in pl_module.modules()}
        with torch.no_grad():
            torch.optim.swa_utils.update_bn((trainer._to_device(b, 0) for b in batches), pl_module,
                                            device=None)
        for module, training in modes.items():
            module.training = training

    @staticmethod
    def transfer_weights(src_pl_module: nn.Module, dst_pl_module: nn.Module) -> None:
        """Copy the parameters of ``src_pl_module`` into ``dst_pl_module``."""
        for src, dst in zip(src_pl_module.parameters(), dst_pl_module.parameters()):
            dst.detach().copy_(src.to(dst.device))

    @staticmethod
    def avg_fn(averaged_model_parameter: Tensor, model_parameter: Tensor, num_averaged: Tensor) -> Tensor:
        """The equal-weight running mean."""
        return averaged_model_parameter + (model_parameter - averaged_model_parameter) / (num_averaged + 1)

    # ---- state -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        average = self.average_model
        return {  # Lightning's layout: a SWA checkpoint loads in either library
            "n_averaged": 0 if self.n_averaged is None else int(self.n_averaged.item()),
            "latest_update_epoch": self._latest_update_epoch,
            "scheduler_state": None if self._swa_scheduler is None else self._swa_scheduler.state_dict(),
            "average_model_state": None if average is None else average.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._latest_update_epoch = state_dict["latest_update_epoch"]
        self._scheduler_state = state_dict["scheduler_state"]
        self._pending_state = (int(state_dict["n_averaged"]), state_dict.get("average_model_state"))
        self._load_average_state()

    def _load_average_state(self) -> None:
        if self._pending_state is None or self._average_model is None:
            return
        n_averaged, weights = self._pending_state
        if weights is not None:
            self._average_model.module.load_state_dict(weights)
        self._average_model.n_averaged.fill_(n_averaged)
        self._pending_state = None
