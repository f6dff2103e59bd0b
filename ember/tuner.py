"""The Tuner: a learning-rate range test and the largest batch size that fits in memory.

    tuner = Tuner(trainer)
    finder = tuner.lr_find(model)            # model.lr (or .learning_rate, hparams.lr) is set to the suggestion
    finder.plot(suggest=True).savefig("lr.png")
    tuner.scale_batch_size(model, mode="binsearch")   # model.batch_size is set to the result
    trainer.fit(model)

Both searches run inside a fit: the :class:`~ember.callbacks.LearningRateFinder` and
:class:`~ember.callbacks.BatchSizeFinder` callbacks run them from ``on_fit_start`` (after the optimizers
exist), as short training runs with their own settings (no loggers, no other callbacks, no sanity check,
``max_steps`` set). The Tuner is such a fit that stops as soon as the search is done.

Everything a search changes is put back afterwards: the weights, optimizer, scheduler and scaler state
(through a temporary checkpoint file, so that a batch-size search measures memory without a second copy
of the weights on the device), the trainer's settings and progress, the callback metrics, the modules'
train/eval modes and the random state (so a tuned run trains exactly like an untuned one with the
tuned values; Lightning restores the random state after ``lr_find`` only).

Where ember differs from Lightning 2.6, on purpose:

- ``lr_find`` runs its ``num_training`` steps over as many epochs as needed (Lightning also stops at
  ``max_epochs``, so with ``max_epochs=1`` and a small dataset it may record a handful of points).
- The recorded loss is a properly bias-corrected moving average (Lightning's correction is off by
  one step, which halves the first points), and ``results["lr"]`` holds the rate each step really used.
- ``suggestion()`` takes the slope against log(lr) in exponential mode (see there).
- The Tuner's fit ends normally after the search (``on_fit_end``/``teardown`` run; Lightning leaves
  through an exception), with no loggers and no other callbacks attached.
- ``BatchSizeFinder`` as a callback tunes fit only; ``Tuner.scale_batch_size(method=...)`` tunes
  validate/test/predict with short calls of those.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import math
import os
import tempfile
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import torch

from ember.callbacks.callback import Callback
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:
    from ember.datamodule import LightningDataModule
    from ember.module import LightningModule
    from ember.trainer.trainer import Trainer

__all__ = ["Tuner"]

_METHODS = ("fit", "validate", "test", "predict")


class Tuner:
    """Tunes the learning rate and the batch size of a model before training it with ``trainer``."""

    def __init__(self, trainer: Trainer) -> None:
        self._trainer = trainer

    def lr_find(self, model: LightningModule, train_dataloaders: Any = None, val_dataloaders: Any = None,
                dataloaders: Any = None, datamodule: LightningDataModule | None = None, method: str = "fit",
                min_lr: float = 1e-8, max_lr: float = 1, num_training: int = 100, mode: str = "exponential",
                early_stop_threshold: float | None = 4.0, update_attr: bool = True,
                attr_name: str = "") -> _LRFinder | None:
        """Train ``num_training`` steps with the learning rate growing from ``min_lr`` to ``max_lr``; record
        the loss at each. Returns the result (``.results``, ``.suggestion()``, ``.plot()``); with
        ``update_attr`` the model's ``lr``/``learning_rate`` (or ``attr_name``) is set to the suggestion."""
        if method != "fit":
            raise MisconfigurationException(f"lr_find(method={method!r}): the learning rate finder trains, so "
                                            "method='fit' is the only valid value.")
        _check_data_arguments(method, train_dataloaders, val_dataloaders, dataloaders)
        from ember.callbacks.lr_finder import LearningRateFinder

        if any(isinstance(cb, LearningRateFinder) for cb in self._trainer.callbacks):
            raise MisconfigurationException("The Trainer already has a LearningRateFinder callback; remove it to "
                                            "use Tuner.lr_find (or keep it and just call trainer.fit).")
        finder = LearningRateFinder(min_lr=min_lr, max_lr=max_lr, num_training_steps=num_training, mode=mode,
                                    early_stop_threshold=early_stop_threshold, update_attr=update_attr,
                                    attr_name=attr_name)
        self._fit_stopping_after(finder, model, train_dataloaders, val_dataloaders, datamodule)
        return finder.optimal_lr

    def scale_batch_size(self, model: LightningModule, train_dataloaders: Any = None, val_dataloaders: Any = None,
                         dataloaders: Any = None, datamodule: LightningDataModule | None = None, method: str = "fit",
                         mode: str = "power", steps_per_trial: int = 3, init_val: int = 2, max_trials: int = 25,
                         batch_arg_name: str = "batch_size", margin: float = 0.05,
                         max_val: int = 8192) -> int | None:
        """Find the largest batch size that runs ``steps_per_trial`` steps of ``method`` without running out
        of memory, and set it on the model (``model.batch_size``, ``model.hparams.batch_size`` or the
        datamodule's, named by ``batch_arg_name``).

        ``mode="power"`` doubles the size from ``init_val`` until a trial fails; ``"binsearch"`` then
        bisects between the last size that worked and the first that failed, and takes ``margin`` off
        the result as a safety buffer. Sizes stop at ``max_val`` and at the length of the dataset.
        """
        if method not in _METHODS:
            raise ValueError(f"scale_batch_size(method={method!r}) is not valid; use one of {_METHODS}.")
        _check_data_arguments(method, train_dataloaders, val_dataloaders, dataloaders)
        if isinstance(train_dataloaders, _datamodule_type()):
            datamodule, train_dataloaders = train_dataloaders, None
        if train_dataloaders is not None or val_dataloaders is not None or (
                dataloaders is not None and not isinstance(dataloaders, _datamodule_type())):
            raise MisconfigurationException(
                "The batch size finder cannot change the batch size of dataloaders passed directly to "
                f"{method}(); build them in the LightningModule or a LightningDataModule (`*_dataloader` methods "
                f"reading `self.{batch_arg_name}`) and pass that instead.")
        if isinstance(dataloaders, _datamodule_type()):
            datamodule = dataloaders
        from ember.callbacks.batch_size_finder import BatchSizeFinder

        finder = BatchSizeFinder(mode=mode, steps_per_trial=steps_per_trial, init_val=init_val,
                                 max_trials=max_trials, batch_arg_name=batch_arg_name, margin=margin,
                                 max_val=max_val)
        if method == "fit":
            self._fit_stopping_after(finder, model, None, None, datamodule)
        else:
            finder.optimal_batch_size = _scale_batch_size(
                self._trainer, model, datamodule, method, mode=mode, steps_per_trial=steps_per_trial,
                init_val=init_val, max_trials=max_trials, batch_arg_name=batch_arg_name, margin=margin,
                max_val=max_val)
        return finder.optimal_batch_size

    def _fit_stopping_after(self, finder: Callback, model: LightningModule, train_dataloaders: Any,
                            val_dataloaders: Any, datamodule: Any) -> None:
        """``trainer.fit`` with only ``finder`` as callback and no loggers, ending right after ``on_fit_start``
        (``max_steps=0``, no sanity check); the trainer's own settings come back afterwards."""
        trainer = self._trainer
        saved = {name: getattr(trainer, name) for name in ("callbacks", "loggers", "max_steps", "num_sanity_val_steps")}
        trainer.callbacks, trainer.loggers, trainer.max_steps, trainer.num_sanity_val_steps = [finder], [], 0, 0
        try:
            trainer.fit(model, train_dataloaders, val_dataloaders, datamodule)
        finally:
            for name, value in saved.items():
                setattr(trainer, name, value)
            trainer._hook_cache = {}


