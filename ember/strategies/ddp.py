"""DDPStrategy: one process per device, the model replicated, gradients averaged by DistributedDataParallel.

Everything distributed is torch's: ``torch.distributed`` process groups (gloo on CPU, NCCL on CUDA),
``DistributedDataParallel`` for gradient synchronisation, ``DistributedSampler`` for the data, and the
launchers in :mod:`ember.strategies.launch` (torch.distributed.elastic, torch.multiprocessing).
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import (BatchSampler, DataLoader, DistributedSampler, IterableDataset, RandomSampler,
                              SequentialSampler)

from ember.accelerators import Accelerator
from ember.strategies import launch
from ember.strategies.strategy import Strategy
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_info, rank_zero_only

if TYPE_CHECKING:
    from ember.module import LightningModule

# strategy name -> DDPStrategy arguments (the names Lightning registers)
_DDP_STRATEGIES: dict[str, dict[str, Any]] = {
    f"ddp{launcher}{unused}": {"start_method": method, **({"find_unused_parameters": flag} if unused else {})}
    for launcher, method in (("", "popen"), ("_spawn", "spawn"), ("_fork", "fork"), ("_notebook", "fork"))
    for unused, flag in (("", False), ("_find_unused_parameters_false", False), ("_find_unused_parameters_true", True))
}
_REDUCE_OPS = {"mean": dist.ReduceOp.SUM, "avg": dist.ReduceOp.SUM, "sum": dist.ReduceOp.SUM,
               "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}


class DDPStrategy(Strategy):
    """Distributed data parallel: ``devices`` processes on each of ``num_nodes`` machines.

    ``start_method="popen"`` (``strategy="ddp"``) starts the script again for the other ranks, or joins the
    job when torchrun/SLURM started it; ``"spawn"``/``"fork"`` (``"ddp_spawn"``, ``"ddp_fork"``,
    ``"ddp_notebook"``) run each Trainer call in new processes and bring rank 0's results back.
    ``timeout`` bounds every collective: a rank that waits longer for the others raises ``TimeoutError``.
    Other keyword arguments go to ``torch.nn.parallel.DistributedDataParallel``.
    """

    strategy_name = "ddp"

    def __init__(self, accelerator: Accelerator | None = None, parallel_devices: list[torch.device] | None = None,
                 cluster_environment: Any = None, checkpoint_io: Any = None, precision_plugin: Any = None,
                 ddp_comm_state: Any = None, ddp_comm_hook: Callable | None = None,
                 ddp_comm_wrapper: Callable | None = None, model_averaging_period: int | None = None,
                 process_group_backend: str | None = None, timeout: timedelta | None = timedelta(minutes=30),
                 start_method: str = "popen", *, find_unused_parameters: bool = False, static_graph: bool = False,
                 gradient_as_bucket_view: bool = False, **ddp_kwargs: Any) -> None:
        for name, value in (("cluster_environment", cluster_environment), ("checkpoint_io", checkpoint_io),
                            ("model_averaging_period", model_averaging_period)):
            if value is not None:
                raise NotImplementedError(f"DDPStrategy({name}=...) is not available in ember; leave it None "
                                          "(ember detects torchrun and SLURM itself).")
        if start_method not in ("popen", "spawn", "fork", "forkserver"):
            raise ValueError(f"DDPStrategy(start_method={start_method!r}) is not valid; use 'popen', 'spawn', "
                             "'fork' or 'forkserver'.")
        super().__init__(accelerator=accelerator, device=parallel_devices[0] if parallel_devices else "cpu")
        self._parallel_devices = list(parallel_devices) if parallel_devices is not None else None
        self._process_group_backend = process_group_backend
        self._timeout = timeout if timeout is not None else timedelta(minutes=30)
        self._start_method = start_method
        self._ddp_kwargs = {"find_unused_parameters": find_unused_parameters, "static_graph": static_graph,
                            "gradient_as_bucket_view": gradient_as_bucket_view, **ddp_kwargs}
        self._comm = (ddp_comm_state, ddp_comm_hook, ddp_comm_wrapper)
        self._batchnorm_types: dict[str, type] = {}
        self._cluster: launch._Cluster | None = None
        self.launcher: launch._MultiprocessingLauncher | None = None
        self.lightning_module: LightningModule | None = None
        self.world_size, self.global_rank, self.local_rank, self.node_rank, self.num_nodes = 1, 0, 0, 0, 1
        self._main_address, self._main_port = "127.0.0.1", 0

    # -- topology ---------------------------------------------------------------------------------
    @property
    def parallel_devices(self) -> list[torch.device]:
        """The devices of this node, one per process (``devices=2`` on CPU: two CPU processes)."""
        return self._parallel_devices if self._parallel_devices is not None else [self.root_device]

    @parallel_devices.setter
    def parallel_devices(self, devices: list[torch.device]) -> None:
        self._parallel_devices = list(devices)

    @property
    def num_processes(self) -> int:
        return len(self.parallel_devices)

    @property
    def _layer_sync(self) -> bool:
        """Trainer(sync_batchnorm=True): BatchNorm layers become torch.nn.SyncBatchNorm while fitting."""
        return self.__dict__.get("_sync_batchnorm", False)

    @_layer_sync.setter
    def _layer_sync(self, value: bool) -> None:
        if value and self.root_device.type == "cpu":
            raise MisconfigurationException(
                "Trainer(sync_batchnorm=True) uses torch.nn.SyncBatchNorm, which runs on GPUs only (torch refuses "
                "CPU inputs); use accelerator='gpu', or sync_batchnorm=False on CPU.")
        self.__dict__["_sync_batchnorm"] = value

    @property
    def is_distributed(self) -> bool:
        return True

    @property
    def process_group_backend(self) -> str | None:
        return self._process_group_backend

    @property
    def distributed_sampler_kwargs(self) -> dict[str, int]:
        return {"num_replicas": self.world_size, "rank": self.global_rank}

    def _configure(self, accelerator: Accelerator, device_ids: list[int], num_nodes: int) -> None:
        """Called by the Trainer: the devices of this node, the node count, and where this process sits."""
        self.accelerator = accelerator
        if self._parallel_devices is None:
            self.parallel_devices = [accelerator.root_device(i) for i in device_ids]
        self.num_nodes = num_nodes
        self.world_size = self.num_processes * num_nodes
        self._cluster = launch._detect_cluster()
        if self._cluster is not None:
            self._join(self._cluster)
        else:
            self.node_rank = int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0")))
            self.global_rank, self.local_rank = self.node_rank * self.num_processes, 0
            self._main_address = os.environ.get("MASTER_ADDR", "127.0.0.1")
            self._main_port = int(os.environ.get("MASTER_PORT", "0"))
            if self._start_method == "popen" and self.world_size > 1 and launch._is_interactive():
                raise MisconfigurationException(
                    "Trainer(strategy='ddp') starts your script again for each extra process, but this is an "
                    "interactive session (or `python -c`) with no script to start; use strategy='ddp_notebook' "
                    "(or 'ddp_spawn'), or run a script.")
            if self._start_method != "popen":
                self.launcher = launch._MultiprocessingLauncher(self, self._start_method)
        self.root_device = self.parallel_devices[self.local_rank]
        rank_zero_only.rank = self.global_rank  # type: ignore[attr-defined]

    def _join(self, cluster: launch._Cluster) -> None:
        if cluster.world_size != self.world_size:
            raise MisconfigurationException(
                f"Trainer(devices={self.num_processes}, num_nodes={self.num_nodes}) asks for {self.world_size} "
                f"processes, but {cluster.name} started {cluster.world_size} (WORLD_SIZE={cluster.world_size}); "
                f"make them agree, e.g. `torchrun --nnodes={self.num_nodes} --nproc_per_node={self.num_processes}`.")
        if self._start_method != "popen":
            rank_zero_info(f"strategy='ddp_{self._start_method}' under {cluster.name}: joining the processes it "
                           "started (as strategy='ddp') instead of starting new ones.")
            self._start_method = "popen"
        self.global_rank, self.local_rank, self.node_rank = cluster.global_rank, cluster.local_rank, cluster.node_rank
        if self.local_rank >= self.num_processes:
            raise MisconfigurationException(
                f"LOCAL_RANK={self.local_rank} but Trainer(devices={self.num_processes}) has only "
                f"{self.num_processes} device(s) per node; start {self.num_processes} processes per node.")
        self._main_address = cluster.main_address or "127.0.0.1"
        self._main_port = cluster.main_port or 0

    def _become_worker(self, local_rank: int, address: str, port: int) -> None:
        """In a ddp_spawn/ddp_fork worker: take this process's rank; the launch is done."""
        self.launcher = None
        self._main_address, self._main_port = address, port
        self.local_rank, self.global_rank = local_rank, self.node_rank * self.num_processes + local_rank
        self.root_device = self.parallel_devices[local_rank]
        rank_zero_only.rank = self.global_rank  # type: ignore[attr-defined]

    # -- processes --------------------------------------------------------------------------------
    def setup_environment(self) -> None:
        """Start the other processes if this one must (``python train.py`` with ``strategy="ddp"``), then join
        the process group."""
        if not self._main_port:
            self._main_port = launch._find_free_port()
        if self._start_method == "popen" and self._cluster is None and self.world_size > 1 and self.local_rank == 0:
            launch._launch_script(self.num_processes, self.num_nodes, self.node_rank, self._main_address,
                                  self._main_port)
        if "OMP_NUM_THREADS" not in os.environ:  # N processes share the cores: do not oversubscribe them
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.num_processes))
        if dist.is_available() and dist.is_initialized():
            if dist.get_world_size() != self.world_size:
                raise MisconfigurationException(
                    f"A process group of {dist.get_world_size()} processes already exists, but the Trainer "
                    f"asks for {self.world_size} (devices x num_nodes); make them agree.")
            return
        backend = self._process_group_backend or ("nccl" if self.root_device.type == "cuda" else "gloo")
        extra = {"device_id": self.root_device} if self.root_device.type == "cuda" else {}
        launch._register_group_teardown(created=True)
        atexit.register(launch._leave_together)  # registered after the launcher's wait: runs before it
        try:
            dist.init_process_group(backend, init_method=f"tcp://{self._main_address}:{self._main_port}",
                                    rank=self.global_rank, world_size=self.world_size, timeout=self._timeout, **extra)
        except dist.DistStoreError as err:
            raise TimeoutError(
                f"Rank {self.global_rank}: the {self.world_size} processes did not all join the process group at "
                f"{self._main_address}:{self._main_port} within the timeout ({self._timeout}); check that every "
                "process started, and MASTER_ADDR/MASTER_PORT, or raise DDPStrategy(timeout=...).") from err
        self._process_group_backend = backend

    def on_exception(self, err: BaseException) -> None:
        """A run failed in this process: record it for the launcher, stop the job, raise the root cause."""
        launch._record_error(err)
        launcher = launch._LAUNCHER  # set in the process that started the others
        if launcher is not None:
            # a peer's death shows here as a broken connection: wait for its traceback and raise that
            child = launcher.child_failure(wait_s=launcher.grace_s if launch._is_collateral(err) else 0.0)
            launcher.close()
            if child is not None:
                raise child from err
        if launch._is_timeout(err):
            raise TimeoutError(
                f"Rank {self.global_rank}: a collective did not complete within the process-group timeout "
                f"({self._timeout}). Another rank probably hangs, or skipped a collective that this one ran "
                "(a `self.log(..., sync_dist=True)`, `barrier()` or `all_gather` called on some ranks only). "
                "If the work between collectives legitimately takes longer, raise DDPStrategy(timeout=...).") from err

    # -- model ------------------------------------------------------------------------------------
    def setup(self, model: LightningModule) -> None:
        """Move the model to this rank's device and, when fitting, wrap it in DistributedDataParallel."""
        from ember.trainer.states import TrainerFn

        super().setup(model)
        self.lightning_module = model
        trainer = model._trainer
        if trainer is None or trainer.state.fn != TrainerFn.FITTING:
            return  # evaluation needs no gradient synchronisation
        if self._layer_sync:
            self._batchnorm_types = {name: type(m) for name, m in model.named_modules() if isinstance(m, _BatchNorm)}
            torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if not any(p.requires_grad for p in model.parameters()):
            return  # nothing to synchronise (DistributedDataParallel refuses such a model)
        device_ids = [self.root_device.index] if self.root_device.type == "cuda" else None
        self.model = DistributedDataParallel(_StepRedirect(model), device_ids=device_ids, **self._ddp_kwargs)
        state, hook, wrapper = self._comm
        if hook is not None:
            self.model.register_comm_hook(state, wrapper(hook) if wrapper is not None else hook)
        self.training_step = self.model  # DDP's forward runs training_step: gradients sync in backward

    def no_backward_sync(self, module: Any) -> contextlib.AbstractContextManager:
        """On micro-batches that do not step, gradients accumulate locally (DDP's ``no_sync``)."""
        return self.model.no_sync() if isinstance(self.model, DistributedDataParallel) else contextlib.nullcontext()

    def teardown(self) -> None:
        """Unwrap the model (and turn SyncBatchNorm back into the original layers); the process group stays
        for the next Trainer call and is destroyed at exit, if ember created it."""
        module = self.lightning_module
        if module is not None and isinstance(self.model, DistributedDataParallel):
            self.model, self.training_step = module, module.training_step
        if module is not None and self._batchnorm_types:
            _revert_sync_batchnorm(module, self._batchnorm_types)
            self._batchnorm_types = {}

    # -- data -------------------------------------------------------------------------------------
    def process_dataloader(self, dataloader: Any, kind: str = "train") -> Any:
        """Give each rank its share of the data: a DistributedSampler replaces the default sampler."""
        return _distributed_dataloader(dataloader, kind, self.world_size, self.global_rank)

    # -- collectives ------------------------------------------------------------------------------
    def reduce(self, tensor: Any, group: Any = None, reduce_op: Any = "mean") -> Any:
        """``tensor`` reduced over all ranks ("mean", "sum", "max", "min" or a ReduceOp); a new tensor."""
        if not isinstance(tensor, torch.Tensor) or not dist.is_initialized():
            return tensor
        name = (reduce_op or "mean").lower() if isinstance(reduce_op, str) else reduce_op
        op = _REDUCE_OPS.get(name) if isinstance(name, str) else name
        if op is None:
            raise ValueError(f"reduce(reduce_op={reduce_op!r}) is not supported; use 'mean', 'sum', 'max' or 'min'.")
        mean = name in ("mean", "avg")
        out = tensor.detach().clone() if not mean or tensor.is_floating_point() else tensor.detach().float()
        dist.all_reduce(out, op=op, group=group)
        return out / dist.get_world_size(group) if mean else out

    def all_gather(self, tensor: Any, group: Any = None, sync_grads: bool = False) -> Any:
        """Each tensor (numbers too, in nested lists/dicts) stacked over ranks: shape ``(world_size, *shape)``."""
        if isinstance(tensor, dict):
            return type(tensor)((k, self.all_gather(v, group, sync_grads)) for k, v in tensor.items())
        if isinstance(tensor, (list, tuple)):
            return type(tensor)(self.all_gather(v, group, sync_grads) for v in tensor)
        if not isinstance(tensor, torch.Tensor):
            tensor = torch.tensor(tensor, device=self.root_device)
        if not dist.is_initialized():
            return tensor
        world = dist.get_world_size(group)
        shapes = [None] * world
        dist.all_gather_object(shapes, tuple(tensor.shape), group=group)
        if len(set(shapes)) > 1:
            raise ValueError(f"all_gather needs a tensor of the same shape on every rank; got shapes {shapes}.")
        if sync_grads:
            import torch.distributed.nn.functional as dist_fn

            return torch.stack(dist_fn.all_gather(tensor.contiguous(), group=group or dist.group.WORLD))
        gathered = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(gathered, tensor.contiguous(), group=group)
        return torch.stack(gathered)

    def barrier(self, name: str | None = None) -> None:
        if dist.is_initialized():
            dist.barrier(device_ids=[self.root_device.index] if self.root_device.type == "cuda" else None)

    def all_gather_object(self, obj: Any) -> list[Any]:
        """``obj`` from every rank, in rank order (any picklable object)."""
        if not dist.is_initialized():
            return [obj]
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, obj)
        return gathered

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """``obj`` from rank ``src`` on every rank (any picklable object)."""
        if not dist.is_initialized():
            return obj
        holder = [obj]
        dist.broadcast_object_list(holder, src=src)
        return holder[0]

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        """True when every rank (``all=True``) or any rank (``all=False``) decided True."""
        if not dist.is_initialized():
            return decision
        votes = torch.tensor(int(decision), device=self.root_device)
        dist.all_reduce(votes, op=dist.ReduceOp.SUM)
        return bool(votes == self.world_size) if all else bool(votes > 0)


