"""DeepSpeedStrategy: DDP's processes, with the model and optimizer handed to a DeepSpeed ZeRO engine.

The processes, process group, launching, data sharding and collectives are :class:`DDPStrategy`'s. What
differs: once ``configure_optimizers`` has run, ``deepspeed.initialize`` wraps the model and the optimizer in an
engine that partitions optimizer state (stage 1), gradients (stage 2) and parameters (stage 3). The engine
owns the update: the Trainer's optimizer becomes :class:`_EngineOptimizer`, whose ``step`` runs the closure
(training_step and ``loss.backward()``, which the engine hooks into) and then ``engine.step()``. Gradient
accumulation runs in DeepSpeed's unmanaged mode: every backward accumulates, ``engine.step()`` is the boundary,
so ember's own accumulation (``accumulate_grad_batches``) decides when to step, as with every other strategy.
DeepSpeed's default ``gradient_clipping`` of 1.0 is turned off unless ``Trainer(gradient_clip_val=...)`` asks.

Runs on CPU with gloo (``DS_ACCELERATOR=cpu``, set here when no GPU is present) as on CUDA with NCCL.

Checkpoints are DeepSpeed's own: ``trainer.save_checkpoint("last.ckpt")`` makes a folder ``last.ckpt/`` with
the engine's files under ``checkpoint/`` (every rank writes its shards) and ``meta.pt``, the Lightning-format
dict without the tensors. :func:`convert_zero_checkpoint_to_fp32_state_dict` turns such a folder into one plain
file that ``LightningModule.load_from_checkpoint`` reads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch

from ember.optimization import _NoOptimizer
from ember.precision import Precision
from ember.strategies.ddp import DDPStrategy, _StepRedirect
from ember.strategies.strategy import Strategy
from ember.utilities.exceptions import MisconfigurationException

if TYPE_CHECKING:
    from ember.module import LightningModule

_TAG = "checkpoint"  # the engine's sub-folder inside an ember DeepSpeed checkpoint folder
_PREFIX = "module."  # the engine wraps _StepRedirect(model): its state_dict keys carry this prefix

# strategy name -> DeepSpeedStrategy arguments (the names Lightning registers)
_DEEPSPEED_STRATEGIES: dict[str, dict[str, Any]] = {
    "deepspeed": {},
    "deepspeed_stage_1": {"stage": 1},
    "deepspeed_stage_2": {"stage": 2},
    "deepspeed_stage_2_offload": {"stage": 2, "offload_optimizer": True},
    "deepspeed_stage_3": {"stage": 3},
    "deepspeed_stage_3_offload": {"stage": 3, "offload_optimizer": True, "offload_parameters": True},
}


def _import_deepspeed() -> Any:
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # must be set before deepspeed is first imported
    try:
        import deepspeed
    except ImportError as err:
        raise ImportError("strategy='deepspeed' needs the deepspeed package: `pip install ember[deepspeed]` "
                          "(or `DS_BUILD_OPS=0 pip install deepspeed`).") from err
    return deepspeed


class _DeepSpeedPrecision(Precision):
    """Precision under DeepSpeed: the engine keeps the weights in ``dtype`` (float32 master copies in the
    optimizer); inputs are converted to the same dtype. No autocast, no GradScaler: the engine does both."""

    def __init__(self, precision: str) -> None:
        super().__init__(precision)
        self.dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float32
        self.config: dict[str, Any] = {"bf16": {"enabled": True}} if self.dtype == torch.bfloat16 else {}

    def convert_module(self, module: torch.nn.Module) -> torch.nn.Module:
        return module  # deepspeed.initialize casts the weights itself


class _EngineOptimizer:
    """The optimizer the Trainer sees: ``step`` runs the closure, then ``engine.step()`` (reduce, update,
    zero the gradients). Everything else (``param_groups``, ``state``, ...) is the ZeRO optimizer's."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.optimizer = engine.optimizer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["optimizer"], name)

    def step(self, closure: Any = None) -> Any:
        loss = closure() if closure is not None else None
        self.engine.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {}  # the optimizer state lives in the DeepSpeed checkpoint folder, in shards

    def __repr__(self) -> str:
        return f"_EngineOptimizer({type(self.optimizer).__name__})"