def _datamodule_type() -> type:
    from ember.datamodule import LightningDataModule

    return LightningDataModule


def _check_data_arguments(method: str, train_dataloaders: Any, val_dataloaders: Any, dataloaders: Any) -> None:
    if method == "fit" and dataloaders is not None:
        raise MisconfigurationException("With method='fit' pass `train_dataloaders`/`val_dataloaders` (or a "
                                        "datamodule), not `dataloaders`.")
    if method != "fit" and (train_dataloaders is not None or val_dataloaders is not None):
        raise MisconfigurationException(f"With method={method!r} pass `dataloaders` (or a datamodule), not "
                                        "`train_dataloaders`/`val_dataloaders`.")


# -- the learning-rate range test -------------------------------------------------------------------
class _LRFinder:
    """The result of a learning-rate range test: ``results = {"lr": [...], "loss": [...]}`` (smoothed loss)."""

    def __init__(self, mode: str, lr_min: float, lr_max: float, num_training: int) -> None:
        if mode not in ("exponential", "linear"):
            raise ValueError(f"lr_find(mode={mode!r}) is not valid; use 'exponential' or 'linear'.")
        self.mode, self.lr_min, self.lr_max, self.num_training = mode, lr_min, lr_max, num_training
        self.results: dict[str, list[float]] = {"lr": [], "loss": []}
        self._optimal_idx: int | None = None
        self._total_batch_idx = 0

    def _lr_at(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based) of the search."""
        fraction = step / self.num_training
        if self.mode == "linear":
            return self.lr_min + fraction * (self.lr_max - self.lr_min)
        return self.lr_min * (self.lr_max / self.lr_min) ** fraction

    def suggestion(self, skip_begin: int = 10, skip_end: int = 1) -> float | None:
        """The learning rate where the smoothed loss falls fastest, ignoring the first ``skip_begin`` and
        last ``skip_end`` points; None when fewer than two finite points remain.

        The slope is taken along the plot's x axis: log(lr) for the exponential search, lr for the linear
        one. (Lightning 2.x differentiates against lr in both modes, which on an exponential sweep blows
        up the slope of the first, tiny-lr points, where the loss is mostly noise.)"""
        losses = self.results["loss"]
        indices = [i for i in range(skip_begin, len(losses) - skip_end) if math.isfinite(losses[i])]
        if len(indices) < 2:
            rank_zero_warn("lr_find: too few loss points to suggest a learning rate; raise num_training or use "
                           "more training data.")
            self._optimal_idx = None
            return None
        lrs = torch.tensor([self.results["lr"][i] for i in indices], dtype=torch.float64)
        if self.mode == "exponential":
            lrs = lrs.log()
        slope = torch.gradient(torch.tensor([losses[i] for i in indices], dtype=torch.float64), spacing=(lrs,))[0]
        self._optimal_idx = indices[int(torch.argmin(slope))]
        return self.results["lr"][self._optimal_idx]

    def plot(self, suggest: bool = False, show: bool = False, ax: Any = None) -> Any:
        """Loss against learning rate (log scale for the exponential search), the suggestion marked in red
        when ``suggest``. Returns the matplotlib figure (``fig.savefig("lr.png")``). Needs matplotlib."""
        try:
            import matplotlib.pyplot as plt
        except ImportError as err:
            raise ModuleNotFoundError("lr_find(...).plot() needs matplotlib: pip install 'ember[plot]' "
                                      "(or pip install matplotlib).") from err
        fig, ax = plt.subplots() if ax is None else (ax.figure, ax)
        ax.plot(self.results["lr"], self.results["loss"])
        if self.mode == "exponential":
            ax.set_xscale("log")
        ax.set_xlabel("Learning rate")
        ax.set_ylabel("Loss")
        if suggest and self.suggestion() is not None:
            i = self._optimal_idx
            ax.plot(self.results["lr"][i], self.results["loss"][i], marker="o", markersize=10, color="red")
        if show:
            plt.show()
        return fig


class _LRRecorder(Callback):
    """Sets each optimizer step's learning rate and records the smoothed loss; stops when it diverges."""

    def __init__(self, finder: _LRFinder, early_stop_threshold: float | None, beta: float = 0.98) -> None:
        self.finder, self.early_stop_threshold, self.beta = finder, early_stop_threshold, beta
        self._average = 0.0
        self._best = math.inf
        self._window = 0.0  # the loss of the optimizer step being accumulated
        self._steps_recorded = 0

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        lr = self.finder._lr_at(trainer.global_step)
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        self._window += float(loss) if isinstance(loss, torch.Tensor) else math.nan
        if trainer.global_step == self._steps_recorded:
            return  # accumulating: the optimizer has not stepped yet
        self._steps_recorded = trainer.global_step
        self.finder._total_batch_idx = trainer._progress.total_batch_idx
        self._record(trainer, trainer.optimizers[0].param_groups[0]["lr"], self._window)
        self._window = 0.0

    def _record(self, trainer: Trainer, lr: float, loss: float) -> None:
        n = len(self.finder.results["loss"]) + 1
        self._average = self.beta * self._average + (1 - self.beta) * loss
        smoothed = self._average / (1 - self.beta ** n)  # bias-corrected exponential moving average
        threshold = self.early_stop_threshold
        diverging = n > 1 and threshold is not None and smoothed > threshold * self._best
        if trainer.strategy.reduce_boolean_decision(diverging, all=False):  # every rank stops when one diverges
            trainer.should_stop = True
        if smoothed < self._best or n == 1:
            self._best = smoothed
        self.finder.results["lr"].append(lr)
        self.finder.results["loss"].append(smoothed)


