"""The Trainer: validated arguments, fit/validate/test/predict, the hook dispatcher, read-only properties."""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import sys
from collections.abc import Callable, Generator
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Iterable

import torch

from ember import accelerators, precision as _precision
from ember.callbacks.callback import Callback
from ember.callbacks.timer import _parse_duration
from ember.checkpoint import _dump_checkpoint, _restore_training_state
from ember.datamodule import LightningDataModule
from ember.metrics import _MetricStore, _Results
from ember.module import LightningModule
from ember.optimization import LightningOptimizer, LRSchedulerConfig, _clip_gradients, _init_optimizers
from ember.profilers import Profiler, _attach as _attach_profiler, _detach as _detach_profiler, _select_profiler
from ember.strategies.strategy import SingleDeviceStrategy, Strategy, _move_to_device
from ember.trainer import loops
from ember.trainer.preemption import _hpc_checkpoints, _Preempted, _SignalHandlers
from ember.trainer.states import RunningStage, TrainerFn, TrainerState, TrainerStatus
from ember.utilities.argparse import _defaults_from_env_vars
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:
    from ember.loggers.logger import Logger  # the annotation LightningCLI reads; imported lazily at run time

_FSDP_STRATEGIES = {"fsdp": {}, "fsdp_cpu_offload": {"cpu_offload": True}}  # name -> FSDPStrategy arguments
_LATER_STRATEGIES = ("xla", "model_parallel")
# LightningModule hooks whose default does nothing (or returns its input): skipped unless overridden
_NOOP_MODULE_HOOKS = frozenset((
    "prepare_data", "setup", "teardown", "configure_model", "on_before_batch_transfer", "on_after_batch_transfer",
    "on_fit_start", "on_fit_end", "on_train_start", "on_train_end", "on_validation_start", "on_validation_end",
    "on_test_start", "on_test_end", "on_predict_start", "on_predict_end", "on_train_batch_start",
    "on_train_batch_end", "on_validation_batch_start", "on_validation_batch_end", "on_test_batch_start",
    "on_test_batch_end", "on_predict_batch_start", "on_predict_batch_end", "on_train_epoch_start",
    "on_train_epoch_end", "on_validation_epoch_start", "on_validation_epoch_end", "on_test_epoch_start",
    "on_test_epoch_end", "on_predict_epoch_start", "on_predict_epoch_end", "on_before_backward",
    "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad", "on_save_checkpoint",
    "on_load_checkpoint",
))




def _check(name: str, value: Any, ok: bool, accepted: str) -> None:
    if not ok:
        raise MisconfigurationException(f"Trainer({name}={value!r}) is not valid; {accepted}.")


def _check_limit(name: str, value: Any) -> None:
    ok = value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0) or (
        isinstance(value, float) and 0.0 <= value <= 1.0)
    _check(name, value, ok, "use an int >= 0 (number of batches) or a float in [0.0, 1.0] (fraction)")