class _StepRedirect(torch.nn.Module):
    """The module DistributedDataParallel wraps. Its forward is the LightningModule's step for the running
    stage (``training_step`` while training), so that DDP's forward/backward bookkeeping covers the step."""

    def __init__(self, module: LightningModule) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        module, trainer = self.module, self.module._trainer
        if trainer is not None:
            if trainer.training:
                return module.training_step(*args, **kwargs)
            if trainer.testing:
                return module.test_step(*args, **kwargs)
            if trainer.sanity_checking or trainer.validating:
                return module.validation_step(*args, **kwargs)
            if trainer.predicting:
                return module.predict_step(*args, **kwargs)
        return module(*args, **kwargs)


def _revert_sync_batchnorm(module: torch.nn.Module, types: dict[str, type], prefix: str = "") -> None:
    """Put back the BatchNorm layers that SyncBatchNorm replaced (same parameters and buffers)."""
    for name, child in module.named_children():
        path = f"{prefix}{name}"
        if isinstance(child, torch.nn.SyncBatchNorm) and path in types:
            original = types[path](child.num_features, child.eps, child.momentum, child.affine,
                                   child.track_running_stats)
            original.load_state_dict(child.state_dict())
            if child.affine:
                original.weight, original.bias = child.weight, child.bias
            original.train(child.training)
            setattr(module, name, original)
        else:
            _revert_sync_batchnorm(child, types, f"{path}.")