def _lr_find(trainer: Trainer, model: LightningModule, min_lr: float = 1e-8, max_lr: float = 1,
             num_training: int = 100, mode: str = "exponential", early_stop_threshold: float | None = 4.0,
             update_attr: bool = True, attr_name: str = "") -> _LRFinder | None:
    """Run the range test inside a fit that has its optimizers (from ``on_fit_start``)."""
    if trainer.fast_dev_run:
        rank_zero_warn("Skipping the learning rate finder: fast_dev_run is on.")
        return None
    holders = _lr_holders(model, attr_name) if update_attr else []
    if len(trainer.optimizers) != 1:
        raise MisconfigurationException(f"configure_optimizers returned {len(trainer.optimizers)} optimizers; the "
                                        "learning rate finder works with exactly one.")
    finder = _LRFinder(mode, min_lr, max_lr, num_training)
    with _isolated(trainer, model):
        _configure_search(trainer, [_LRRecorder(finder, early_stop_threshold)], max_steps=num_training,
                          limit_val_batches=0)
        _run_fit(trainer)
    finder.results = trainer.strategy.broadcast(finder.results)  # every rank takes rank 0's curve and suggestion
    if len(finder.results["lr"]) < num_training:
        rank_zero_info(f"lr_find stopped early after {len(finder.results['lr'])} steps: the loss diverged.")
    lr = finder.suggestion() if holders else None
    if lr is not None:
        _set_attr(holders, lr)
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr
        rank_zero_info(f"Learning rate set to {lr}")
    return finder