class DeepSpeedStrategy(DDPStrategy):
    """DeepSpeed ZeRO: ``devices`` processes per node; ``stage`` 1 partitions optimizer state, 2 also gradients,
    3 also parameters. ``offload_optimizer`` / ``offload_parameters`` keep them in CPU memory.

    ``config``: a DeepSpeed config (dict, or the path of a JSON file); its entries win over those ember
    derives from the arguments and the Trainer (``gradient_clip_val``, ``precision``), except gradient
    accumulation, which ember owns. Other keyword arguments are added to ``zero_optimization``.
    """

    strategy_name = "deepspeed"

    def __init__(self, accelerator: Any = None, zero_optimization: bool = True, stage: int = 2,
                 offload_optimizer: bool = False, offload_parameters: bool = False,
                 config: str | os.PathLike | dict[str, Any] | None = None, logging_level: int | None = logging.WARNING,
                 parallel_devices: list[torch.device] | None = None, cluster_environment: Any = None,
                 process_group_backend: str | None = None, timeout: timedelta | None = timedelta(minutes=30),
                 **zero_kwargs: Any) -> None:
        if stage not in (1, 2, 3):
            raise ValueError(f"DeepSpeedStrategy(stage={stage!r}) is not valid; use 1, 2 or 3.")
        if not zero_optimization:  # without ZeRO the engine refuses loss.backward(); use DDPStrategy instead
            raise NotImplementedError("DeepSpeedStrategy(zero_optimization=False) is not available in ember; use "
                                      "strategy='ddp' for plain data parallelism.")
        if isinstance(config, (str, os.PathLike)):
            with open(config) as f:
                config = json.load(f)
        super().__init__(accelerator=accelerator, parallel_devices=parallel_devices,
                         cluster_environment=cluster_environment, process_group_backend=process_group_backend,
                         timeout=timeout)
        zero: dict[str, Any] = {"stage": stage, **zero_kwargs}
        if offload_optimizer:
            zero["offload_optimizer"] = {"device": "cpu"}
        if offload_parameters:
            zero["offload_param"] = {"device": "cpu"}
        self.config: dict[str, Any] = dict(config or {})
        self.config.setdefault("zero_optimization", zero)
        self.stage = self.config["zero_optimization"].get("stage", stage)
        self._logging_level = logging_level
        self.engine: Any = None
        self._folder: str | None = None  # the DeepSpeed checkpoint folder being restored

    # -- precision: chosen with the strategy (the engine's bf16 instead of autocast) ------------------
    @property
    def precision(self) -> Precision:
        return self.__dict__["_precision"]

    @precision.setter
    def precision(self, value: Precision) -> None:
        if value.precision not in ("32-true", "bf16-mixed", "bf16-true"):  # float16: loss scaling not wired up
            raise NotImplementedError(f"Trainer(precision={value.precision!r}) with DeepSpeed is not available in "
                                      "ember yet; use precision='bf16-mixed' or '32-true'.")
        self.__dict__["_precision"] = _DeepSpeedPrecision(value.precision)

    # -- model and optimizer --------------------------------------------------------------------------
    def setup(self, model: LightningModule) -> None:
        """Device and dtype only: the engine is built in :meth:`setup_optimizers`, once the optimizer exists."""
        Strategy.setup(self, model)
        self.lightning_module = model

    def setup_optimizers(self, optimizers: list[Any]) -> list[Any]:
        """Build the engine from the module and its one optimizer; the Trainer steps the returned optimizer."""
        if len(optimizers) != 1 or isinstance(optimizers[0], _NoOptimizer):
            raise MisconfigurationException(f"DeepSpeedStrategy needs configure_optimizers to return exactly one "
                                            f"optimizer, got {optimizers!r}.")
        if not self.lightning_module.automatic_optimization:  # manual_backward runs inside the engine's forward
            raise NotImplementedError("DeepSpeedStrategy with manual optimization (automatic_optimization=False) is "
                                      "not available in ember yet; use automatic optimization.")
        deepspeed = _import_deepspeed()
        for name, value in (("LOCAL_RANK", self.local_rank), ("RANK", self.global_rank),
                            ("WORLD_SIZE", self.world_size)):  # DeepSpeed reads them (one process: not set)
            os.environ.setdefault(name, str(value))
        if self.root_device.type == "cpu":
            # DeepSpeed's CPU accelerator would compile a shared-memory all-reduce (a C++ extension, built with
            # g++ on first use, ~45 s); gloo already does the reduction, so no compiler is needed
            deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
        if self._logging_level is not None:
            deepspeed.utils.logging.logger.setLevel(self._logging_level)
        self.engine, _, _, _ = deepspeed.initialize(model=_StepRedirect(self.lightning_module),
                                                    optimizer=optimizers[0], config=self._engine_config(),
                                                    dist_init_required=False)
        self.training_step = self.engine  # the engine's forward hooks the backward (and gathers stage-3 weights)
        return [_EngineOptimizer(self.engine)]

    def _engine_config(self) -> dict[str, Any]:
        trainer = self.lightning_module._trainer
        config = {**self.precision.config, **self.config}
        loader = getattr(trainer, "train_dataloader", None)
        config.setdefault("train_micro_batch_size_per_gpu", getattr(loader, "batch_size", None) or 1)
        # ember owns accumulation (accumulate_grad_batches, which a callback may change mid-run): it scales the
        # loss and calls engine.step() at the boundary; with a count of 1 DeepSpeed does not scale it again
        config["gradient_accumulation_steps"] = 1
        config["managed_gradient_accumulation"] = False
        config.setdefault("zero_allow_untested_optimizer", True)  # any torch optimizer, as with DDP
        config.setdefault("zero_force_ds_cpu_optimizer", False)  # offload: DeepSpeedCPUAdam is faster, not required
        if trainer.gradient_clip_val and trainer.gradient_clip_algorithm not in (None, "norm"):
            raise MisconfigurationException(
                f"Trainer(gradient_clip_algorithm={trainer.gradient_clip_algorithm!r}) is not available with "
                "DeepSpeed, which clips by norm; use gradient_clip_algorithm='norm'.")
        # DeepSpeed clips at norm 1.0 unless told otherwise; ember clips only when asked (as every strategy)
        config.setdefault("gradient_clipping", float(trainer.gradient_clip_val or 0.0))
        return config

    def no_backward_sync(self, module: Any) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()  # unmanaged accumulation: the engine reduces only in engine.step()

    def teardown(self) -> None:
        """Release the engine; with stage 3 gather the full weights back into the module (usable after fit)."""
        super().teardown()
        engine, module = self.engine, self.lightning_module
        if engine is None or module is None:
            return
        params = list(module.parameters())
        if self.stage == 3:
            from deepspeed.runtime.zero.partition_parameters import GatheredParameters

            with GatheredParameters(params, modifier_rank=None):
                full = [p.data.clone() for p in params]
        engine.destroy()
        if self.stage == 3:
            for p, data in zip(params, full):
                p.data = data
        self.engine, self.training_step = None, module.training_step

    # -- checkpoints ----------------------------------------------------------------------------------
    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: Any) -> None:
        """A folder: the engine's shards (every rank writes its own) and ``meta.pt`` (rank 0)."""
        if self.engine is None:
            return super().save_checkpoint(checkpoint, filepath)
        from ember import checkpoint as _ckpt

        path = os.fspath(filepath)
        self.engine.save_checkpoint(path, tag=_TAG)
        meta = {**checkpoint, "state_dict": {}}
        if "optimizer_states" in meta:
            meta["optimizer_states"] = [{"deepspeed": _TAG}]
        if self.is_global_zero:
            _ckpt._atomic_save(meta, os.path.join(path, "meta.pt"))

    def load_checkpoint(self, path: Any, weights_only: bool | None = None) -> dict[str, Any]:
        """A plain checkpoint file, or a folder that :meth:`save_checkpoint` wrote (its ``meta.pt``)."""
        self._folder = os.fspath(path) if os.path.isdir(path) else None
        if self._folder is None:
            return super().load_checkpoint(path, weights_only)
        return super().load_checkpoint(os.path.join(self._folder, "meta.pt"), weights_only)

    def load_model_state(self, module: LightningModule, checkpoint: dict[str, Any], strict: bool,
                         source: str) -> None:
        if self._folder is None:
            return super().load_model_state(module, checkpoint, strict, source)
        super().load_model_state(module, {"state_dict": _fp32_state_dict(self._folder)}, strict, source)

    def load_optimizer_state(self, optimizer: Any, state: dict[str, Any]) -> None:
        """Restore the engine (weights and optimizer shards) from the folder being resumed."""
        if self.engine is None or self._folder is None:
            raise MisconfigurationException("DeepSpeedStrategy resumes only from a checkpoint folder that it wrote "
                                            f"(got {self._folder!r}); pass that folder as ckpt_path.")
        path, _ = self.engine.load_checkpoint(self._folder, tag=_TAG, load_optimizer_states=True,
                                              load_lr_scheduler_states=False)
        if path is None:
            raise FileNotFoundError(f"No DeepSpeed checkpoint under {self._folder!r}/{_TAG}.")


