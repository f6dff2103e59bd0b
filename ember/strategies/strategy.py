"""The Strategy base: where the model lives, how batches move, and how processes talk to each other."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import torch

from ember.accelerators import Accelerator, CPUAccelerator
from ember.precision import Precision

if TYPE_CHECKING:
    from ember.module import LightningModule


_Tensor = torch.Tensor


def _move_to_device(batch: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Move every tensor (or object with ``.to``) in a nested list/tuple/dict to ``device``.

    Containers whose tensors are already there come back as they are (no copy, no rebuild).
    """
    if isinstance(batch, _Tensor):
        return batch if batch.device == device else batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, (list, tuple)):
        for item in batch:  # the common case first: a flat sequence of tensors already in place
            if not (isinstance(item, _Tensor) and item.device == device):
                break
        else:
            return batch
        moved = [_move_to_device(item, device, non_blocking) for item in batch]
        if all(new is item for new, item in zip(moved, batch)):
            return batch
        return type(batch)(*moved) if hasattr(batch, "_fields") else type(batch)(moved)
    if isinstance(batch, dict):
        return type(batch)((k, _move_to_device(v, device, non_blocking)) for k, v in batch.items())
    if hasattr(batch, "to") and callable(batch.to):
        return batch.to(device)
    return batch


class Strategy:
    """Runs the model on ``root_device`` in a single process. Distributed strategies override the rest."""

    strategy_name = "single_device"

    def __init__(self, accelerator: Accelerator | None = None, device: torch.device | str = "cpu",
                 precision: Precision | None = None) -> None:
        self.accelerator = accelerator or CPUAccelerator()
        self.root_device = torch.device(device)
        self.precision = precision or Precision()
        self.model: LightningModule | None = None
        self._layer_sync = False  # Trainer(sync_batchnorm=True); one process needs nothing for it

    # -- process topology -------------------------------------------------------------------------
    world_size = 1
    global_rank = 0
    local_rank = 0
    node_rank = 0
    num_nodes = 1

    launcher: Any = None  # ddp_spawn/ddp_fork: runs each Trainer call in new processes (see launch.py)
    is_distributed = False

    @property
    def is_global_zero(self) -> bool:
        return self.global_rank == 0

    @property
    def parallel_devices(self) -> list[torch.device]:
        return [self.root_device]

    def _configure(self, accelerator: Accelerator, device_ids: list[int], num_nodes: int) -> None:
        """Called by the Trainer with its ``devices`` and ``num_nodes``: one process runs on one device."""
        if len(device_ids) > 1 or num_nodes > 1:
            raise ValueError(f"{type(self).__name__} runs one process on one device, but the Trainer asks for "
                             f"{len(device_ids)} device(s) on {num_nodes} node(s); use strategy='ddp' (or 'auto').")

    def setup_environment(self) -> None:
        """Start or join the processes of the run (nothing to do for one process)."""

    def on_exception(self, err: BaseException) -> None:
        """A Trainer call failed with ``err`` (a distributed strategy stops the other processes here)."""

    # -- model and data ---------------------------------------------------------------------------
    def setup(self, model: LightningModule) -> None:
        """Put the model on the device in the right dtype."""
        self.accelerator.setup_device(self.root_device)
        self.model = model
        self.precision.convert_module(model)
        model.to(self.root_device)
        self.training_step = model.training_step  # bound directly: no ember frame between closure and step

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        """Run the module's ``training_step`` (through the DistributedDataParallel wrapper where there is one)."""
        return self.model.training_step(*args, **kwargs)  # type: ignore[union-attr]

    def setup_optimizers(self, optimizers: list[Any]) -> list[Any]:
        """The optimizers the Trainer steps, given those ``configure_optimizers`` made (DeepSpeed wraps them)."""
        return optimizers

    def process_dataloader(self, dataloader: Any, kind: str = "train") -> Any:
        """The dataloader this process iterates (a distributed strategy gives each rank its share)."""
        return dataloader

    def _move_target(self, device: torch.device | None = None) -> tuple[torch.device, bool]:
        """(device, non_blocking) for moving batches: copies to a CUDA device need not wait for the host."""
        device = device or self.root_device
        return device, device.type == "cuda"

    def batch_to_device(self, batch: Any, device: torch.device | None = None) -> Any:
        return _move_to_device(batch, *self._move_target(device))

    def no_backward_sync(self, module: Any) -> contextlib.AbstractContextManager:
        """Skip gradient synchronisation on a micro-batch that does not step (a no-op on one device)."""
        return contextlib.nullcontext()

    # -- collectives (trivial with one process) ---------------------------------------------------
    def reduce(self, tensor: Any, group: Any = None, reduce_op: str | None = "mean") -> Any:
        return tensor

    def all_gather(self, tensor: Any, group: Any = None, sync_grads: bool = False) -> Any:
        return tensor

    def barrier(self, name: str | None = None) -> None:
        pass

    def all_gather_object(self, obj: Any) -> list[Any]:
        """``obj`` from every rank, in rank order (any picklable object)."""
        return [obj]

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        return obj

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        return decision

    # -- checkpoints (a sharding strategy gathers or writes shards here) ------------------------------
    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: Any) -> None:
        """Write ``checkpoint`` (the Lightning-format dict every rank built) to ``filepath``, once, atomically."""
        from ember import checkpoint as _ckpt

        if self.is_global_zero:
            _ckpt._atomic_save(checkpoint, filepath)

    def load_checkpoint(self, path: Any, weights_only: bool | None = None) -> dict[str, Any]:
        """The checkpoint dict at ``path``, on the CPU."""
        from ember.checkpoint import _load_checkpoint

        return _load_checkpoint(path, map_location="cpu", weights_only=weights_only)

    def load_model_state(self, module: LightningModule, checkpoint: dict[str, Any], strict: bool,
                         source: str) -> None:
        """Put the checkpoint's weights into ``module`` (called before :meth:`setup`)."""
        from ember.checkpoint import _load_module_state

        _load_module_state(module, checkpoint["state_dict"], strict, source)

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        """Restore one optimizer from its entry in the checkpoint's ``optimizer_states`` (after :meth:`setup`)."""
        optimizer.load_state_dict(state)

    def teardown(self) -> None:
        pass


class SingleDeviceStrategy(Strategy):
    """Training on one device (CPU, one GPU or MPS) in one process."""

    def __init__(self, device: torch.device | str = "cpu", accelerator: Accelerator | None = None,
                 precision: Precision | None = None) -> None:
        super().__init__(accelerator=accelerator, device=device, precision=precision)