def _lr_holders(model: LightningModule, attr_name: str) -> list[tuple[Any, str]]:
    names = [attr_name] if attr_name else ["lr", "learning_rate"]
    for name in names:
        holders = _attr_holders(model, None, name)
        if holders:
            return holders
    if attr_name:
        raise AttributeError(f"lr_find(attr_name={attr_name!r}): the model has no attribute or hparams entry "
                             f"{attr_name!r} to set the learning rate on.")
    raise AttributeError("lr_find(update_attr=True) sets the learning rate on the model, but neither the model nor "
                         "model.hparams has `lr` or `learning_rate`; add one (and read it in configure_optimizers), "
                         "name yours with attr_name=..., or pass update_attr=False.")


# -- the batch-size search ---------------------------------------------------------------------------
def _scale_batch_size(trainer: Trainer, model: LightningModule, datamodule: Any, method: str, mode: str = "power",
                      steps_per_trial: int = 3, init_val: int = 2, max_trials: int = 25,
                      batch_arg_name: str = "batch_size", margin: float = 0.05, max_val: int = 8192) -> int | None:
    """Find the largest batch size; ``method="fit"`` runs inside a fit (from ``on_fit_start``), the others
    run short ``trainer.validate/test/predict`` calls."""
    if mode not in ("power", "binsearch"):
        raise ValueError(f"scale_batch_size(mode={mode!r}) is not valid; use 'power' or 'binsearch'.")
    if not 0.0 <= margin < 1.0:
        raise ValueError(f"scale_batch_size(margin={margin}) must be in [0, 1).")
    if trainer.fast_dev_run:
        rank_zero_warn("Skipping the batch size finder: fast_dev_run is on.")
        return None
    if trainer.world_size > 1:
        raise MisconfigurationException("The batch size finder does not support distributed strategies (each "
                                        "process could settle on a different size); run it with devices=1.")
    holders = _attr_holders(model, datamodule, batch_arg_name)
    if not holders:
        raise MisconfigurationException(f"The batch size finder sets `{batch_arg_name}`, but neither the model, "
                                        "the datamodule nor their hparams have it; add it (and read it in the "
                                        "*_dataloader methods) or pass batch_arg_name=....")
    kind = {"fit": "train", "validate": "val", "test": "test", "predict": "predict"}[method]

    from ember.trainer import loops

    modes = loops._capture_modes(model)

    def trial(size: int) -> float:
        _set_attr(holders, size)
        loops._restore_modes(modes)  # a trial that ran out of memory may have stopped in eval mode
        if method == "fit":
            _run_fit(trainer)
        else:
            quiet = {"return_predictions": False} if method == "predict" else {"verbose": False}
            getattr(trainer, method)(model, datamodule=datamodule, **quiet)
        return _dataset_length(trainer._loaders.get(kind))

    with _isolated(trainer, model):
        if method == "fit":
            _configure_search(trainer, [], max_steps=steps_per_trial, limit_train_batches=1.0,
                              limit_val_batches=steps_per_trial)
        else:
            from ember.profilers import PassThroughProfiler

            trainer.callbacks, trainer.loggers, trainer.profiler = [], [], PassThroughProfiler()
            setattr(trainer, f"limit_{kind}_batches", steps_per_trial)
        size = _search(trial, init_val, mode, max_trials, max_val)
    if mode == "binsearch" and margin > 0 and max(1, int(size * (1 - margin))) != size:
        rank_zero_info(f"Taking the {margin:.0%} margin off: batch size {size} -> {max(1, int(size * (1 - margin)))}")
        size = max(1, int(size * (1 - margin)))
    _set_attr(holders, size)
    rank_zero_info(f"Batch size finder: continuing with batch size {size}")
    return size


