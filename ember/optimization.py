"""Optimizers and schedulers: ``configure_optimizers`` parsing, the training closure, clipping, stepping."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch.optim import Optimizer
from torch.optim.optimizer import _global_optimizer_pre_hooks

from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from ember.module import LightningModule
    from ember.trainer.trainer import Trainer

_SCHEDULER_KEYS = {"scheduler", "name", "interval", "frequency", "monitor", "strict", "reduce_on_plateau"}


@dataclass
class LRSchedulerConfig:
    """How and when one LR scheduler steps."""

    scheduler: Any
    name: str | None = None
    interval: str = "epoch"
    frequency: int = 1
    reduce_on_plateau: bool = False
    monitor: str | None = None
    strict: bool = True
    opt_idx: int | None = field(default=None, repr=False)


def _is_plateau(scheduler: Any) -> bool:
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def _scheduler_config(item: Any, monitor: str | None) -> LRSchedulerConfig:
    if isinstance(item, Mapping):
        unknown = set(item) - _SCHEDULER_KEYS
        if unknown:
            raise MisconfigurationException(f"configure_optimizers: unknown keys {sorted(unknown)} in the "
                                            f"lr_scheduler dict; allowed keys are {sorted(_SCHEDULER_KEYS)}.")
        if "scheduler" not in item:
            raise MisconfigurationException("configure_optimizers: an lr_scheduler dict needs a 'scheduler' key, "
                                            "e.g. {'scheduler': StepLR(opt, 10), 'interval': 'epoch'}.")
        config = dict(item)
        config.setdefault("monitor", monitor)
    else:
        config = {"scheduler": item, "monitor": monitor}
    if config.get("interval", "epoch") not in ("epoch", "step"):
        raise MisconfigurationException(f"configure_optimizers: lr_scheduler interval={config['interval']!r} is "
                                        "not supported; use 'epoch' or 'step'.")
    config.setdefault("reduce_on_plateau", _is_plateau(config["scheduler"]))
    if config["reduce_on_plateau"] and config.get("monitor") is None:
        raise MisconfigurationException(
            "configure_optimizers: a ReduceLROnPlateau scheduler needs a metric to monitor; return e.g. "
            "{'optimizer': opt, 'lr_scheduler': scheduler, 'monitor': 'val_loss'}.")
    return LRSchedulerConfig(**config)


def _init_optimizers(module: LightningModule) -> tuple[list[Optimizer], list[LRSchedulerConfig]]:
    """Call ``configure_optimizers`` and normalise every return format Lightning accepts."""
    module.__dict__["_current_fx_name"] = "configure_optimizers"
    out = module.configure_optimizers()
    optimizers: list[Any] = []
    schedulers: list[Any] = []
    monitor: str | None = None
    if out is None:
        rank_zero_warn("configure_optimizers returned None: training runs without an optimizer.")
        return [_NoOptimizer()], []
    if isinstance(out, Optimizer):
        optimizers = [out]
    elif isinstance(out, Mapping):
        optimizers, monitor = [out.get("optimizer")], out.get("monitor")
        schedulers = [out["lr_scheduler"]] if out.get("lr_scheduler") is not None else []
    elif isinstance(out, (list, tuple)) and len(out) == 2 and isinstance(out[0], (list, tuple)):
        optimizers = list(out[0])
        schedulers = list(out[1]) if isinstance(out[1], (list, tuple)) else [out[1]]
    elif isinstance(out, (list, tuple)) and all(isinstance(o, Mapping) for o in out):
        for item in out:
            optimizers.append(item.get("optimizer"))
            if item.get("lr_scheduler") is not None:
                schedulers.append(_scheduler_config(item["lr_scheduler"], item.get("monitor")))
    elif isinstance(out, (list, tuple)):
        optimizers = list(out)
    bad = [o for o in optimizers if not isinstance(o, Optimizer)]
    if not optimizers or bad:
        found = ", ".join(sorted({type(o).__name__ for o in bad})) if bad else "no optimizer"
        raise MisconfigurationException(
            f"configure_optimizers returned a {type(out).__name__}, which is not a supported format (found {found} "
            "where a torch.optim.Optimizer was expected); return an optimizer, a list of optimizers, "
            "([optimizers], [schedulers]), a dict {'optimizer': ..., 'lr_scheduler': ..., 'monitor': ...} or a "
            "list of such dicts.")
    configs = [s if isinstance(s, LRSchedulerConfig) else _scheduler_config(s, monitor) for s in schedulers]
    for config in configs:
        opt = getattr(config.scheduler, "optimizer", None)
        if opt is not None and all(opt is not o for o in optimizers):
            raise MisconfigurationException("configure_optimizers: an lr_scheduler wraps an optimizer that was "
                                            "not returned; return the scheduler's optimizer too.")
    return optimizers, configs


class _NoOptimizer(Optimizer):
    """Stands in when ``configure_optimizers`` returns None: stepping runs the closure and changes nothing."""

    def __init__(self) -> None:
        super().__init__([torch.zeros(1)], {})

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        return closure() if closure is not None else None


def _clip_gradients(optimizer: Any, clip_val: float | None, algorithm: str | None) -> None:
    if not clip_val or clip_val <= 0:
        return
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if algorithm in (None, "norm"):
        torch.nn.utils.clip_grad_norm_(params, clip_val)
    elif algorithm == "value":
        torch.nn.utils.clip_grad_value_(params, clip_val)
    else:
        raise MisconfigurationException(f"gradient_clip_algorithm={algorithm!r} is not supported; use 'norm' or "
                                        "'value'.")


def _do_nothing() -> None:
    return None


def _runs_closure_first(optimizer: Any) -> bool:
    """True for torch's own optimizers except LBFGS: their ``step`` calls the closure once, before anything else."""
    cls = type(optimizer)
    return cls.__module__.startswith("torch.optim.") and cls is not torch.optim.LBFGS