class Trainer:
    """Runs training, validation, testing and prediction for a LightningModule.

    Takes the same arguments, with the same defaults, as ``lightning.pytorch.Trainer``.
    """

    @_defaults_from_env_vars  # PL_TRAINER_<ARG> environment variables give defaults, as in Lightning
    def __init__(
        self,
        *,
        accelerator: str | accelerators.Accelerator = "auto",
        strategy: str | Strategy = "auto",
        devices: list[int] | str | int = "auto",
        num_nodes: int = 1,
        precision: Any = None,
        logger: Logger | Iterable[Logger] | bool | None = None,
        callbacks: list[Callback] | Callback | None = None,
        fast_dev_run: int | bool = False,
        max_epochs: int | None = None,
        min_epochs: int | None = None,
        max_steps: int = -1,
        min_steps: int | None = None,
        max_time: str | timedelta | dict[str, int] | None = None,
        limit_train_batches: int | float | None = None,
        limit_val_batches: int | float | None = None,
        limit_test_batches: int | float | None = None,
        limit_predict_batches: int | float | None = None,
        overfit_batches: int | float = 0.0,
        val_check_interval: int | float | str | timedelta | dict | None = None,
        check_val_every_n_epoch: int | None = 1,
        num_sanity_val_steps: int | None = None,
        log_every_n_steps: int | None = None,
        enable_checkpointing: bool | None = None,
        enable_progress_bar: bool | None = None,
        enable_model_summary: bool | None = None,
        accumulate_grad_batches: int = 1,
        gradient_clip_val: int | float | None = None,
        gradient_clip_algorithm: str | None = None,
        deterministic: bool | str | None = None,
        benchmark: bool | None = None,
        inference_mode: bool = True,
        use_distributed_sampler: bool = True,
        profiler: Profiler | str | None = None,
        detect_anomaly: bool = False,
        barebones: bool = False,
        plugins: Any = None,
        sync_batchnorm: bool = False,
        reload_dataloaders_every_n_epochs: int = 0,
        default_root_dir: str | os.PathLike | None = None,
        enable_autolog_hparams: bool = True,
        model_registry: str | None = None,
    ) -> None:
        # -- training duration ----------------------------------------------------------------------
        for name, value in (("max_epochs", max_epochs), ("min_epochs", min_epochs), ("min_steps", min_steps)):
            _check(name, value, value is None or (isinstance(value, int) and value >= -1),
                   "use None or an int >= -1 (-1 means no limit)")
        _check("max_steps", max_steps, isinstance(max_steps, int) and max_steps >= -1,
               "use an int >= -1 (-1 means no limit)")
        _check("fast_dev_run", fast_dev_run, isinstance(fast_dev_run, (bool, int)) and fast_dev_run >= 0,
               "use False, True or a positive int number of batches")
        for name, value in (("limit_train_batches", limit_train_batches), ("limit_val_batches", limit_val_batches),
                            ("limit_test_batches", limit_test_batches),
                            ("limit_predict_batches", limit_predict_batches), ("overfit_batches", overfit_batches)):
            _check_limit(name, value)
        self.max_time = max_time
        _parse_duration(max_time, "Trainer(max_time")  # fails early, naming the accepted formats
        # -- validation -----------------------------------------------------------------------------
        _check("val_check_interval", val_check_interval, val_check_interval is None or (
            isinstance(val_check_interval, int) and not isinstance(val_check_interval, bool) and val_check_interval > 0
        ) or (isinstance(val_check_interval, float) and 0.0 < val_check_interval <= 1.0),
               "use a float in (0.0, 1.0] (fraction of an epoch) or an int > 0 (number of batches)")
        _check("check_val_every_n_epoch", check_val_every_n_epoch, check_val_every_n_epoch is None or (
            isinstance(check_val_every_n_epoch, int) and check_val_every_n_epoch > 0), "use an int > 0 or None")
        _check("num_sanity_val_steps", num_sanity_val_steps, num_sanity_val_steps is None or (
            isinstance(num_sanity_val_steps, int) and num_sanity_val_steps >= -1), "use an int >= -1 (-1: all)")
        _check("log_every_n_steps", log_every_n_steps, log_every_n_steps is None or (
            isinstance(log_every_n_steps, int) and log_every_n_steps >= 0), "use an int >= 0")
        # -- optimization ---------------------------------------------------------------------------
        _check("accumulate_grad_batches", accumulate_grad_batches,
               isinstance(accumulate_grad_batches, int) and accumulate_grad_batches >= 1, "use an int >= 1")
        _check("gradient_clip_val", gradient_clip_val, gradient_clip_val is None or (
            isinstance(gradient_clip_val, (int, float)) and gradient_clip_val >= 0), "use None or a number >= 0")
        _check("gradient_clip_algorithm", gradient_clip_algorithm, gradient_clip_algorithm in (None, "norm", "value"),
               "use 'norm', 'value' or None")
        _check("reload_dataloaders_every_n_epochs", reload_dataloaders_every_n_epochs,
               isinstance(reload_dataloaders_every_n_epochs, int) and reload_dataloaders_every_n_epochs >= 0,
               "use an int >= 0")
        _check("deterministic", deterministic, deterministic in (None, True, False, "warn"),
               "use None, True, False or 'warn'")
        # -- features that arrive in later versions -------------------------------------------------
        self.profiler: Profiler = _select_profiler(profiler, barebones)
        if plugins is not None:
            raise NotImplementedError("Trainer(plugins=...) is not available yet in ember; use plugins=None.")
        if model_registry is not None:
            raise NotImplementedError("Trainer(model_registry=...) is not available in ember; use None.")
        _check("num_nodes", num_nodes, isinstance(num_nodes, int) and not isinstance(num_nodes, bool) and
               num_nodes >= 1, "use an int >= 1 (the number of machines)")
        # -- barebones and fast_dev_run -------------------------------------------------------------
        if barebones:
            for name, value in (("enable_checkpointing", enable_checkpointing), ("logger", logger),
                                ("enable_progress_bar", enable_progress_bar),
                                ("enable_model_summary", enable_model_summary),
                                ("log_every_n_steps", log_every_n_steps), ("num_sanity_val_steps",
                                                                           num_sanity_val_steps)):
                if value not in (None, False, 0):
                    raise MisconfigurationException(f"Trainer(barebones=True) turns off {name}, but {name}="
                                                    f"{value!r} was passed; drop it or set barebones=False.")
            enable_checkpointing = enable_progress_bar = enable_model_summary = logger = False
            log_every_n_steps = num_sanity_val_steps = 0
        self.fast_dev_run: int | bool = fast_dev_run
        if fast_dev_run:
            n = 1 if fast_dev_run is True else int(fast_dev_run)
            limit_train_batches = limit_val_batches = limit_test_batches = limit_predict_batches = n
            max_steps, max_epochs, num_sanity_val_steps, val_check_interval = n, 1, 0, 1.0
            check_val_every_n_epoch = 1
            self.max_time = None
            rank_zero_info(f"Running in `fast_dev_run` mode: will run the requested loop using {n} batch(es). "
                           "Logging and checkpointing are suppressed.")
        self.max_epochs = max_epochs if max_epochs is not None else (1000 if max_steps == -1 else -1)
        self._min_epochs = min_epochs or 0
        self.max_epochs_arg, self.min_epochs, self.max_steps, self.min_steps = max_epochs, min_epochs, max_steps, \
            min_steps
        self.limit_train_batches = 1.0 if limit_train_batches is None else limit_train_batches
        self.limit_val_batches = 1.0 if limit_val_batches is None else limit_val_batches
        self.limit_test_batches = 1.0 if limit_test_batches is None else limit_test_batches
        self.limit_predict_batches = 1.0 if limit_predict_batches is None else limit_predict_batches
        self.overfit_batches = overfit_batches
        if overfit_batches:
            self.limit_train_batches = self.limit_val_batches = overfit_batches
        self.val_check_interval = 1.0 if val_check_interval is None else val_check_interval
        self.check_val_every_n_epoch = check_val_every_n_epoch
        self.num_sanity_val_steps = 2 if num_sanity_val_steps is None else num_sanity_val_steps
        if self.num_sanity_val_steps == -1:
            self.num_sanity_val_steps = math.inf  # type: ignore[assignment]
        self.log_every_n_steps = 50 if log_every_n_steps is None else log_every_n_steps
        self.accumulate_grad_batches = accumulate_grad_batches
        self.gradient_clip_val = gradient_clip_val
        self.gradient_clip_algorithm = gradient_clip_algorithm
        self._inference_mode = inference_mode
        self._detect_anomaly = detect_anomaly
        self._barebones = barebones
        self._reload_every = reload_dataloaders_every_n_epochs
        self.use_distributed_sampler = use_distributed_sampler
        self.enable_autolog_hparams = enable_autolog_hparams
        self._default_root_dir = os.fspath(default_root_dir) if default_root_dir is not None else None
        # -- hardware, precision, determinism -------------------------------------------------------
        self.accelerator = accelerators._select_accelerator(accelerator)
        self._precision_flag = _precision._normalize_precision("32-true" if precision is None else precision)
        self.strategy = self._select_strategy(strategy, devices, num_nodes)
        self.strategy._layer_sync = sync_batchnorm  # SyncBatchNorm where there are several processes
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=deterministic == "warn")
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        elif deterministic is False:
            torch.use_deterministic_algorithms(False)
        if torch.backends.cudnn.is_available():
            torch.backends.cudnn.benchmark = bool(benchmark) if benchmark is not None else \
                (False if deterministic else torch.backends.cudnn.benchmark)
        # -- callbacks and loggers ------------------------------------------------------------------
        self.callbacks: list[Callback] = self._init_callbacks(callbacks, enable_checkpointing,
                                                              enable_progress_bar, enable_model_summary)
        self.loggers: list[Any] = self._init_loggers(logger)
        # -- run state ------------------------------------------------------------------------------
        self.state = TrainerState()
        self.should_stop = False
        self._progress = loops._Progress()
        self._metrics = _MetricStore()
        self._train_results = _Results()
        self._module: LightningModule | None = None
        self.datamodule: LightningDataModule | None = None
        self.optimizers: list[torch.optim.Optimizer] = []
        self._lightning_optimizers: list[LightningOptimizer] = []
        self.lr_scheduler_configs: list[LRSchedulerConfig] = []
        self._sources: dict[str, Any] = {}
        self._loaders: dict[str, Any] = {}
        self.num_training_batches: float = math.inf
        self.num_val_batches: list[float] = []
        self.num_sanity_val_batches: list[float] = []
        self.num_test_batches: list[float] = []
        self.num_predict_batches: list[float] = []
        self.val_check_batch: float = math.inf
        self.ckpt_path: str | None = None
        self._hook_cache: dict[str, tuple[list[Any], list[Any], bool]] = {}
        self._step_plan = loops._FULL_STEP_PLAN
        self._is_last_batch = False
        self._eval_log_steps: dict[str, list[int]] = {}  # the step loggers see for evaluation step metrics
        self._epoch_rng: dict[str, Any] = {}
        self._validation_on = False
        self._signals = _SignalHandlers()
        self._resume_state: dict[str, Any] | None = None

    # ---------------------------------------------------------------------------------------------
    # construction helpers
    # ---------------------------------------------------------------------------------------------
    def _select_strategy(self, strategy: str | Strategy, devices: Any, num_nodes: int = 1) -> Strategy:
        from ember.strategies.ddp import _DDP_STRATEGIES, DDPStrategy
        from ember.strategies.deepspeed import _DEEPSPEED_STRATEGIES

        device_ids = accelerators._parse_devices(devices, self.accelerator)
        if strategy == "auto" and (len(device_ids) > 1 or num_nodes > 1):  # Lightning's choice
            strategy = "ddp_fork" if hasattr(sys, "ps1") or sys.flags.interactive else "ddp"
        if isinstance(strategy, Strategy):
            chosen = strategy
        elif not isinstance(strategy, str) or strategy not in ("auto", "single_device", *_DDP_STRATEGIES,
                                                               *_FSDP_STRATEGIES, *_DEEPSPEED_STRATEGIES,
                                                               *_LATER_STRATEGIES):
            raise MisconfigurationException(f"Trainer(strategy={strategy!r}) is not a known strategy; use 'auto', "
                                            "'single_device', 'ddp', 'ddp_spawn', 'ddp_fork', 'ddp_notebook', 'fsdp', "
                                            "'deepspeed', 'deepspeed_stage_1/2/3' (with _offload for 2 and 3), "
                                            f"a Strategy instance, or one of {', '.join(_LATER_STRATEGIES)} (coming "
                                            "in a later version).")
        elif strategy in _LATER_STRATEGIES:
            raise NotImplementedError(f"Trainer(strategy={strategy!r}) is not available yet in ember; use "
                                      "strategy='auto', 'ddp' or 'ddp_spawn'.")
        elif strategy in _DDP_STRATEGIES:
            chosen = DDPStrategy(**_DDP_STRATEGIES[strategy])
        elif strategy in _FSDP_STRATEGIES:
            from ember.strategies.fsdp import FSDPStrategy

            chosen = FSDPStrategy(**_FSDP_STRATEGIES[strategy])
        elif strategy in _DEEPSPEED_STRATEGIES:
            from ember.strategies.deepspeed import DeepSpeedStrategy

            chosen = DeepSpeedStrategy(**_DEEPSPEED_STRATEGIES[strategy])
        else:
            chosen = SingleDeviceStrategy(self.accelerator.root_device(device_ids[0]), self.accelerator)
        chosen._configure(self.accelerator, device_ids, num_nodes)
        chosen.accelerator = self.accelerator
        chosen.precision = _precision._select_precision(self._precision_flag, chosen.root_device.type)
        return chosen

    def _init_callbacks(self, callbacks: Any, checkpointing: bool | None, progress_bar: bool | None,
                        model_summary: bool | None) -> list[Callback]:
        from ember.callbacks import ModelCheckpoint, ModelSummary, ProgressBar, Timer, TQDMProgressBar

        if isinstance(callbacks, Callback):
            callbacks = [callbacks]
        callbacks = list(callbacks or [])
        bad = [cb for cb in callbacks if not isinstance(cb, Callback)]
        if bad:
            raise MisconfigurationException(f"Trainer(callbacks=...) got {bad!r}, which are not Callback instances; "
                                            "pass a list of ember.callbacks.Callback objects.")
        has = lambda cls: any(isinstance(cb, cls) for cb in callbacks)  # noqa: E731
        if self.max_time is not None and not has(Timer):  # max_time is a Timer, as in Lightning
            callbacks.append(Timer(duration=self.max_time, interval="step"))
        if checkpointing is False and has(ModelCheckpoint):
            raise MisconfigurationException("Trainer(enable_checkpointing=False) but a ModelCheckpoint is in "
                                            "callbacks; remove one of them.")
        if progress_bar is False and has(ProgressBar):
            raise MisconfigurationException("Trainer(enable_progress_bar=False) but a progress bar is in callbacks; "
                                            "remove one of them.")
        if checkpointing is not False and not has(ModelCheckpoint):
            callbacks.append(ModelCheckpoint())
        if progress_bar is not False and not has(ProgressBar):
            callbacks.append(TQDMProgressBar())
        if model_summary is not False and not has(ModelSummary):
            callbacks.append(ModelSummary())
        return self._reorder(callbacks)

    @staticmethod
    def _reorder(callbacks: list[Callback]) -> list[Callback]:
        """Checkpoint callbacks run last, so that they see what the others did."""
        from ember.callbacks import ModelCheckpoint

        return [cb for cb in callbacks if not isinstance(cb, ModelCheckpoint)] + \
            [cb for cb in callbacks if isinstance(cb, ModelCheckpoint)]

    def _init_loggers(self, logger: Any) -> list[Any]:
        from ember.loggers import CSVLogger, Logger

        if logger is None or logger is True:
            from ember.loggers.tensorboard import TensorBoardLogger, _tensorboard_available

            if self.fast_dev_run:
                return []
            # as in Lightning: TensorBoard when it is installed, else the dependency-free CSV logger
            default = TensorBoardLogger if _tensorboard_available() else CSVLogger
            return [default(save_dir=self.default_root_dir)]
        if logger is False:
            return []
        loggers = list(logger) if isinstance(logger, Iterable) else [logger]
        bad = [lg for lg in loggers if not isinstance(lg, Logger)]
        if bad:
            raise MisconfigurationException(f"Trainer(logger=...) got {bad!r}; pass True, False, a Logger or a list "
                                            "of Loggers from ember.loggers.")
        return [] if self.fast_dev_run else loggers

    # ---------------------------------------------------------------------------------------------
    # the hook dispatcher
    # ---------------------------------------------------------------------------------------------
    def _hooks_for(self, name: str) -> tuple[list[Any], list[Any], str]:
        """(callbacks before the module, callbacks after it, what the module runs).

        The last item is "user" (an override), "default" (LightningModule's own code, which does
        something) or "" (a no-op default: not called at all)."""
        cached = self._hook_cache.get(name)
        if cached is None:
            from ember.callbacks import EarlyStopping, ModelCheckpoint

            base = getattr(Callback, name, None)
            fns = [cb for cb in self.callbacks
                   if base is not None and getattr(getattr(cb, name), "__func__", None) is not base]
            late = [cb for cb in fns if name == "on_train_epoch_end" and isinstance(cb, (ModelCheckpoint,
                                                                                         EarlyStopping))]
            early = [getattr(cb, name) for cb in fns if cb not in late]
            module_fn = getattr(type(self._module), name, None)
            if module_fn is None:
                runs = ""
            elif module_fn is not getattr(LightningModule, name, None):
                runs = "user"
            else:
                runs = "" if name in _NOOP_MODULE_HOOKS else "default"
            cached = self._hook_cache[name] = (early, [getattr(cb, name) for cb in late], runs)
        return cached

    def _hook(self, name: str, *args: Any) -> Any:
        """Call hook ``name`` on the callbacks, then on the module; return the module's result.

        With a profiler, ``ember.profilers._profiled_hook`` stands in for this: change both alike."""
        early, late, module_has = self._hook_cache.get(name) or self._hooks_for(name)
        if not (early or late or module_has):
            return None
        module = self._module
        module.__dict__["_current_fx_name"] = name
        for fn in early:
            fn(self, module, *args)
        out = getattr(module, name)(*args) if module_has else None
        if late:
            module.__dict__["_current_fx_name"] = name
            for fn in late:
                fn(self, module, *args)
        return out

    def _module_hook(self, name: str, *args: Any, **kwargs: Any) -> Any:
        module = self._module
        module.__dict__["_current_fx_name"] = name
        return getattr(module, name)(*args, **kwargs)

    def _callback_hook(self, name: str, *args: Any) -> None:
        module = self._module
        for cb in self.callbacks:
            getattr(cb, name)(self, module, *args)

    # ---------------------------------------------------------------------------------------------
    # steps the loop and the closures call
    # ---------------------------------------------------------------------------------------------
    def _to_device(self, batch: Any, dataloader_idx: int) -> Any:
        """convert_input, then on_before_batch_transfer, transfer_batch_to_device, on_after_batch_transfer."""
        batch = self.strategy.precision.convert_input(batch)
        before, transfer, after, _ = self._transfer_plan or self._plan_transfer()
        if before:
            batch = self._module_hook("on_before_batch_transfer", batch, dataloader_idx)
        if transfer:
            batch = self._module_hook("transfer_batch_to_device", batch, self.strategy.root_device, dataloader_idx)
        else:
            batch = self.strategy.batch_to_device(batch)
        if after:
            batch = self._module_hook("on_after_batch_transfer", batch, dataloader_idx)
        return batch

    def _batch_mover(self, dataloader_idx: int) -> Callable[[Any], Any]:
        """What a loop calls on each batch: the bare move when no hook or conversion is involved."""
        direct = (self._transfer_plan or self._plan_transfer())[3]
        if direct is None or "_to_device" in self.__dict__:  # hooks to run, or a profiler timing the transfer
            return partial(self._to_device, dataloader_idx=dataloader_idx)
        return partial(_move_to_device, device=direct[0], non_blocking=direct[1])

    def _plan_transfer(self) -> tuple[bool, bool, bool, tuple[torch.device, bool] | None]:
        """Which batch-transfer hooks the module overrides, worked out once per run; the last item is
        ``(device, non_blocking)`` when moving the batch is all there is to do."""
        before = bool(self._hooks_for("on_before_batch_transfer")[2])
        transfer = self._hooks_for("transfer_batch_to_device")[2] == "user"
        after = bool(self._hooks_for("on_after_batch_transfer")[2])
        strategy = self.strategy
        direct = None
        if not (before or transfer or after) and strategy.precision.dtype == torch.float32 and \
                type(strategy).batch_to_device is Strategy.batch_to_device:
            direct = strategy._move_target()
        self._transfer_plan = (before, transfer, after, direct)
        return self._transfer_plan

    # These run on every training step: ``_step_plan`` (worked out once per fit) lets them skip hooks that
    # nobody implements and call torch directly where the module keeps LightningModule's default.
    def _zero_grad(self, optimizer: torch.optim.Optimizer, batch_idx: int) -> None:
        plan = self._step_plan
        if "on_before_zero_grad" in plan.live:
            self._hook("on_before_zero_grad", optimizer)
        if plan.own_zero_grad:
            self._module_hook("optimizer_zero_grad", self._progress.epoch, batch_idx, optimizer)
        else:
            optimizer.zero_grad()

    def _backward(self, loss: torch.Tensor, optimizer: Any, *args: Any, **kwargs: Any) -> None:
        plan = self._step_plan
        if plan.scaled:
            loss = self.strategy.precision.pre_backward(loss)
        if "on_before_backward" in plan.live:
            self._hook("on_before_backward", loss)
        if plan.own_backward:
            self._module_hook("backward", loss, *args, **kwargs)
        else:
            loss.backward(*args, **kwargs)
        if "on_after_backward" in plan.live:
            self._hook("on_after_backward")

    def _after_closure(self, optimizer: torch.optim.Optimizer) -> None:
        plan = self._step_plan
        if "on_before_optimizer_step" in plan.live:
            self._hook("on_before_optimizer_step", optimizer)
        if (self.gradient_clip_val or plan.clipping_hook) and plan.automatic:
            self._module_hook("configure_gradient_clipping", optimizer, gradient_clip_val=self.gradient_clip_val,
                              gradient_clip_algorithm=self.gradient_clip_algorithm)

    def _clip_gradients(self, optimizer: Any, clip_val: float | None, algorithm: str | None) -> None:
        if clip_val is None:
            clip_val = self.gradient_clip_val or 0.0
        elif self.gradient_clip_val is not None and self.gradient_clip_val != clip_val:
            raise MisconfigurationException(f"clip_gradients(gradient_clip_val={clip_val}) conflicts with "
                                            f"Trainer(gradient_clip_val={self.gradient_clip_val}); set it in one "
                                            "place only.")
        _clip_gradients(optimizer, clip_val, algorithm or self.gradient_clip_algorithm or "norm")

    def _log_step_metrics(self) -> None:
        """Send this step's values to the loggers every ``log_every_n_steps`` (only then are they collected)."""
        if not self.loggers or self.log_every_n_steps == 0:
            return
        if (self._progress.batches_that_stepped + 1) % self.log_every_n_steps == 0 or self.should_stop \
                or self.fast_dev_run:
            self._log_metrics(self._metrics.collect(on_step=True))

    def _log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Send ``metrics`` to every logger, as Python floats (one host sync for all of them)."""
        if not self.loggers or not metrics:
            return
        keys = list(metrics)
        values = [metrics[k] for k in keys]
        tensors = [v for v in values if isinstance(v, torch.Tensor)]
        if tensors:
            floats = iter(torch.stack([t.detach().float().reshape(()).cpu() for t in tensors]).tolist())
            values = [next(floats) if isinstance(v, torch.Tensor) else v for v in values]
        scalars = dict(zip(keys, values))
        if step is None:
            step_value = scalars.pop("step", None)
            if step_value is not None:
                step = int(step_value)
            else:
                scalars.setdefault("epoch", self.current_epoch)
                step = self._progress.batches_that_stepped
        for logger in self.loggers:
            logger.log_metrics(scalars, step=step)
            logger.save()

    @contextlib.contextmanager
    def _eval_context(self) -> Generator[None, None, None]:
        use_inference = self._inference_mode and self.state.fn != TrainerFn.FITTING
        with torch.inference_mode() if use_inference else torch.no_grad():
            yield

    # ---------------------------------------------------------------------------------------------
    # data
    # ---------------------------------------------------------------------------------------------
    def _request_loaders(self, kind: str) -> list[Any]:
        """The dataloaders for ``kind`` ("train", "val", "test", "predict"), from the call, datamodule or model."""
        source = self._sources.get(kind)
        if source is None:
            hook = f"{kind}_dataloader"
            for owner in (self.datamodule, self._module):
                if owner is not None and callable(getattr(owner, hook, None)):
                    if owner is self._module:
                        self._module.__dict__["_current_fx_name"] = hook
                    source = getattr(owner, hook)()
                    break
        loaders = loops._flatten_loaders(source)
        for loader in loaders:
            if not isinstance(loader, Iterable):
                raise MisconfigurationException(f"The {kind} dataloader is a {type(loader).__name__}, which cannot "
                                                "be iterated; pass a torch DataLoader (or any iterable of batches).")
        return loaders

    def _has_source(self, kind: str) -> bool:
        if self._sources.get(kind) is not None:
            return True
        hook = f"{kind}_dataloader"
        return any(owner is not None and callable(getattr(owner, hook, None))
                   for owner in (self.datamodule, self._module))

    def _setup_train_data(self) -> None:
        loaders = self._request_loaders("train")
        if len(loaders) != 1:
            raise MisconfigurationException(
                f"fit needs exactly one train dataloader, got {len(loaders)}; several train dataloaders are not "
                "supported yet — combine them into one DataLoader.")
        loader = loaders[0]
        if self.overfit_batches:
            loader = _sequential_copy(loader)
        if self.use_distributed_sampler:  # each process gets its share of the data (DistributedSampler)
            loader = self.strategy.process_dataloader(loader, "train")
        self._loaders["train"] = loader
        if loops._length(loader) == 0:
            raise MisconfigurationException("The train dataloader is empty (0 batches): check the dataset and the "
                                            "batch_size/drop_last settings.")
        self.num_training_batches = loops._num_batches(loader, self.limit_train_batches, "train")
        interval = self.val_check_interval
        if isinstance(interval, int):
            if interval > self.num_training_batches and self.check_val_every_n_epoch is not None:
                raise ValueError(f"Trainer(val_check_interval={interval}) must be at most the number of training "
                                 f"batches ({self.num_training_batches}); to validate across epochs set "
                                 "check_val_every_n_epoch=None, to disable validation set limit_val_batches=0.")
            self.val_check_batch = interval
        elif math.isinf(self.num_training_batches):
            if interval != 1.0:
                raise MisconfigurationException(f"Trainer(val_check_interval={interval}) is a fraction of an epoch, "
                                                "but the train dataloader has no length; use an int.")
            self.val_check_batch = math.inf
        else:
            self.val_check_batch = max(1, int(self.num_training_batches * interval))
        if self._seed_workers():
            _add_worker_init(loader)

    def _setup_eval_data(self, kind: str) -> None:
        if kind in self._loaders:
            return
        loaders = self._request_loaders(kind)  # overfit_batches limits them, as in Lightning 2.x
        if self.use_distributed_sampler:
            loaders = [self.strategy.process_dataloader(loader, kind) for loader in loaders]
        limit = {"val": self.limit_val_batches, "test": self.limit_test_batches,
                 "predict": self.limit_predict_batches}[kind]
        self._loaders[kind] = loaders
        self._eval_log_steps["test" if kind == "test" else "validation"] = [0] * len(loaders)
        counts = [loops._num_batches(dl, limit, kind) for dl in loaders]
        setattr(self, {"val": "num_val_batches", "test": "num_test_batches", "predict": "num_predict_batches"}[kind],
                counts)
        step_name = {"val": "validation_step", "test": "test_step", "predict": "predict_step"}[kind]
        params = inspect.signature(getattr(self._module, step_name)).parameters
        takes_idx = "dataloader_idx" in params or any(p.kind is p.VAR_POSITIONAL for p in params.values())
        if len(loaders) > 1 and not takes_idx:
            raise RuntimeError(f"You passed {len(loaders)} {kind} dataloaders, but `{step_name}` has no "
                               "`dataloader_idx` argument; define it as "
                               f"`{step_name}(self, batch, batch_idx, dataloader_idx=0)`.")

    def _reload_train_dataloader(self) -> None:
        """``reload_dataloaders_every_n_epochs``: ask for fresh train and val dataloaders."""
        self._setup_train_data()
        if self._loaders.pop("val", None) is not None:
            self._setup_eval_data("val")

    @staticmethod
    def _seed_workers() -> bool:
        return os.environ.get("PL_SEED_WORKERS", "0") == "1"

    @property
    def _val_enabled(self) -> bool:
        module = self._module
        return (self.limit_val_batches != 0 and self._has_source("val") and module is not None
                and type(module).validation_step is not LightningModule.validation_step)

    # ---------------------------------------------------------------------------------------------
    # the public entry points
    # ---------------------------------------------------------------------------------------------
    def fit(self, model: LightningModule, train_dataloaders: Any = None, val_dataloaders: Any = None,
            datamodule: LightningDataModule | None = None, ckpt_path: str | os.PathLike | None = None,
            weights_only: bool | None = None) -> None:
        """Train ``model``; validation runs as scheduled. ``ckpt_path`` resumes ("last", "best" or a path)."""
        if isinstance(train_dataloaders, LightningDataModule):
            datamodule, train_dataloaders = train_dataloaders, None
        if datamodule is not None and (train_dataloaders is not None or val_dataloaders is not None):
            raise MisconfigurationException("fit() got both dataloaders and a datamodule; pass one or the other.")
        self._begin(model, TrainerFn.FITTING, datamodule, {"train": train_dataloaders, "val": val_dataloaders})
        if self.strategy.launcher is not None:  # ddp_spawn/ddp_fork: the run happens in new processes
            return self.strategy.launcher.launch(self, "fit", model, train_dataloaders, val_dataloaders, datamodule,
                                                 ckpt_path, weights_only)
        self._signals = _SignalHandlers()
        self._signals.register()
        try:
            self._setup_run(ckpt_path, weights_only)
            with torch.autograd.set_detect_anomaly(self._detect_anomaly):
                loops._fit_loop(self, self._resume_state)
            self.strategy.teardown()
            self._hook("on_fit_end")
            self._end_run()
        except _Preempted as preempted:
            self._on_exception(preempted)
            raise SystemExit(128 + preempted.signum) from None  # the job did not finish: exit as if signalled
        except BaseException as err:
            self._on_exception(err)
            raise
        finally:
            self._signals.restore()

    def validate(self, model: LightningModule | None = None, dataloaders: Any = None,
                 ckpt_path: str | os.PathLike | None = None, verbose: bool = True,
                 datamodule: LightningDataModule | None = None,
                 weights_only: bool | None = None) -> list[dict[str, float]]:
        """Run one validation epoch; returns one dict of logged metrics per dataloader."""
        return self._evaluate(TrainerFn.VALIDATING, model, dataloaders, ckpt_path, verbose, datamodule, weights_only)

    def test(self, model: LightningModule | None = None, dataloaders: Any = None,
             ckpt_path: str | os.PathLike | None = None, verbose: bool = True,
             datamodule: LightningDataModule | None = None, weights_only: bool | None = None) -> list[dict[str, float]]:
        """Run one test epoch; returns one dict of logged metrics per dataloader."""
        return self._evaluate(TrainerFn.TESTING, model, dataloaders, ckpt_path, verbose, datamodule, weights_only)

    def predict(self, model: LightningModule | None = None, dataloaders: Any = None,
                datamodule: LightningDataModule | None = None, return_predictions: bool | None = None,
                ckpt_path: str | os.PathLike | None = None, weights_only: bool | None = None) -> list[Any] | None:
        """Run ``predict_step`` over the dataloaders; returns the predictions (a list per dataloader if several)."""
        model, datamodule = self._model_and_datamodule(model, dataloaders, datamodule, "predict")
        self._begin(model, TrainerFn.PREDICTING, datamodule, {"predict": dataloaders})
        if self.strategy.launcher is not None:  # ddp_spawn/ddp_fork: the run happens in new processes
            return self.strategy.launcher.launch(self, "predict", model, dataloaders, datamodule, return_predictions,
                                                 ckpt_path, weights_only)
        try:
            self._setup_run(ckpt_path, weights_only)
            self.state.stage = RunningStage.PREDICTING
            self._setup_eval_data("predict")
            out = loops._predict_loop(self, self._loaders["predict"], self.num_predict_batches,
                                      return_predictions is not False)
            self.strategy.teardown()
            self._end_run()
        except BaseException as err:
            self._on_exception(err)
            raise
        return out if return_predictions is not False else None

    def _evaluate(self, fn: TrainerFn, model: LightningModule | None, dataloaders: Any, ckpt_path: Any,
                  verbose: bool, datamodule: LightningDataModule | None,
                  weights_only: bool | None) -> list[dict[str, float]]:
        kind = "test" if fn == TrainerFn.TESTING else "val"
        model, datamodule = self._model_and_datamodule(model, dataloaders, datamodule, fn.value)
        self._begin(model, fn, datamodule, {kind: dataloaders})
        if self.strategy.launcher is not None:  # ddp_spawn/ddp_fork: the run happens in new processes
            return self.strategy.launcher.launch(self, "_evaluate", fn, model, dataloaders, ckpt_path, verbose,
                                                 datamodule, weights_only)
        try:
            self._setup_run(ckpt_path, weights_only)
            stage = RunningStage.TESTING if kind == "test" else RunningStage.VALIDATING
            self.state.stage = stage
            self._setup_eval_data(kind)
            outputs = loops._evaluation_loop(self, stage, self._loaders[kind],
                                             self.num_test_batches if kind == "test" else self.num_val_batches,
                                             verbose=verbose)
            self.strategy.teardown()
            self._end_run()
        except BaseException as err:
            self._on_exception(err)
            raise
        return [{k: v.item() if isinstance(v, torch.Tensor) else v for k, v in out.items()} for out in outputs]

    def _model_and_datamodule(self, model: Any, dataloaders: Any, datamodule: Any,
                              fn: str) -> tuple[LightningModule, LightningDataModule | None]:
        if isinstance(dataloaders, LightningDataModule):
            datamodule = dataloaders
        elif dataloaders is not None and datamodule is not None:
            raise MisconfigurationException(f"{fn}() got both dataloaders and a datamodule; pass one or the other.")
        if model is None:
            if self._module is None:
                raise MisconfigurationException(f"{fn}() needs a model: pass one, e.g. trainer.{fn}(model, ...), or "
                                                "call it after fit().")
            model = self._module
        return model, datamodule if datamodule is not None else (
            self.datamodule if dataloaders is None and model is self._module else None)

    # ---------------------------------------------------------------------------------------------
    # run set-up and tear-down
    # ---------------------------------------------------------------------------------------------
    def _begin(self, model: Any, fn: TrainerFn, datamodule: LightningDataModule | None,
               sources: dict[str, Any]) -> None:
        if not isinstance(model, LightningModule):
            raise MisconfigurationException(f"Expected a LightningModule, got {type(model).__name__}; subclass "
                                            "ember.LightningModule (a plain nn.Module cannot be trained directly).")
        if fn == TrainerFn.FITTING:
            if type(model).training_step is LightningModule.training_step:
                raise MisconfigurationException(f"{type(model).__name__} has no `training_step`; define "
                                                "`training_step(self, batch, batch_idx)` returning the loss.")
        elif fn == TrainerFn.VALIDATING and type(model).validation_step is LightningModule.validation_step:
            raise MisconfigurationException(f"{type(model).__name__} has no `validation_step`; define it to use "
                                            "trainer.validate().")
        elif fn == TrainerFn.TESTING and type(model).test_step is LightningModule.test_step:
            raise MisconfigurationException(f"{type(model).__name__} has no `test_step`; define it to use "
                                            "trainer.test().")
        if datamodule is not None and not isinstance(datamodule, LightningDataModule):
            raise MisconfigurationException(f"datamodule must be a LightningDataModule, got {type(datamodule).__name__}.")
        stage = {TrainerFn.FITTING: RunningStage.TRAINING, TrainerFn.VALIDATING: RunningStage.VALIDATING,
                 TrainerFn.TESTING: RunningStage.TESTING, TrainerFn.PREDICTING: RunningStage.PREDICTING}[fn]
        self.state = TrainerState(status=TrainerStatus.RUNNING, fn=fn, stage=stage)  # set before setup, as in Lightning
        self._module = model
        model._trainer = self
        self.datamodule = datamodule
        if datamodule is not None:
            datamodule.trainer = self
        self._sources = {k: v for k, v in sources.items() if v is not None}
        self._loaders = {}
        self._hook_cache = {}
        self._transfer_plan: tuple[bool, bool, bool, Any] | None = None
        self._step_plan = loops._FULL_STEP_PLAN  # _fit_loop works out the real one
        self.should_stop = False
        if fn == TrainerFn.FITTING:
            self._progress = loops._Progress()
            self._is_last_batch = False
            self._min_epochs = self.min_epochs if self.min_epochs is not None else (1 if self.min_steps else 0)
            self.max_epochs = self.max_epochs_arg if self.max_epochs_arg is not None else (
                1000 if self.max_steps == -1 else -1)
            if self.max_epochs_arg is None and self.max_steps == -1:
                rank_zero_warn("`max_epochs` was not set. Setting it to 1000 epochs. To train without an epoch "
                               "limit, set `max_epochs=-1`.")
            if self.gradient_clip_val and not model.automatic_optimization:
                raise MisconfigurationException("Trainer(gradient_clip_val=...) does not apply to manual "
                                                "optimization; call self.clip_gradients(...) in training_step.")
        _attach_profiler(self)  # no-op without a profiler

    def _setup_run(self, ckpt_path: Any, weights_only: bool | None) -> None:
        """configure_callbacks, prepare_data, setup, configure_model, restore, optimizers, on_fit_start."""
        module, fitting = self._module, self.state.fn == TrainerFn.FITTING
        self._attach_model_callbacks()
        self.strategy.setup_environment()  # start or join the other processes of a distributed run
        if not self.is_global_zero and self.progress_bar_callback is not None:
            self.progress_bar_callback.disable()
        for owner in (self.datamodule, module):  # once per node (or once in all: prepare_data_per_node=False)
            rank = self.local_rank if getattr(owner, "prepare_data_per_node", True) else self.global_rank
            if owner is module and rank == 0:
                self._module_hook("prepare_data")
            elif owner is not None and rank == 0:
                owner.prepare_data()
        self.strategy.barrier("prepare_data")
        stage = self.state.fn.value
        if self.datamodule is not None:
            self.datamodule.setup(stage)
        self._hook("setup", stage)
        self._module_hook("configure_model")
        checkpoint = None
        self.ckpt_path = self._resolve_ckpt_path(ckpt_path)
        if self.ckpt_path is not None:
            checkpoint = self.strategy.load_checkpoint(self.ckpt_path, weights_only)
            self._module_hook("on_load_checkpoint", checkpoint)
            self.strategy.load_model_state(module, checkpoint, module.strict_loading, repr(self.ckpt_path))
            if self.datamodule is not None:
                self.datamodule.load_state_dict(checkpoint.get(type(self.datamodule).__qualname__, {}))
            if fitting:
                self._callback_hook("on_load_checkpoint", checkpoint)
                states = checkpoint.get("callbacks", {})
                for cb in self.callbacks:
                    if cb.state_key in states:
                        cb.load_state_dict(states[cb.state_key])
        self._metrics.reset()
        self.strategy.setup(module)
        if fitting:
            self.optimizers, self.lr_scheduler_configs = _init_optimizers(module)
            if module.automatic_optimization and len(self.optimizers) > 1:
                raise MisconfigurationException(
                    f"configure_optimizers returned {len(self.optimizers)} optimizers; automatic optimization "
                    "supports one. Set `self.automatic_optimization = False` and step them in training_step.")
            self.optimizers = self.strategy.setup_optimizers(self.optimizers)  # DeepSpeed: its engine's optimizer
            self._lightning_optimizers = [LightningOptimizer(opt, self) for opt in self.optimizers]
            module._lightning_optimizers = self._lightning_optimizers
            self._hook("on_fit_start")
        self._log_hyperparams()
        self._resume_state = None
        if fitting and checkpoint is not None:
            self._resume_state = _restore_training_state(self, checkpoint)

    def _attach_model_callbacks(self) -> None:
        model_callbacks = self._module_hook("configure_callbacks")
        if isinstance(model_callbacks, Callback):
            model_callbacks = [model_callbacks]
        if model_callbacks:
            types = {type(cb) for cb in model_callbacks}
            kept = [cb for cb in self.callbacks if type(cb) not in types]
            self.callbacks = self._reorder(kept + list(model_callbacks))
        self._hook_cache = {}

    def _log_hyperparams(self) -> None:
        module = self._module
        if not self.loggers or not self.enable_autolog_hparams:
            return
        hparams = dict(module.hparams_initial) if module._log_hyperparams else {}
        if self.datamodule is not None and getattr(self.datamodule, "_log_hyperparams", True):
            hparams.update(self.datamodule.hparams_initial)
        for logger in self.loggers:
            if hparams:
                logger.log_hyperparams(hparams)
            logger.log_graph(module)
            logger.save()

    def _end_run(self) -> None:
        stage = self.state.fn.value
        if self.datamodule is not None:
            self.datamodule.teardown(stage)
        self._hook("teardown", stage)
        self._module.__dict__["_current_fx_name"] = None
        for logger in self.loggers:
            logger.finalize("success")
        self.state.status = TrainerStatus.FINISHED
        self.state.stage = None
        _detach_profiler(self, describe=True)

    def _on_exception(self, err: BaseException) -> None:
        self.state.status = TrainerStatus.INTERRUPTED
        if self._module is not None:
            for cb in self.callbacks:
                cb.on_exception(self, self._module, err)
        for logger in self.loggers:
            logger.finalize("failed")
        self.strategy.teardown()
        _detach_profiler(self, describe=False)
        self.strategy.on_exception(err)  # a distributed strategy stops the other ranks (may raise their error)

    def _resolve_ckpt_path(self, ckpt_path: Any) -> str | None:
        """Turn "best", "last", "hpc", "auto", a path or an fsspec URL into the file to load (or None)."""
        if ckpt_path is None and self.state.fn == TrainerFn.FITTING and os.environ.get("EMBER_AUTO_RESUME") == "1":
            ckpt_path = "auto"
        if ckpt_path is None:
            return None
        if ckpt_path == "best":
            callback = self.checkpoint_callback
            if callback is None or not callback.best_model_path:
                raise ValueError('ckpt_path="best" needs a ModelCheckpoint that has saved a checkpoint in this '
                                 "Trainer; run fit first (with checkpointing enabled) or pass a checkpoint path.")
            return callback.best_model_path
        if ckpt_path == "last":
            found = [path for cb in self.checkpoint_callbacks for path in cb._find_last_checkpoints(self)]
            if not found:
                rank_zero_warn('ckpt_path="last": no last checkpoint was found in the ModelCheckpoint folder; '
                               "starting from scratch.")
                return None
            return max(found, key=os.path.getmtime)
        if ckpt_path == "hpc":
            found = _hpc_checkpoints(self.default_root_dir)
            if not found:
                raise ValueError(f'ckpt_path="hpc": no hpc_ckpt_N.ckpt in {self.default_root_dir!r}; pass a '
                                 "checkpoint path instead.")
            return found[-1][1]
        if ckpt_path == "auto":
            return _newest_checkpoint(self.default_root_dir)
        return os.fspath(ckpt_path)

    # ---------------------------------------------------------------------------------------------
    # checkpoints
    # ---------------------------------------------------------------------------------------------
    def save_checkpoint(self, filepath: str | os.PathLike, weights_only: bool = False,
                        storage_options: Any = None) -> None:
        """Write a checkpoint of the current state to ``filepath``, atomically (never a torn file)."""
        if self._module is None:
            raise MisconfigurationException("save_checkpoint() needs a model: call it during or after fit().")
        checkpoint = _dump_checkpoint(self, weights_only)
        self.strategy.save_checkpoint(checkpoint, filepath)  # rank 0 writes it (a sharding strategy: every rank)
        self.strategy.barrier("save_checkpoint")

    # ---------------------------------------------------------------------------------------------
    # read-only properties
    # ---------------------------------------------------------------------------------------------
    @property
    def lightning_module(self) -> LightningModule:
        return self._module  # type: ignore[return-value]

    @property
    def model(self) -> torch.nn.Module | None:
        """The module the strategy runs: the DistributedDataParallel wrapper during a DDP fit, else the model."""
        return self.strategy.model if self.strategy.model is not None else self._module

    @property
    def current_epoch(self) -> int:
        return self._progress.epoch

    @property
    def global_step(self) -> int:
        return self._progress.global_step

    @property
    def default_root_dir(self) -> str:
        return self._default_root_dir or os.getcwd()

    @property
    def precision(self) -> str:
        return self._precision_flag

    @property
    def precision_plugin(self) -> _precision.Precision:
        return self.strategy.precision

    @property
    def scaler(self) -> Any:
        return self.strategy.precision.scaler

    @property
    def callback_metrics(self) -> dict[str, torch.Tensor]:
        if self._metrics.results is not None:
            self._metrics.collect(on_step=self._metrics.on_step)
        return self._metrics.callback

    @property
    def logged_metrics(self) -> dict[str, torch.Tensor]:
        if self._metrics.results is not None:
            self._metrics.collect(on_step=self._metrics.on_step)
        return self._metrics.logged

    @property
    def progress_bar_metrics(self) -> dict[str, float]:
        if self._metrics.results is not None:
            self._metrics.collect(on_step=self._metrics.on_step)
        return self._metrics.progress_bar_metrics()

    @property
    def logger(self) -> Any:
        return self.loggers[0] if self.loggers else None

    @logger.setter
    def logger(self, logger: Any) -> None:
        self.loggers = [logger] if logger is not None else []

    @property
    def log_dir(self) -> str:
        logger = self.logger
        if logger is None:
            return self.default_root_dir
        return getattr(logger, "log_dir", None) or logger.save_dir or self.default_root_dir

    @property
    def checkpoint_callbacks(self) -> list[Any]:
        from ember.callbacks import ModelCheckpoint

        return [cb for cb in self.callbacks if isinstance(cb, ModelCheckpoint)]

    @property
    def checkpoint_callback(self) -> Any:
        found = self.checkpoint_callbacks
        return found[0] if found else None

    @property
    def early_stopping_callbacks(self) -> list[Any]:
        from ember.callbacks import EarlyStopping

        return [cb for cb in self.callbacks if isinstance(cb, EarlyStopping)]

    @property
    def early_stopping_callback(self) -> Any:
        found = self.early_stopping_callbacks
        return found[0] if found else None

    @property
    def progress_bar_callback(self) -> Any:
        from ember.callbacks import ProgressBar

        return next((cb for cb in self.callbacks if isinstance(cb, ProgressBar)), None)

    @property
    def train_dataloader(self) -> Any:
        return self._loaders.get("train")

    @property
    def val_dataloaders(self) -> Any:
        return self._loaders.get("val")

    @property
    def test_dataloaders(self) -> Any:
        return self._loaders.get("test")

    @property
    def predict_dataloaders(self) -> Any:
        return self._loaders.get("predict")

    @property
    def training(self) -> bool:
        return self.state.stage is RunningStage.TRAINING

    @property
    def sanity_checking(self) -> bool:
        return self.state.stage is RunningStage.SANITY_CHECKING

    @property
    def validating(self) -> bool:
        return self.state.stage is RunningStage.VALIDATING

    @property
    def testing(self) -> bool:
        return self.state.stage is RunningStage.TESTING

    @property
    def predicting(self) -> bool:
        return self.state.stage is RunningStage.PREDICTING

    @property
    def evaluating(self) -> bool:
        return self.state.stage is not None and self.state.stage.evaluating

    @property
    def interrupted(self) -> bool:
        return self.state.status == TrainerStatus.INTERRUPTED

    @property
    def enable_validation(self) -> bool:
        return self._val_enabled

    @property
    def is_last_batch(self) -> bool:
        """Whether the current (or just finished) training batch is the epoch's last one."""
        return self._is_last_batch

    @property
    def received_sigterm(self) -> bool:
        return self._signals.received is not None

    @property
    def estimated_stepping_batches(self) -> float:
        """How many optimizer steps fit will take (for schedulers like OneCycleLR)."""
        if "train" not in self._loaders:
            self._setup_train_data()
        per_epoch = math.ceil(self.num_training_batches / self.accumulate_grad_batches) \
            if not math.isinf(self.num_training_batches) else math.inf
        total = per_epoch * self.max_epochs if self.max_epochs != -1 else math.inf
        return min(total, self.max_steps) if self.max_steps != -1 else total

    @property
    def world_size(self) -> int:
        return self.strategy.world_size

    @property
    def global_rank(self) -> int:
        return self.strategy.global_rank

    @property
    def local_rank(self) -> int:
        return self.strategy.local_rank

    @property
    def node_rank(self) -> int:
        return self.strategy.node_rank

    @property
    def num_nodes(self) -> int:
        return self.strategy.num_nodes

    @property
    def is_global_zero(self) -> bool:
        return self.strategy.is_global_zero

    @property
    def num_devices(self) -> int:
        return len(self.device_ids)

    @property
    def device_ids(self) -> list[int]:
        return [i if device.index is None else device.index for i, device in enumerate(self.strategy.parallel_devices)]

    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print`` on global rank 0 only."""
        if self.is_global_zero:
            print(*args, **kwargs)

    @contextlib.contextmanager
    def init_module(self, empty_init: bool | None = None) -> Generator[None, None, None]:
        """Create the model's tensors directly on the device (and in the precision's dtype for "-true")."""
        dtype = self.strategy.precision.dtype
        with self.strategy.root_device, loops_default_dtype(dtype):
            yield


def loops_default_dtype(dtype: torch.dtype) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext() if dtype == torch.float32 else _precision._default_dtype(dtype)


def _newest_checkpoint(folder: str) -> str | None:
    """The most recently written ``*.ckpt`` anywhere under ``folder`` (``ckpt_path="auto"``)."""
    found = [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names
             if name.endswith(".ckpt")]
    return max(found, key=os.path.getmtime) if found else None


def _sequential_copy(loader: Any) -> Any:
    """``loader`` without shuffling (``overfit_batches`` must see the same batches every epoch)."""
    from torch.utils.data import DataLoader, RandomSampler

    if not isinstance(loader, DataLoader) or not isinstance(loader.sampler, RandomSampler):
        return loader
    rank_zero_warn("overfit_batches is set: the train dataloader's shuffling is turned off.")
    return DataLoader(loader.dataset, batch_size=loader.batch_size, shuffle=False, num_workers=loader.num_workers,
                      collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=loader.drop_last,
                      worker_init_fn=loader.worker_init_fn)


def _add_worker_init(loader: Any) -> None:
    from ember.seed import _worker_init_function

    if getattr(loader, "num_workers", 0) > 0 and getattr(loader, "worker_init_fn", None) is None:
        loader.worker_init_fn = _worker_init_function