def _search(trial: Callable[[int], float], size: int, mode: str, max_trials: int, max_val: int) -> int:
    """Grow the batch size by doubling until a trial runs out of memory; in "binsearch" mode then bisect
    between the largest size that worked and the smallest that failed. Returns the largest that worked."""
    good, bad = 0, None  # largest size that fit, smallest that did not
    for _ in range(max_trials):
        size = min(size, max_val)
        try:
            dataset_length = trial(size)
        except RuntimeError as err:
            if not _is_oom_error(err):
                raise
            bad = size
            rank_zero_info(f"Batch size {size} ran out of memory.")
            _free_memory()
        else:
            good = size
            rank_zero_info(f"Batch size {size} succeeded.")
            if size >= max_val or size >= dataset_length:
                break  # a larger batch size would change nothing
        if bad is not None and (bad - good <= 1 or (mode == "power" and good)):
            break
        size = size * 2 if bad is None else (good + bad) // 2
    if good == 0:
        raise RuntimeError(f"The batch size finder found no batch size that fits in memory (the last one tried, "
                           f"{size}, ran out of memory after {max_trials} trials or at batch size 1).")
    return good


def _is_oom_error(err: BaseException) -> bool:
    """Whether ``err`` says the device (or host) ran out of memory."""
    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError",
                                                                                      None)) if t is not None)
    if oom_types and isinstance(err, oom_types):
        return True
    message = str(err)
    return isinstance(err, RuntimeError) and any(s in message for s in (
        "out of memory", "CUDNN_STATUS_NOT_SUPPORTED", "can't allocate memory", "CUBLAS_STATUS_ALLOC_FAILED"))


