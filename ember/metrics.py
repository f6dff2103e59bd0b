"""What ``self.log`` stores: values kept on the device, reduced at epoch end, synced only when asked.

A logged key lives in a ``_Results`` collection (one for training, one for the running evaluation).
``_MetricStore`` turns the collection into the three dicts users read:
``trainer.callback_metrics``, ``trainer.logged_metrics`` and ``trainer.progress_bar_metrics``.
"""

from __future__ import annotations

from numbers import Number
from typing import Any, Callable

import torch

from ember.utilities.exceptions import MisconfigurationException

# fx -> (on_step allowed, on_epoch allowed, default on_step, default on_epoch)
_TRAIN_STEP = (True, True, True, False)
_EVAL_STEP = (True, True, False, True)
_EPOCH_ONLY = (False, True, False, True)
_FX_RULES: dict[str, tuple[bool, bool, bool, bool]] = {
    **dict.fromkeys(("training_step", "on_train_batch_start", "on_train_batch_end", "on_before_backward",
                     "backward", "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad",
                     "optimizer_step", "optimizer_zero_grad", "lr_scheduler_step", "configure_gradient_clipping",
                     "clip_gradients"), _TRAIN_STEP),
    **dict.fromkeys(("validation_step", "on_validation_batch_start", "on_validation_batch_end", "test_step",
                     "on_test_batch_start", "on_test_batch_end"), _EVAL_STEP),
    **dict.fromkeys(("on_train_start", "on_train_epoch_start", "on_train_epoch_end", "on_validation_start",
                     "on_validation_epoch_start", "on_validation_epoch_end", "on_test_start",
                     "on_test_epoch_start", "on_test_epoch_end"), _EPOCH_ONLY),
}
_REDUCE_FX: dict[Any, str] = {"mean": "mean", "avg": "mean", torch.mean: "mean", "max": "max", torch.max: "max",
                              "min": "min", torch.min: "min", "sum": "sum", torch.sum: "sum"}
_REDUCES = frozenset(_REDUCE_FX.values())


def _is_metric(value: Any) -> bool:
    """A torchmetrics ``Metric`` (duck-typed so torchmetrics is never imported here)."""
    return hasattr(value, "_forward_cache") and hasattr(value, "compute") and hasattr(value, "reset")