def _may_step_directly(optimizer: Optimizer) -> bool:
    """For a closure-first optimizer: whether ``closure(); optimizer.step()`` now does what ``step(closure)``
    would — grad is enabled (``step`` enables it for the closure) and no step pre-hook must run before it."""
    return torch.is_grad_enabled() and not (optimizer._optimizer_step_pre_hooks or _global_optimizer_pre_hooks)


class LightningOptimizer:
    """Wraps a torch optimizer so that ``step`` runs ember's hooks, precision and step counting."""

    def __init__(self, optimizer: Optimizer, trainer: Trainer) -> None:
        self._optimizer = optimizer
        self._trainer = trainer
        self._closure_first = _runs_closure_first(optimizer)

    @property
    def optimizer(self) -> Optimizer:
        return self._optimizer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_optimizer"], name)

    def __repr__(self) -> str:
        return f"LightningOptimizer({self._optimizer!r})"

    def step(self, closure: Callable[[], Any] | None = None, **kwargs: Any) -> Any:
        """Run ``closure`` (if any), the before-step hooks, then the optimizer's step."""
        trainer = self._trainer
        precision = trainer.strategy.precision
        manual = not isinstance(closure, _TrainingClosure) and not trainer._module.automatic_optimization
        if closure is None or manual:
            closure = _ManualClosure(trainer, self._optimizer, closure or _do_nothing)
        if precision.scaler is not None:
            out = precision.optimizer_step(self._optimizer, closure,
                                           lambda: trainer._after_closure(self._optimizer), **kwargs)
        elif self._closure_first and not kwargs and _may_step_directly(self._optimizer):
            # What step(closure) would do, without its closure plumbing: same numbers, same hook order.
            out = closure()
            self._optimizer.step()
        else:
            out = self._optimizer.step(closure=closure, **kwargs)
        trainer._progress.global_step += 1
        return out


class _ManualClosure:
    """The user's closure, followed by ``on_before_optimizer_step`` (manual optimization)."""

    def __init__(self, trainer: Trainer, optimizer: Optimizer, closure: Callable[[], Any]) -> None:
        self.trainer, self.optimizer, self.closure = trainer, optimizer, closure

    def __call__(self) -> Any:
        out = self.closure()
        if self.trainer.strategy.precision.scaler is None:
            self.trainer._after_closure(self.optimizer)
        return out