# -- data -----------------------------------------------------------------------------------------
class _UnrepeatedDistributedSampler(DistributedSampler):
    """Every index exactly once over all ranks (prediction must not duplicate samples to even out ranks)."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(range(self.rank, len(self.dataset), self.num_replicas))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))  # type: ignore[arg-type]


def _distributed_dataloader(loader: Any, kind: str, num_replicas: int, rank: int) -> Any:
    """``loader`` rebuilt with the same arguments and a DistributedSampler (keeping its shuffle), or ``loader``
    itself when it brings its own sampler, has an iterable dataset, or is not a DataLoader."""
    if not isinstance(loader, DataLoader) or isinstance(loader.dataset, IterableDataset):
        return loader
    if type(loader.sampler) not in (RandomSampler, SequentialSampler) or (
            loader.batch_sampler is not None and type(loader.batch_sampler) is not BatchSampler):
        return loader  # the user's own (maybe already distributed) sampler: theirs to split
    shuffle = isinstance(loader.sampler, RandomSampler)
    seed = int(os.environ.get("PL_GLOBAL_SEED", "0"))
    if kind == "predict":
        sampler: DistributedSampler = _UnrepeatedDistributedSampler(loader.dataset, num_replicas, rank, shuffle=False)
    else:
        sampler = DistributedSampler(loader.dataset, num_replicas, rank, shuffle=shuffle, seed=seed)
    kwargs = dict(batch_size=loader.batch_size, num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                  pin_memory=loader.pin_memory, drop_last=loader.drop_last, timeout=loader.timeout,
                  worker_init_fn=loader.worker_init_fn, multiprocessing_context=loader.multiprocessing_context,
                  generator=loader.generator, prefetch_factor=loader.prefetch_factor,
                  persistent_workers=loader.persistent_workers)
    for name in ("pin_memory_device", "in_order"):  # newer torch only
        if hasattr(loader, name):
            kwargs[name] = getattr(loader, name)
    try:
        return type(loader)(loader.dataset, sampler=sampler, **kwargs)
    except TypeError as err:
        raise MisconfigurationException(
            f"ember could not re-create your {type(loader).__name__} with a DistributedSampler ({err}). Give it "
            "a `DistributedSampler` yourself and pass Trainer(use_distributed_sampler=False).") from err