def _extract_batch_size(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return 1 if batch.ndim == 0 else batch.size(0)
    if isinstance(batch, (str, bytes)):
        return len(batch)
    if isinstance(batch, dict):
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for item in batch:
            size = _extract_batch_size(item)
            if size:
                return size
    return 0


class _Entry:
    """One logged key: its options and its running reduction."""

    __slots__ = ("name", "on_step", "on_epoch", "reduce", "prog_bar", "logger", "sync", "forked", "step_only",
                 "total", "weight", "step_value", "metric", "computed", "args")

    def __init__(self, name: str, on_step: bool, on_epoch: bool, reduce: str, prog_bar: bool, logger: bool,
                 sync: Callable[[torch.Tensor, str], torch.Tensor] | None) -> None:
        self.name, self.on_step, self.on_epoch, self.reduce = name, on_step, on_epoch, reduce
        self.prog_bar, self.logger, self.sync = prog_bar, logger, sync
        self.forked = on_step and on_epoch
        self.step_only = not on_epoch and sync is None  # a tensor logged here is only kept, never reduced
        self.total: torch.Tensor | None = None
        self.weight = 0
        self.step_value: torch.Tensor | None = None
        self.metric: Any = None
        self.computed: torch.Tensor | None = None
        self.args: tuple | None = None  # self.log's options as first passed (None: restored from a checkpoint)

    def update(self, value: torch.Tensor, batch_size: int) -> None:
        # the step value is reduced across processes now; the epoch total keeps this process's own values and
        # is reduced once, in compute (a "sum" synced twice would count every rank twice)
        self.step_value = self.sync(value, self.reduce) if self.sync is not None and self.on_step else value
        self.computed = None
        if not self.on_epoch:
            return
        if self.reduce == "mean":
            weighted = value * batch_size
            self.total = weighted if self.total is None else self.total + weighted
            self.weight += batch_size
        elif self.total is None:
            self.total = value
        elif self.reduce == "sum":
            self.total = self.total + value
        else:
            self.total = torch.maximum(self.total, value) if self.reduce == "max" else torch.minimum(self.total, value)

    def compute(self) -> torch.Tensor:
        if self.computed is None:
            if self.metric is not None:
                self.computed = self.metric.compute().detach()
                self.metric.reset()
            elif self.reduce == "mean":
                total, weight = self.total, self.weight
                if self.sync is not None:  # a weighted mean across processes: sum both parts, then divide
                    total = self.sync(total, "sum")
                    weight = self.sync(torch.tensor(float(weight), device=total.device), "sum")
                self.computed = total / weight
            else:
                self.computed = self.total if self.sync is None else self.sync(self.total, self.reduce)
        return self.computed


class _Results:
    """The keys logged in one loop (training, or one evaluation run)."""

    def __init__(self, training: bool = False) -> None:
        self.training = training
        self.entries: dict[tuple[str, str], _Entry] = {}  # by (hook, name)
        self.batch: Any = None  # the running batch (the loops set it): logged means are weighted by its size
        self._sized: tuple[Any, int] = (None, 1)  # (a batch, its size), worked out when a mean first needs it
        self.dataloader_idx: int | None = None
        self.dataloader_keys: dict[int | None, set[tuple[str, str]]] = {}

    def state_dict(self) -> dict[str, Any]:
        """The running reductions (torchmetrics objects excluded: their state lives in the module)."""
        return {f"{fx}.{name}": {"name": e.name, "on_step": e.on_step, "on_epoch": e.on_epoch, "reduce": e.reduce,
                      "prog_bar": e.prog_bar, "logger": e.logger, "total": e.total, "weight": e.weight,
                      "step_value": e.step_value}
                for (fx, name), e in self.entries.items() if e.metric is None and e.sync is None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, s in state.items():
            entry = _Entry(s["name"], s["on_step"], s["on_epoch"], s["reduce"], s["prog_bar"], s["logger"], None)
            entry.total, entry.weight, entry.step_value = s["total"], s["weight"], s["step_value"]
            key = tuple(key.split(".", 1))  # "hook.name": hook names have no dot
            self.entries[key] = entry
            self.dataloader_keys.setdefault(None, set()).add(key)

    def new_batch(self, batch: Any, dataloader_idx: int | None = None) -> None:
        self.batch, self.dataloader_idx = batch, dataloader_idx

    def _current_batch_size(self) -> int:
        batch, size = self._sized
        if batch is not self.batch:
            size = _extract_batch_size(self.batch) or 1
            self._sized = (self.batch, size)
        return size

    def log(self, fx: str, name: str, value: Any, args: tuple, rule: tuple[bool, bool], batch_size: int | None,
            sync: Callable[[torch.Tensor, str], torch.Tensor] | None) -> None:
        """Store ``value``; ``args`` are self.log's options as passed (see ``_LOG_OPTIONS``), ``rule`` the
        (on_step, on_epoch) they resolve to in hook ``fx``."""
        key = (fx, name) if self.dataloader_idx is None or not args[_ADD_DATALOADER_IDX] else \
            (fx, f"{name}/dataloader_idx_{self.dataloader_idx}")
        entry = self.entries.get(key)
        if entry is None:
            entry = self._add(key, name, args, rule, sync)
        elif entry.args != args:
            _check_same_options(entry, fx, name, args, rule)
        if not isinstance(value, torch.Tensor):  # a torchmetrics Metric
            entry.metric = value
            entry.step_value = value._forward_cache
            entry.computed = None
        elif not entry.step_only:
            if entry.on_epoch and entry.reduce == "mean" and batch_size is None:
                batch_size = self._current_batch_size()
            entry.update(value, batch_size or 1)
        else:  # a step value in one process: nothing to reduce
            entry.step_value = value

    def _add(self, key: tuple[str, str], name: str, args: tuple, rule: tuple[bool, bool],
             sync: Callable[[torch.Tensor, str], torch.Tensor] | None) -> _Entry:
        """A key's first ``self.log``: check its name and reduction, and keep its options."""
        if "/dataloader_idx_" in name:
            raise MisconfigurationException(f"self.log({name!r}): names may not contain '/dataloader_idx_', "
                                            "which ember adds itself.")
        prog_bar, logger, on_step, on_epoch, reduce = _meaning(args, rule)[:5]
        if reduce not in _REDUCES:
            raise MisconfigurationException(
                f"self.log({name!r}, ..., reduce_fx={reduce!r}) is not supported; use 'mean', 'max', "
                "'min' or 'sum' (or log a torchmetrics Metric for other reductions).")
        entry = self.entries[key] = _Entry(key[1], on_step, on_epoch, reduce, prog_bar, logger, sync)
        entry.args = args
        self.dataloader_keys.setdefault(self.dataloader_idx, set()).add(key)
        return entry

    def metrics(self, on_step: bool) -> tuple[dict, dict, dict]:
        """(logged, callback, progress bar) dicts of step values or of epoch reductions.

        Only keys logged under the current ``dataloader_idx`` count; evaluation step values reach loggers and
        the progress bar but not ``callback_metrics``.
        """
        logged: dict[str, torch.Tensor] = {}
        callback: dict[str, torch.Tensor] = {}
        pbar: dict[str, torch.Tensor] = {}
        keys = self.dataloader_keys.get(self.dataloader_idx, ())
        for key, entry in self.entries.items():  # in logging order, the same on every rank (compute may sync)
            if key not in keys:
                continue
            if on_step:
                if not entry.on_step or entry.step_value is None:
                    continue
                value, name = entry.step_value, entry.name + "_step" if entry.forked else entry.name
            else:
                if not entry.on_epoch or (entry.total is None and entry.metric is None):
                    continue
                value, name = entry.compute(), entry.name + "_epoch" if entry.forked else entry.name
            if entry.logger:
                logged[name] = value
            if self.training or not on_step:
                callback[entry.name] = callback[name] = value
            if entry.prog_bar:
                pbar[name] = value
        return logged, callback, pbar


_LOG_OPTIONS = ("prog_bar", "logger", "on_step", "on_epoch", "reduce_fx", "enable_graph", "sync_dist",
                "sync_dist_group", "add_dataloader_idx", "metric_attribute", "rank_zero_only")  # self.log's order
_ADD_DATALOADER_IDX = _LOG_OPTIONS.index("add_dataloader_idx")


def _meaning(args: tuple, rule: tuple[bool, bool]) -> tuple:
    """self.log's options with their defaults resolved: what two calls must agree on."""
    prog_bar, logger, _, _, reduce_fx, *rest = args
    return (prog_bar, True if logger is None else logger, *rule, _REDUCE_FX.get(reduce_fx, reduce_fx), *rest)


def _check_same_options(entry: _Entry, fx: str, name: str, args: tuple, rule: tuple[bool, bool]) -> None:
    """A key logged again with other options: fine if they mean the same, else an error (as in Lightning)."""
    if entry.args is None:  # restored from a checkpoint: the first call after resuming sets the options
        entry.args = args
        return
    before, now = _meaning(entry.args, (entry.on_step, entry.on_epoch)), _meaning(args, rule)
    changed = [f"{option}={new!r} (was {old!r})" for option, old, new in zip(_LOG_OPTIONS, before, now)
               if old is not new and old != new]
    if changed:
        raise MisconfigurationException(
            f"self.log({name!r}, ...) was called twice in `{fx}` with different arguments: {', '.join(changed)}. "
            "Pass the same options every time, or log the other variant under its own name.")


class _MetricStore:
    """The trainer's view of what was logged: callback, logged and progress-bar metrics."""

    def __init__(self) -> None:
        self.results: _Results | None = None
        self.callback: dict[str, torch.Tensor] = {}
        self.logged: dict[str, torch.Tensor] = {}
        self.pbar: dict[str, Any] = {}
        self.on_step = True  # False once the running epoch has ended: report epoch reductions

    def reset(self) -> None:
        self.callback, self.logged, self.pbar = {}, {}, {}

    def collect(self, on_step: bool) -> dict[str, torch.Tensor]:
        """Fold the active results into the three dicts; return what loggers should receive."""
        assert self.results is not None
        logged, callback, pbar = self.results.metrics(on_step)
        self.callback.update(callback)
        self.logged.update(logged)
        self.pbar.update(pbar)
        return logged

    def progress_bar_metrics(self) -> dict[str, float]:
        # Converting here, when a progress bar asks, keeps the training step free of host syncs.
        return {k: v.item() if isinstance(v, torch.Tensor) and v.numel() == 1 else v for k, v in self.pbar.items()}


def _to_tensor(name: str, value: Any, device: torch.device | None, enable_graph: bool = False) -> torch.Tensor:
    """A logged value as a 0-d float tensor (on ``device`` for Python numbers)."""
    if isinstance(value, torch.Tensor):
        if value.dim():
            if value.numel() != 1:
                raise ValueError(f"self.log({name!r}, value) needs a scalar, but got a tensor of shape "
                                 f"{tuple(value.shape)}; log value.mean() or each element under its own name.")
            value = value.squeeze()
        if not enable_graph:
            value = value.detach()
        return value if value.dtype in (torch.float32, torch.float64) else value.float()
    if isinstance(value, Number) and not isinstance(value, complex):
        return torch.tensor(float(value), device=device, dtype=torch.get_default_dtype())
    raise ValueError(f"self.log({name!r}, value) got a {type(value).__name__}; log a Python number, a scalar "
                     "tensor or a torchmetrics Metric (use self.log_dict for a dict).")


def _check_fx(fx: str | None, name: str, on_step: bool | None, on_epoch: bool | None) -> tuple[bool, bool]:
    """The (on_step, on_epoch) that ``self.log`` uses in hook ``fx``; raises where logging is not allowed."""
    rules = _FX_RULES.get(fx or "")
    if rules is None:
        raise MisconfigurationException(
            f"self.log({name!r}, ...) was called {f'in `{fx}`' if fx else 'outside the Trainer hooks'}, where "
            "logging is not supported; log from a *_step "
            "method, a *_batch_start/end hook or a *_epoch_start/end hook instead.")
    step_ok, epoch_ok, default_step, default_epoch = rules
    on_step = default_step if on_step is None else on_step
    on_epoch = default_epoch if on_epoch is None else on_epoch
    if not (on_step or on_epoch):
        raise MisconfigurationException(f"self.log({name!r}, on_step=False, on_epoch=False) would never report the "
                                        "value; set on_step=True, on_epoch=True, or both.")
    if on_step and not step_ok:
        raise MisconfigurationException(f"self.log({name!r}, on_step=True) is not allowed in `{fx}`: the hook runs "
                                        "once per epoch; use on_step=False.")
    if not on_epoch and not epoch_ok:
        raise MisconfigurationException(f"self.log({name!r}, on_epoch=False) is not allowed in `{fx}`.")
    return on_step, on_epoch