def _fp32_state_dict(folder: str) -> dict[str, torch.Tensor]:
    """The full float32 weights of an ember DeepSpeed checkpoint folder, with the module's own key names."""
    _import_deepspeed()
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    state = get_fp32_state_dict_from_zero_checkpoint(folder, tag=_TAG)
    return {k.removeprefix(_PREFIX): v for k, v in state.items()}


def convert_zero_checkpoint_to_fp32_state_dict(checkpoint_dir: str | os.PathLike,
                                               output_file: str | os.PathLike | None = None) -> dict[str, Any]:
    """A DeepSpeed checkpoint folder written by ember as one Lightning-format checkpoint dict with the full
    float32 ``state_dict`` (gathered from every rank's shards, in one process); written to ``output_file`` when
    given, which ``LightningModule.load_from_checkpoint`` then reads. Optimizer state is left out."""
    from ember import checkpoint as _ckpt

    folder = os.fspath(checkpoint_dir)
    checkpoint = _ckpt._load_checkpoint(os.path.join(folder, "meta.pt"), map_location="cpu")
    checkpoint.pop("optimizer_states", None)
    checkpoint["state_dict"] = _fp32_state_dict(folder)
    if output_file is not None:
        _ckpt._atomic_save(checkpoint, os.fspath(output_file))
    return checkpoint