class _TrainingClosure:
    """What ``optimizer.step(closure)`` runs: training_step, zero_grad, backward, then the before-step hooks.

    The loop makes one per epoch (what it reads from the trainer holds for the epoch) and sets ``batch``,
    ``batch_idx``, ``zero_grad`` and ``after`` before each step.
    """

    def __init__(self, trainer: Trainer, optimizer: Optimizer) -> None:
        self.trainer, self.optimizer = trainer, optimizer
        self.batch: Any = None
        self.batch_idx = 0
        self.zero_grad = True  # the step starts an accumulation window
        # the step ends with an optimizer step: run the before-step hooks (the GradScaler path runs them itself,
        # after unscaling)
        self.after = not trainer._step_plan.scaled
        self._result: tuple[Any, torch.Tensor | None] = (None, None)  # (training_step's output, the loss)
        self._module_state = trainer._module.__dict__  # where _current_fx_name lives
        self._training_step = trainer.strategy.training_step  # through DDP where there is one
        self._accumulate = trainer.accumulate_grad_batches
        self._plain_forward, self._plain_backward = trainer._step_plan.plain_forward, trainer._step_plan.plain_backward

    @property
    def output(self) -> dict[str, Any]:
        """The last step's outputs as ``on_train_batch_end`` receives them (made only when asked for)."""
        output, loss = self._result
        if loss is None:
            return {}
        return {"loss": loss.detach()} if isinstance(output, torch.Tensor) else {**output, "loss": loss.detach()}

    def __call__(self) -> torch.Tensor | None:
        self._module_state["_current_fx_name"] = "training_step"
        if self._plain_forward:
            output = self._training_step(self.batch, self.batch_idx)
        else:
            with self.trainer.strategy.precision.forward_context():
                output = self._training_step(self.batch, self.batch_idx)
        accumulate = self._accumulate
        loss = output if accumulate == 1 and isinstance(output, torch.Tensor) else _closure_loss(output, accumulate)
        self._result = (output, loss)
        if self._plain_backward and not self.trainer.gradient_clip_val:  # no hook to call: torch only
            if self.zero_grad:
                self.optimizer.zero_grad()
            if loss is not None:
                loss.backward()
            return loss
        trainer = self.trainer
        if self.zero_grad:
            trainer._zero_grad(self.optimizer, self.batch_idx)
        if loss is not None:
            trainer._backward(loss, self.optimizer)
        if self.after:
            trainer._after_closure(self.optimizer)
        return loss


def _closure_loss(output: Any, accumulate: int) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor) or output is None:
        loss = output
    elif isinstance(output, Mapping):
        if "loss" not in output:
            raise MisconfigurationException("training_step returned a dict without a 'loss' key; automatic "
                                            "optimization needs {'loss': loss, ...}.")
        loss = output["loss"]
    else:
        raise MisconfigurationException(f"training_step returned a {type(output).__name__}; return the loss "
                                        "tensor, a dict with a 'loss' key, or None to skip the batch.")
    return loss if loss is None or accumulate == 1 else loss / accumulate


def _scheduler_step(trainer: Trainer, interval: str, plateau: bool, index: int) -> None:
    """Step the schedulers of ``interval`` whose frequency divides ``index`` (1-based batch or epoch)."""
    module = trainer.lightning_module
    for config in trainer.lr_scheduler_configs:
        if config.reduce_on_plateau != plateau or config.interval != interval or index % config.frequency:
            continue
        metric = None
        if plateau:
            metric = trainer.callback_metrics.get(config.monitor)  # type: ignore[arg-type]
            if metric is None:
                available = sorted(trainer.callback_metrics)
                message = (f"ReduceLROnPlateau monitors {config.monitor!r}, which was not logged; available "
                           f"metrics: {available}. Log it with self.log({config.monitor!r}, ...) or change "
                           "'monitor'.")
                if config.strict:
                    raise MisconfigurationException(message)
                rank_zero_warn(message + " (strict=False: the scheduler is skipped.)")
                continue
        module.__dict__["_current_fx_name"] = "lr_scheduler_step"
        module.lr_scheduler_step(config.scheduler, metric)
