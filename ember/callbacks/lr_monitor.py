"""``LearningRateMonitor``: log each optimizer's learning rate (and optionally momentum, weight decay).

Names, as in Lightning: ``lr-<OptimizerClass>`` (``lr-SGD``), or the scheduler config's ``name``; a second
optimizer of the same class gets ``-1`` (``lr-Adam-1``); several parameter groups get ``/pg1``, ``/pg2`` (or
``/<group name>`` when the group has a ``"name"``). Momentum and weight decay add ``-momentum`` and
``-weight_decay`` to the name.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any, Literal

import torch

from ember.callbacks._logging import _log_to_loggers, _should_update_logs
from ember.callbacks.callback import Callback
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from ember.module import LightningModule
    from ember.trainer.trainer import Trainer


class LearningRateMonitor(Callback):
    """Log the learning rate of every optimizer while training.

    Args:
        logging_interval: ``"step"`` logs at every logged training step, ``"epoch"`` at every epoch start,
            ``None`` follows each scheduler's own ``interval`` (optimizers without a scheduler are logged at
            both).
        log_momentum: also log momentum (``betas[0]`` for Adam-like optimizers, 0 when there is none).
        log_weight_decay: also log weight decay.

    ``lrs`` keeps every value logged, by name (``monitor.lrs["lr-SGD"]``).
    """

    def __init__(self, logging_interval: Literal["step", "epoch"] | None = None, log_momentum: bool = False,
                 log_weight_decay: bool = False) -> None:
        if logging_interval not in (None, "step", "epoch"):
            raise MisconfigurationException(f"LearningRateMonitor(logging_interval={logging_interval!r}) is not "
                                            "valid; use 'step', 'epoch' or None.")
        self.logging_interval = logging_interval
        self.log_momentum = log_momentum
        self.log_weight_decay = log_weight_decay
        self.lrs: dict[str, list[float]] = {}
        self.last_momentum_values: dict[str, float | None] = {}
        self.last_weight_decay_values: dict[str, float | None] = {}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.loggers:
            raise MisconfigurationException("LearningRateMonitor needs a logger, but the Trainer has none; pass "
                                            "logger=True (the default) or a Logger.")
        if self.log_momentum:
            optimizers = [c.scheduler.optimizer for c in trainer.lr_scheduler_configs] or trainer.optimizers
            if any("momentum" not in o.defaults and "betas" not in o.defaults for o in optimizers):
                rank_zero_warn("LearningRateMonitor(log_momentum=True): some optimizers have no momentum; 0 is "
                               "logged for them.", category=RuntimeWarning)
        names = [name for _, group_names, _ in self._named_optimizers(trainer) for name in group_names]
        self.lrs = {name: [] for name in names}
        self.last_momentum_values = {f"{name}-momentum": None for name in names}
        self.last_weight_decay_values = {f"{name}-weight_decay": None for name in names}

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self.logging_interval == "epoch" or not _should_update_logs(trainer):
            return
        self._log(trainer, "step" if self.logging_interval is None else "any")

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.logging_interval == "step":
            return
        self._log(trainer, "epoch" if self.logging_interval is None else "any")

    # ---- reading the optimizers ------------------------------------------------------------

    def _log(self, trainer: Trainer, interval: str) -> None:
        stats: dict[str, float] = {}
        for optimizer, names, sched_interval in self._named_optimizers(trainer):
            self._carry_history(names)
            if sched_interval is None or interval in (sched_interval, "any"):
                stats.update(self._optimizer_stats(optimizer, names))
        if not stats:
            return
        device = trainer.strategy.root_device
        trainer.callback_metrics.update({k: torch.tensor(v, device=device) for k, v in stats.items()})
        _log_to_loggers(trainer, stats)

    def _named_optimizers(self, trainer: Trainer) -> list[tuple[torch.optim.Optimizer, list[str], str | None]]:
        """(optimizer, one name per param group, its scheduler's interval or None) for every optimizer."""
        out: list[tuple[Any, list[str], str | None]] = []
        seen: list[Any] = []
        per_class: defaultdict[type, int] = defaultdict(int)
        for config in trainer.lr_scheduler_configs:
            optimizer = config.scheduler.optimizer
            out.append((optimizer, self._group_names(optimizer, config.name, per_class), config.interval))
            seen.append(optimizer)
        for optimizer in trainer.optimizers:
            optimizer = getattr(optimizer, "optimizer", optimizer)  # a LightningOptimizer wraps the real one
            if any(optimizer is s for s in seen):
                continue
            out.append((optimizer, self._group_names(optimizer, None, per_class), None))
            seen.append(optimizer)
        return out

    @staticmethod
    def _group_names(optimizer: Any, name: str | None, per_class: defaultdict[type, int]) -> list[str]:
        groups = optimizer.param_groups
        labels = [g.get("name", f"pg{i}") for i, g in enumerate(groups, start=1)]
        repeated = {label for label in labels if labels.count(label) > 1}
        if name is None:
            per_class[type(optimizer)] += 1
            count = per_class[type(optimizer)]
            name = f"lr-{type(optimizer).__name__}" + (f"-{count - 1}" if count > 1 else "")
        if repeated:
            raise MisconfigurationException(f"The optimizer behind {name!r} has several parameter groups named "
                                            f"{sorted(repeated)}; give each group a distinct 'name'.")
        if len(groups) > 1:
            return [f"{name}/{label}" for label in labels]
        return [f"{name}/{groups[0]['name']}" if groups[0].get("name") else name]

    def _carry_history(self, names: list[str]) -> None:
        """A group added later (e.g. by a finetuning callback) turns ``lr-SGD`` into ``lr-SGD/pg1``."""
        for name in names:
            old = name.replace("/pg1", "")
            if name.endswith("/pg1") and old in self.lrs and name not in self.lrs:
                self.lrs[name] = self.lrs.pop(old)
            self.lrs.setdefault(name, [])

    def _optimizer_stats(self, optimizer: Any, names: list[str]) -> dict[str, float]:
        stats: dict[str, float] = {}
        betas = "betas" in optimizer.defaults
        for group, name in zip(optimizer.param_groups, names):
            lr = float(group["lr"])
            self.lrs[name].append(lr)
            stats[name] = lr
            if self.log_momentum:
                momentum = float(group["betas"][0] if betas else group.get("momentum", 0))
                self.last_momentum_values[f"{name}-momentum"] = momentum
                stats[f"{name}-momentum"] = momentum
            if self.log_weight_decay:
                decay = float(group.get("weight_decay", 0))
                self.last_weight_decay_values[f"{name}-weight_decay"] = decay
                stats[f"{name}-weight_decay"] = decay
        return stats
