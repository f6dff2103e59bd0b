"""FSDPStrategy: DDP's processes, with parameters, gradients and optimizer state sharded by FSDP2.

The processes, process group, launching, data sharding and collectives are :class:`DDPStrategy`'s; what
differs is the model: ``torch.distributed.fsdp.fully_shard`` is applied to every module of the classes in
``auto_wrap_policy`` and then to the LightningModule itself (the root), before ``configure_optimizers`` runs,
so that the optimizer holds the sharded parameters. Works on CPU with gloo (for tests) as on CUDA with NCCL.

Checkpoints: ``state_dict_type="full"`` gathers weights and optimizer state to rank 0, which writes one
Lightning-format file; ``"sharded"`` makes a folder where every rank writes its shards with
``torch.distributed.checkpoint`` (plus ``meta.pt``: everything but the tensors). Both resume a fit.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Generator, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict, get_optimizer_state_dict,
                                                     set_model_state_dict, set_optimizer_state_dict)
from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, MixedPrecisionPolicy, fully_shard

from ember.precision import Precision
from ember.strategies.ddp import DDPStrategy
from ember.strategies.strategy import Strategy
from ember.utilities.exceptions import MisconfigurationException

if TYPE_CHECKING:
    from ember.module import LightningModule

_RESHARD = {"FULL_SHARD": True, "SHARD_GRAD_OP": False}  # reshard parameters after forward, or keep them


class _FSDPMixedPrecision(Precision):
    """"bf16-mixed" under FSDP: no autocast; FSDP casts the gathered parameters to bfloat16 for compute and
    reduces gradients in float32 (``MixedPrecisionPolicy``); the sharded weights stay float32."""

    def __init__(self, precision: str) -> None:
        super().__init__(precision)
        self.dtype = torch.float32  # the stored weights and the inputs
        self.policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)


class FSDPStrategy(DDPStrategy):
    """Fully sharded data parallel (FSDP2): ``devices`` processes per node, each holding a shard of the model.

    ``auto_wrap_policy``: module classes (a set) or a ``module -> bool`` function: each such submodule becomes
    its own FSDP unit (gathered just for its forward/backward). ``activation_checkpointing_policy``: module
    classes whose activations are recomputed in backward. ``cpu_offload=True`` keeps the shards on the CPU.
    ``sharding_strategy``: "FULL_SHARD" or "SHARD_GRAD_OP". Extra keyword arguments go to ``fully_shard``.
    """

    strategy_name = "fsdp"

    def __init__(self, accelerator: Any = None, parallel_devices: list[torch.device] | None = None,
                 cluster_environment: Any = None, checkpoint_io: Any = None, precision_plugin: Any = None,
                 process_group_backend: str | None = None, timeout: timedelta | None = timedelta(minutes=30),
                 cpu_offload: bool | CPUOffloadPolicy | None = None,
                 mixed_precision: MixedPrecisionPolicy | None = None,
                 auto_wrap_policy: Iterable[type[torch.nn.Module]] | Callable[[torch.nn.Module], bool] | None = None,
                 activation_checkpointing: Any = None,
                 activation_checkpointing_policy: Iterable[type[torch.nn.Module]] | None = None,
                 sharding_strategy: str = "FULL_SHARD", state_dict_type: str = "full", device_mesh: Any = None,
                 **kwargs: Any) -> None:
        if state_dict_type not in ("full", "sharded"):
            raise ValueError(f"FSDPStrategy(state_dict_type={state_dict_type!r}) is not valid; use 'full' or "
                             "'sharded'.")
        if sharding_strategy not in _RESHARD:
            raise NotImplementedError(f"FSDPStrategy(sharding_strategy={sharding_strategy!r}) is not available in "
                                      f"ember (FSDP2); use one of {', '.join(_RESHARD)}.")
        super().__init__(accelerator=accelerator, parallel_devices=parallel_devices,
                         cluster_environment=cluster_environment, checkpoint_io=checkpoint_io,
                         process_group_backend=process_group_backend, timeout=timeout)
        if cpu_offload is True:  # pinned memory needs an accelerator; without one, plain CPU memory
            cpu_offload = CPUOffloadPolicy(pin_memory=torch.cuda.is_available())
        self._fully_shard_kwargs: dict[str, Any] = {"reshard_after_forward": _RESHARD[sharding_strategy], **kwargs}
        if cpu_offload:
            self._fully_shard_kwargs["offload_policy"] = cpu_offload
        if device_mesh is not None:
            self._fully_shard_kwargs["mesh"] = device_mesh
        self._mixed_precision = mixed_precision
        self._wrap = _module_filter(auto_wrap_policy, "auto_wrap_policy")
        checkpointed = activation_checkpointing_policy or activation_checkpointing
        if checkpointed is not None and isinstance(checkpointed, type):
            checkpointed = {checkpointed}
        self._checkpointed = _module_filter(checkpointed, "activation_checkpointing_policy")
        self.state_dict_type = state_dict_type
        self._sharded_path: str | None = None  # the sharded checkpoint folder being restored

    # -- precision: chosen with the strategy (FSDP's policy instead of autocast) ----------------------
    @property
    def precision(self) -> Precision:
        return self.__dict__["_precision"]

    @precision.setter
    def precision(self, value: Precision) -> None:
        if value.precision == "bf16-mixed":
            value = _FSDPMixedPrecision(value.precision)
        elif value.precision == "16-mixed":
            raise NotImplementedError("Trainer(precision='16-mixed') with strategy='fsdp' is not available in ember "
                                      "yet; use precision='bf16-mixed' or '32-true'.")
        self.__dict__["_precision"] = value

    # -- model ----------------------------------------------------------------------------------------
    def setup(self, model: LightningModule) -> None:
        """When fitting, shard the model: each ``auto_wrap_policy`` module, then the LightningModule itself."""
        from ember.trainer.states import TrainerFn

        Strategy.setup(self, model)  # device and dtype; no DistributedDataParallel wrapper
        self.lightning_module = model
        trainer = model._trainer
        if isinstance(model, FSDPModule) or trainer is None or trainer.state.fn != TrainerFn.FITTING:
            return  # already sharded (an earlier fit), or evaluation of a replicated model
        if self._checkpointed is not None:
            from torch.distributed._composable import checkpoint  # keeps parameter names (no wrapper module)

            for sub in [m for m in model.modules() if m is not model and self._checkpointed(m)]:
                checkpoint(sub)
        kwargs = dict(self._fully_shard_kwargs)
        policy = self._mixed_precision or getattr(self.precision, "policy", None)
        if policy is not None:
            kwargs["mp_policy"] = policy
        for sub in reversed(list(model.modules())):  # innermost first: a unit never contains a sharded one
            if sub is not model and self._wrap is not None and self._wrap(sub):
                fully_shard(sub, **kwargs)
        fully_shard(model, **kwargs)

    def no_backward_sync(self, module: Any) -> contextlib.AbstractContextManager:
        """On micro-batches that do not step, gradients accumulate unsharded, without a reduce-scatter."""
        model = self.lightning_module
        return _no_gradient_sync(model) if isinstance(model, FSDPModule) else contextlib.nullcontext()

    # -- checkpoints ----------------------------------------------------------------------------------
    def _optimizers(self) -> list[torch.optim.Optimizer]:
        trainer = self.lightning_module._trainer if self.lightning_module is not None else None
        return list(trainer.optimizers) if trainer is not None else []

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: Any) -> None:
        """Full: gather weights and optimizer state to rank 0, which writes one file. Sharded: a folder."""
        model = self.lightning_module
        if not isinstance(model, FSDPModule):
            return super().save_checkpoint(checkpoint, filepath)
        with_optimizers = "optimizer_states" in checkpoint
        optimizers = self._optimizers() if with_optimizers else []
        if self.state_dict_type == "full":  # collectives: every rank takes part, rank 0 receives
            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            checkpoint["state_dict"] = get_model_state_dict(model, options=options)
            if with_optimizers:
                checkpoint["optimizer_states"] = [get_optimizer_state_dict(model, opt, options=options)
                                                  for opt in optimizers]
            return super().save_checkpoint(checkpoint, filepath)
        from ember import checkpoint as _ckpt

        shards = {"model": get_model_state_dict(model)}
        for i, opt in enumerate(optimizers):
            shards[f"optimizer_{i}"] = get_optimizer_state_dict(model, opt)
        path = os.fspath(filepath)
        dcp.save(shards, storage_writer=dcp.FileSystemWriter(path, overwrite=True))  # replaces last.ckpt
        meta = {**checkpoint, "state_dict": {}}
        if with_optimizers:
            meta["optimizer_states"] = [{"sharded": i} for i in range(len(optimizers))]
        if self.is_global_zero:
            _ckpt._atomic_save(meta, os.path.join(path, "meta.pt"))

    def load_checkpoint(self, path: Any, weights_only: bool | None = None) -> dict[str, Any]:
        """A file (full state) or a folder written with state_dict_type="sharded" (its ``meta.pt`` here; the
        tensors are read in :meth:`load_model_state` / :meth:`load_optimizer_state`)."""
        self._sharded_path = os.fspath(path) if os.path.isdir(path) else None
        if self._sharded_path is None:
            return super().load_checkpoint(path, weights_only)
        return super().load_checkpoint(os.path.join(self._sharded_path, "meta.pt"), weights_only)

    def load_model_state(self, module: LightningModule, checkpoint: dict[str, Any], strict: bool,
                         source: str) -> None:
        if self._sharded_path is None and not isinstance(module, FSDPModule):
            return super().load_model_state(module, checkpoint, strict, source)
        if self._sharded_path is None:  # full weights into an already sharded model: each rank keeps its shard
            set_model_state_dict(module, checkpoint["state_dict"],
                                 options=StateDictOptions(full_state_dict=True, strict=strict))
            return
        # a replicated model reads every shard (the checkpoint may come from any number of ranks)
        sharded = isinstance(module, FSDPModule)
        state = get_model_state_dict(module) if sharded else module.state_dict()
        with warnings.catch_warnings():  # without a process group dcp warns that it reads in one process: intended
            warnings.filterwarnings("ignore", "torch.distributed is disabled", UserWarning)
            dcp.load({"model": state}, checkpoint_id=self._sharded_path,
                     no_dist=not torch.distributed.is_initialized())
        if sharded:
            set_model_state_dict(module, state, options=StateDictOptions(strict=strict))
        else:
            super().load_model_state(module, {"state_dict": state}, strict, source)

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        model = self.lightning_module
        if not isinstance(model, FSDPModule):
            return super().load_optimizer_state(optimizer, state)
        if self._sharded_path is None:
            set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
            return
        key = f"optimizer_{state['sharded']}"
        template = {key: get_optimizer_state_dict(model, optimizer)}
        dcp.load(template, checkpoint_id=self._sharded_path)
        set_optimizer_state_dict(model, optimizer, template[key])


@contextlib.contextmanager
def _no_gradient_sync(model: FSDPModule) -> Generator[None, None, None]:
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def _module_filter(policy: Any, name: str) -> Callable[[torch.nn.Module], bool] | None:
    """``policy`` (module classes, or a module -> bool function) as a function; None for no policy."""
    if policy is None:
        return None
    if callable(policy) and not isinstance(policy, type):
        return policy
    classes = tuple(policy) if not isinstance(policy, type) else (policy,)
    if not classes or not all(isinstance(c, type) and issubclass(c, torch.nn.Module) for c in classes):
        raise MisconfigurationException(f"FSDPStrategy({name}={policy!r}) must be a set of torch.nn.Module classes "
                                        "(e.g. {torch.nn.TransformerEncoderLayer}) or a function module -> bool.")
    return lambda module: isinstance(module, classes)