def _free_memory() -> None:
    """Give the failed trial's cached device memory back (gc first: its tensors may sit in reference cycles).
    Skipped without CUDA, where a full collection costs a quarter second and frees nothing the next trial needs."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        gc.collect()
        torch.cuda.empty_cache()


def _dataset_length(loaders: Any) -> float:
    loader = loaders[0] if isinstance(loaders, list) and loaders else loaders
    try:
        return len(loader.dataset)
    except (AttributeError, TypeError, NotImplementedError):
        return math.inf


# -- shared by both searches -----------------------------------------------------------------------
def _attr_holders(model: Any, datamodule: Any, name: str) -> list[tuple[Any, str]]:
    """Where ``name`` lives: ("attr" on the object or "hparams" key) on the model and on the datamodule."""
    holders: list[tuple[Any, str]] = []
    for owner in (model, datamodule):
        if owner is None:
            continue
        if hasattr(owner, name):
            holders.append((owner, "attr"))
        hparams = getattr(owner, "hparams", None)
        if hparams is not None and name in hparams:
            holders.append((owner, "hparams"))
    return [(owner if where == "attr" else owner.hparams, name) for owner, where in holders]


def _set_attr(holders: list[tuple[Any, str]], value: Any) -> None:
    for holder, name in holders:
        if isinstance(holder, dict):
            holder[name] = value
        else:
            setattr(holder, name, value)


def _configure_search(trainer: Trainer, callbacks: list[Callback], max_steps: int, **limits: Any) -> None:
    """Settings for a search's short training runs: only ``callbacks``, no loggers or sanity check,
    ``max_steps`` optimizer steps over as many epochs as that takes."""
    trainer.callbacks, trainer.loggers = callbacks, []
    trainer.max_steps, trainer.max_epochs, trainer._min_epochs, trainer.min_steps = max_steps, -1, 0, None
    trainer.num_sanity_val_steps = 0
    trainer.lr_scheduler_configs = []
    for name, value in limits.items():
        setattr(trainer, name, value)


def _run_fit(trainer: Trainer) -> None:
    """One short training run from step 0 with the current settings, inside the running fit."""
    from ember.metrics import _MetricStore
    from ember.trainer import loops

    trainer._progress, trainer._metrics, trainer._loaders, trainer._hook_cache = loops._Progress(), _MetricStore(), \
        {}, {}
    trainer.should_stop = False
    loops._fit_loop(trainer)


@contextlib.contextmanager
def _isolated(trainer: Trainer, model: LightningModule) -> Generator[None, None, None]:
    """Put back, after the block, everything a search changes (see the module docstring)."""
    from ember.metrics import _MetricStore
    from ember.trainer import loops

    attributes = dict(trainer.__dict__)
    trainer.state, trainer._metrics = copy.copy(trainer.state), _MetricStore()  # both are changed in place
    rng, modes = loops._rng_state(), loops._capture_modes(model)
    grads = {name: None if p.grad is None else p.grad.detach().clone() for name, p in model.named_parameters()}
    fd, path = tempfile.mkstemp(prefix=".ember_tuner_", suffix=".ckpt")
    os.close(fd)
    try:
        torch.save({"state_dict": model.state_dict(),
                    "optimizer_states": [opt.state_dict() for opt in trainer.optimizers],
                    "lr_schedulers": [config.scheduler.state_dict() for config in trainer.lr_scheduler_configs],
                    "precision": trainer.strategy.precision.state_dict()}, path)
        yield
    finally:
        trainer.__dict__.clear()
        trainer.__dict__.update(attributes)
        saved = torch.load(path, map_location="cpu", weights_only=False)  # our own file, written above
        os.remove(path)
        model.load_state_dict(saved["state_dict"])
        for optimizer, optimizer_state in zip(trainer.optimizers, saved["optimizer_states"]):
            optimizer.load_state_dict(optimizer_state)
        for config, scheduler_state in zip(trainer.lr_scheduler_configs, saved["lr_schedulers"]):
            config.scheduler.load_state_dict(scheduler_state)
        trainer.strategy.precision.load_state_dict(saved["precision"])
        for name, param in model.named_parameters():
            param.grad = grads.get(name)
        loops._restore_modes(modes)
        loops._set_rng_state(rng)
        _free_memory()
