"""LightningModule: a ``torch.nn.Module`` plus the hooks the Trainer calls and ``self.log``."""

from __future__ import annotations

import contextlib
import copy
import inspect
from argparse import Namespace
from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.optim import Optimizer

from ember.metrics import _check_fx, _is_metric, _to_tensor
from ember.optimization import LightningOptimizer
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer

_Tensor = torch.Tensor
_FLOATS = (torch.float32, torch.float64)  # logged as they are; other dtypes become float32
_CHECKED: dict[tuple[str | None, bool | None, bool | None], tuple[bool, bool]] = {}  # _check_fx's answers


def _reducer(strategy: Any, group: Any) -> Callable[[torch.Tensor, str], torch.Tensor]:
    """``sync_dist``: reduce a logged value across processes with ``strategy``."""
    return lambda tensor, op: strategy.reduce(tensor, group=group, reduce_op=op)


class AttributeDict(dict):
    """A dict whose keys are also attributes (``hparams.lr``)."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError as err:
            raise AttributeError(f"hparams has no {key!r}; known: {sorted(self)}") from err

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __delattr__(self, key: str) -> None:
        del self[key]


def _frame_args(frame: Any) -> tuple[Any, dict[str, Any]]:
    """(``self`` or None where ``frame`` is not a method, the other arguments with ``**kwargs`` flattened)."""
    info = inspect.getargvalues(frame)
    owner = info.locals.get("self") if info.args[:1] == ["self"] else None
    args = {name: info.locals[name] for name in info.args if name != "self"}
    if info.keywords:
        args.update(info.locals.get(info.keywords, {}))
    return owner, args


def _init_args_from_frame(frame: Any) -> dict[str, Any]:
    """The arguments the ``__init__`` running in ``frame`` was called with, plus those of the subclass
    ``__init__``s that called it through ``super().__init__`` (the outermost call wins on a clash)."""
    owner, args = _frame_args(frame)
    frame = frame.f_back
    while owner is not None and frame is not None and frame.f_code.co_name == "__init__":
        outer_owner, outer_args = _frame_args(frame)
        if outer_owner is not owner:
            break
        args.update(outer_args)
        frame = frame.f_back
    return args


class _HyperparametersMixin:
    def save_hyperparameters(self, *args: Any, ignore: str | list[str] | None = None, frame: Any = None,
                             logger: bool = True) -> None:
        """Store the ``__init__`` arguments in ``self.hparams`` (and in checkpoints, and in the logger)."""
        self._log_hyperparams = logger
        if len(args) == 1 and isinstance(args[0], (dict, Namespace)) and not isinstance(args[0], str):
            hp = dict(vars(args[0]) if isinstance(args[0], Namespace) else args[0])
        else:
            if frame is None:
                frame = inspect.currentframe().f_back  # type: ignore[union-attr]
            init_args = _init_args_from_frame(frame)
            if args:
                missing = [a for a in args if a not in init_args]
                if missing:
                    raise ValueError(f"save_hyperparameters({', '.join(map(repr, args))}): {missing} are not "
                                     f"arguments of __init__; known: {sorted(init_args)}.")
                hp = {a: init_args[a] for a in args}
            else:
                hp = init_args
        ignored = {ignore} if isinstance(ignore, str) else set(ignore or ())
        hp = {k: v for k, v in hp.items() if k not in ignored and not k.startswith("__")}
        self._hparams = AttributeDict(hp)
        self._hparams_initial = copy.deepcopy(self._hparams)

    @property
    def hparams(self) -> AttributeDict:
        """The hyperparameters stored by :meth:`save_hyperparameters`."""
        if not hasattr(self, "_hparams"):
            self._hparams = AttributeDict()
        return self._hparams

    @property
    def hparams_initial(self) -> AttributeDict:
        """A copy of the hyperparameters as they were when saved."""
        return copy.deepcopy(getattr(self, "_hparams_initial", AttributeDict()))


class LightningModule(_HyperparametersMixin, nn.Module):
    """Subclass this: implement ``training_step`` and ``configure_optimizers``; override any hook."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._trainer: Trainer | None = None
        self._current_fx_name: str | None = None
        self._automatic_optimization = True
        self._example_input_array: Any = None
        self._strict_loading: bool | None = None
        self._log_hyperparams = True
        self._lightning_optimizers: list[LightningOptimizer] = []

    # -- properties -------------------------------------------------------------------------------
    @property
    def trainer(self) -> Trainer:
        if self._trainer is None:
            raise RuntimeError(f"{type(self).__name__} is not attached to a Trainer; pass it to trainer.fit() "
                               "(or validate/test/predict) first.")
        return self._trainer

    @trainer.setter
    def trainer(self, trainer: Trainer | None) -> None:
        self._trainer = trainer

    @property
    def automatic_optimization(self) -> bool:
        """False means you call ``optimizer.step()`` and ``self.manual_backward`` yourself."""
        return self._automatic_optimization

    @automatic_optimization.setter
    def automatic_optimization(self, value: bool) -> None:
        self._automatic_optimization = value

    @property
    def strict_loading(self) -> bool:
        return True if self._strict_loading is None else self._strict_loading

    @strict_loading.setter
    def strict_loading(self, value: bool) -> None:
        self._strict_loading = value

    @property
    def example_input_array(self) -> Any:
        return self._example_input_array

    @example_input_array.setter
    def example_input_array(self, value: Any) -> None:
        self._example_input_array = value

    @property
    def device(self) -> torch.device:
        param = next(self.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        param = next(self.parameters(), None)
        return param.dtype if param is not None else torch.get_default_dtype()

    @property
    def current_epoch(self) -> int:
        return self._trainer.current_epoch if self._trainer else 0

    @property
    def global_step(self) -> int:
        return self._trainer.global_step if self._trainer else 0

    @property
    def global_rank(self) -> int:
        return self._trainer.global_rank if self._trainer else 0

    @property
    def local_rank(self) -> int:
        return self._trainer.local_rank if self._trainer else 0

    @property
    def on_gpu(self) -> bool:
        return self.device.type == "cuda"

    @property
    def logger(self) -> Any:
        return self._trainer.logger if self._trainer else None

    @property
    def loggers(self) -> list[Any]:
        return self._trainer.loggers if self._trainer else []

    # -- logging ----------------------------------------------------------------------------------
    def log(self, name: str, value: Any, prog_bar: bool = False, logger: bool | None = None,
            on_step: bool | None = None, on_epoch: bool | None = None, reduce_fx: Any = "mean",
            enable_graph: bool = False, sync_dist: bool = False, sync_dist_group: Any = None,
            add_dataloader_idx: bool = True, batch_size: int | None = None, metric_attribute: str | None = None,
            rank_zero_only: bool = False) -> None:
        """Record ``value`` under ``name``; see the Trainer docs for when it is reduced and reported."""
        trainer = self._trainer
        if trainer is None:
            rank_zero_warn(f"self.log({name!r}, ...) was called outside a Trainer loop; the value is ignored.")
            return
        if trainer._barebones:
            raise MisconfigurationException("self.log() is not available with Trainer(barebones=True); "
                                            "set barebones=False to log.")
        fx, results = self._current_fx_name, trainer._metrics.results
        # the options as passed: a key must be logged with the same ones every time (_Results.log checks)
        args = (prog_bar, logger, on_step, on_epoch, reduce_fx, enable_graph, sync_dist, sync_dist_group,
                add_dataloader_idx, metric_attribute, rank_zero_only)
        if isinstance(value, _Tensor):
            if value.dtype in _FLOATS and not value.ndim and not enable_graph:  # the common case, inline
                value = value.detach()
                if results is not None and results.dataloader_idx is None:
                    # the commonest: a key already logged with these options as a step value of one process (so
                    # already checked, and with nothing to reduce): what _Results.log would do
                    entry = results.entries.get((fx, name))
                    if entry is not None and entry.step_only and entry.args == args:
                        entry.step_value = value
                        return
            else:
                value = _to_tensor(name, value, None, enable_graph)
        elif not _is_metric(value):
            value = _to_tensor(name, value, self.device, enable_graph)
        rule = _CHECKED.get((fx, on_step, on_epoch))
        if rule is None:  # checked once per (hook, on_step, on_epoch); raises where logging is not allowed
            rule = _CHECKED[(fx, on_step, on_epoch)] = _check_fx(fx, name, on_step, on_epoch)
        if results is None:
            rank_zero_warn(f"self.log({name!r}, ...) was called outside a Trainer loop; the value is ignored.")
            return
        # rank_zero_only: logged by one process only, so a collective would wait forever for the others
        sync = _reducer(trainer.strategy, sync_dist_group) if sync_dist and not rank_zero_only and \
            trainer.world_size > 1 else None
        results.log(fx, name, value, args, rule, batch_size, sync)

    def log_dict(self, dictionary: Mapping[str, Any], prog_bar: bool = False, logger: bool | None = None,
                 on_step: bool | None = None, on_epoch: bool | None = None, reduce_fx: Any = "mean",
                 enable_graph: bool = False, sync_dist: bool = False, sync_dist_group: Any = None,
                 add_dataloader_idx: bool = True, batch_size: int | None = None,
                 rank_zero_only: bool = False) -> None:
        """``self.log`` every item of ``dictionary`` with the same options."""
        for name, value in dictionary.items():
            self.log(name, value, prog_bar=prog_bar, logger=logger, on_step=on_step, on_epoch=on_epoch,
                     reduce_fx=reduce_fx, enable_graph=enable_graph, sync_dist=sync_dist,
                     sync_dist_group=sync_dist_group, add_dataloader_idx=add_dataloader_idx,
                     batch_size=batch_size, rank_zero_only=rank_zero_only)

    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print`` on global rank 0 only."""
        if self._trainer is None or self._trainer.is_global_zero:
            print(*args, **kwargs)

    # -- optimization -----------------------------------------------------------------------------
    def optimizers(self, use_pl_optimizer: bool = True) -> Any:
        """The optimizer(s) from ``configure_optimizers`` (one object if there is one)."""
        opts: list[Any] = list(self._lightning_optimizers) if use_pl_optimizer else list(self.trainer.optimizers)
        return opts[0] if len(opts) == 1 else opts

    def lr_schedulers(self) -> Any:
        """The LR scheduler(s) from ``configure_optimizers``: None, one object, or a list."""
        scheds = [config.scheduler for config in self.trainer.lr_scheduler_configs]
        if not scheds:
            return None
        return scheds[0] if len(scheds) == 1 else scheds

    def manual_backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """Backward with the precision's scaling and the backward hooks; use with manual optimization."""
        self.trainer._backward(loss, None, *args, **kwargs)

    def clip_gradients(self, optimizer: Optimizer, gradient_clip_val: float | None = None,
                       gradient_clip_algorithm: str | None = None) -> None:
        """Clip the gradients of ``optimizer``'s parameters by norm (default) or value."""
        self.trainer._clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def toggle_optimizer(self, optimizer: Optimizer | LightningOptimizer) -> None:
        """Let only ``optimizer``'s parameters require grad (undo with :meth:`untoggle_optimizer`)."""
        own = {id(p) for group in optimizer.param_groups for p in group["params"]}
        self._param_requires_grad_state = {}
        for opt in self.trainer.optimizers:
            for group in opt.param_groups:
                for param in group["params"]:
                    if id(param) not in own and id(param) not in self._param_requires_grad_state:
                        self._param_requires_grad_state[id(param)] = (param, param.requires_grad)
                        param.requires_grad = False

    def untoggle_optimizer(self, optimizer: Optimizer | LightningOptimizer) -> None:
        """Restore the ``requires_grad`` flags that :meth:`toggle_optimizer` changed."""
        for param, requires_grad in getattr(self, "_param_requires_grad_state", {}).values():
            param.requires_grad = requires_grad
        self._param_requires_grad_state = {}

    @contextlib.contextmanager
    def toggled_optimizer(self, optimizer: Optimizer | LightningOptimizer) -> Generator[None, None, None]:
        """``toggle_optimizer`` for the duration of a ``with`` block."""
        self.toggle_optimizer(optimizer)
        try:
            yield
        finally:
            self.untoggle_optimizer(optimizer)

    def all_gather(self, data: Any, group: Any = None, sync_grads: bool = False) -> Any:
        """Gather ``data`` from every process (identity on one device)."""
        return self.trainer.strategy.all_gather(data, group=group, sync_grads=sync_grads)

    def freeze(self) -> None:
        """Stop gradients for every parameter and switch to eval mode."""
        for param in self.parameters():
            param.requires_grad = False
        self.eval()

    def unfreeze(self) -> None:
        """Undo :meth:`freeze`."""
        for param in self.parameters():
            param.requires_grad = True
        self.train()

    # -- the steps the user writes ----------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return super().forward(*args, **kwargs)

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        """Compute and return the training loss (a tensor, or a dict with a "loss" key, or None to skip)."""
        raise MisconfigurationException(f"{type(self).__name__} has no `training_step`; define "
                                        "`training_step(self, batch, batch_idx)` returning the loss.")

    def validation_step(self, *args: Any, **kwargs: Any) -> Any:
        """Evaluate one validation batch; log metrics with ``self.log``."""

    def test_step(self, *args: Any, **kwargs: Any) -> Any:
        """Evaluate one test batch; log metrics with ``self.log``."""

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        """Return the prediction for one batch (default: ``self(batch)``)."""
        return self(batch)

    def configure_optimizers(self) -> Any:
        """Return an optimizer, a list, a dict with "optimizer"/"lr_scheduler", or a list of such dicts."""
        raise MisconfigurationException(f"{type(self).__name__} has no `configure_optimizers`; define it to "
                                        "return e.g. torch.optim.Adam(self.parameters(), lr=1e-3).")

    def configure_callbacks(self) -> Any:
        """Return callbacks to add to the Trainer's (same types replace the Trainer's)."""
        return []

    def configure_model(self) -> None:
        """Create layers here to build them directly on the device (called before optimizers are made)."""

    # -- hooks with default behaviour -------------------------------------------------------------
    def backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """Called to run the backward pass; override for custom backward."""
        loss.backward(*args, **kwargs)

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Optimizer | LightningOptimizer,
                       optimizer_closure: Any = None) -> None:
        """Called to step the optimizer; the closure runs ``training_step`` and backward."""
        optimizer.step(closure=optimizer_closure)

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: Optimizer) -> None:
        """Called to zero the gradients."""
        optimizer.zero_grad()

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        """Called to step an LR scheduler (``metric`` is given for ReduceLROnPlateau)."""
        if metric is None:
            scheduler.step()
        else:
            scheduler.step(metric)

    def configure_gradient_clipping(self, optimizer: Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        """Called before each optimizer step to clip gradients with the Trainer's settings."""
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Called to move a batch to the device."""
        return self.trainer.strategy.batch_to_device(batch, device)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Called before the batch is moved to the device; return the (altered) batch."""
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Called after the batch is on the device; return the (altered) batch."""
        return batch

    def on_validation_model_eval(self) -> None:
        """Called when validation starts: switches the model to eval mode."""
        self.trainer.model.eval()

    def on_validation_model_train(self) -> None:
        """An override is called when validation ends instead of the default, which puts each submodule back in the
        train/eval mode it had before (so frozen submodules stay frozen); this method switches the whole model."""
        self.trainer.model.train()

    def on_validation_model_zero_grad(self) -> None:
        """Called before validation inside fit: frees the gradients."""
        self.zero_grad(set_to_none=True)

    def on_test_model_eval(self) -> None:
        """Called when testing starts: switches the model to eval mode."""
        self.trainer.model.eval()

    def on_test_model_train(self) -> None:
        """An override is called when testing ends instead of the default, which puts each submodule back in the
        train/eval mode it had before (so frozen submodules stay frozen); this method switches the whole model."""
        self.trainer.model.train()

    def on_predict_model_eval(self) -> None:
        """Called when prediction starts: switches the model to eval mode."""
        self.trainer.model.eval()

    # -- hooks that do nothing by default ---------------------------------------------------------
    def prepare_data(self) -> None: """Download or prepare data once per node."""
    def setup(self, stage: str) -> None: """Called at the start of fit/validate/test/predict."""
    def teardown(self, stage: str) -> None: """Called at the end of fit/validate/test/predict."""
    def on_fit_start(self) -> None: """Called when fit begins."""
    def on_fit_end(self) -> None: """Called when fit ends."""
    def on_train_start(self) -> None: """Called when training begins (after the sanity check)."""
    def on_train_end(self) -> None: """Called when training ends."""
    def on_validation_start(self) -> None: """Called when a validation loop begins."""
    def on_validation_end(self) -> None: """Called when a validation loop ends."""
    def on_test_start(self) -> None: """Called when the test loop begins."""
    def on_test_end(self) -> None: """Called when the test loop ends."""
    def on_predict_start(self) -> None: """Called when the predict loop begins."""
    def on_predict_end(self) -> None: """Called when the predict loop ends."""
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None: """Return -1 to end the epoch."""
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None: """After a train batch."""
    def on_validation_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: """."""
    def on_validation_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: """."""
    def on_test_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: """."""
    def on_test_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: """."""
    def on_predict_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: """."""
    def on_predict_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: """."""
    def on_train_epoch_start(self) -> None: """Called when a training epoch begins."""
    def on_train_epoch_end(self) -> None: """Called when a training epoch ends."""
    def on_validation_epoch_start(self) -> None: """Called when a validation epoch begins."""
    def on_validation_epoch_end(self) -> None: """Called when a validation epoch ends."""
    def on_test_epoch_start(self) -> None: """Called when a test epoch begins."""
    def on_test_epoch_end(self) -> None: """Called when a test epoch ends."""
    def on_predict_epoch_start(self) -> None: """Called when a predict epoch begins."""
    def on_predict_epoch_end(self) -> None: """Called when a predict epoch ends."""
    def on_before_backward(self, loss: torch.Tensor) -> None: """Called before backward."""
    def on_after_backward(self) -> None: """Called after backward."""
    def on_before_optimizer_step(self, optimizer: Optimizer) -> None: """Called before the optimizer steps."""
    def on_before_zero_grad(self, optimizer: Optimizer) -> None: """Called before gradients are zeroed."""
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None: """Edit the checkpoint dict being saved."""
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None: """Read the checkpoint being loaded."""

    # -- checkpoints ------------------------------------------------------------------------------
    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, map_location: Any = None, hparams_file: Any = None,
                             strict: bool | None = None, weights_only: bool | None = None,
                             **kwargs: Any) -> LightningModule:
        """Build the module from the checkpoint's hyperparameters (``kwargs`` override) and load its weights."""
        from ember.checkpoint import _load_checkpoint, _module_from_checkpoint

        checkpoint = _load_checkpoint(checkpoint_path, map_location=map_location or "cpu",
                                      weights_only=weights_only)
        return _module_from_checkpoint(cls, checkpoint, hparams_file, strict, **kwargs)
