"""``BaseFinetuning`` and ``BackboneFinetuning``: freeze parts of a model, unfreeze them later.

``BaseFinetuning`` gives the tools (freeze, make trainable, add the unfrozen parameters to the optimizer
as a new parameter group) and two methods to fill in: ``freeze_before_training(pl_module)`` (called in
``setup``) and ``finetune_function(pl_module, epoch, optimizer)`` (called at the start of every epoch).
The parameter groups added this way are saved in checkpoints, so a resumed run gets the same optimizer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any

from torch.nn import Module, ModuleDict
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer

from ember.callbacks.callback import Callback
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_warn

if TYPE_CHECKING:
    from ember.module import LightningModule
    from ember.trainer.trainer import Trainer

log = logging.getLogger("ember")

_Modules = Module | Iterable[Any]


def multiplicative(epoch: int) -> float:
    return 2.0


class BaseFinetuning(Callback):
    """Base class for finetuning schedules: subclass it and implement ``freeze_before_training`` and
    ``finetune_function``::

        class UnfreezeEncoderAt(BaseFinetuning):
            def __init__(self, epoch=5):
                super().__init__()
                self.epoch = epoch

            def freeze_before_training(self, pl_module):
                self.freeze(pl_module.encoder)

            def finetune_function(self, pl_module, current_epoch, optimizer):
                if current_epoch == self.epoch:
                    self.unfreeze_and_add_param_group(pl_module.encoder, optimizer, lr=1e-4)
    """

    def __init__(self) -> None:
        self._internal_optimizer_metadata: dict[int, list[dict[str, Any]]] = {}
        self._restarting = False

    # ---- state: the parameter groups, by parameter name ------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"internal_optimizer_metadata": self._internal_optimizer_metadata}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restarting = True
        self._internal_optimizer_metadata = state_dict.get("internal_optimizer_metadata", state_dict)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._restarting:
            return
        by_name = dict(pl_module.named_parameters())
        for opt_idx, optimizer in enumerate(trainer.optimizers):
            groups = self._internal_optimizer_metadata.get(opt_idx)
            if groups:  # rebuild the groups added before the checkpoint, so the optimizer state fits
                optimizer.param_groups = self._map_groups(groups, by_name)
        self._restarting = False

    @staticmethod
    def _map_groups(groups: list[dict[str, Any]], mapping: dict[Any, Any]) -> list[dict[str, Any]]:
        return [{**{k: v for k, v in g.items() if k != "params"}, "params": [mapping[p] for p in g["params"]]}
                for g in groups]

    def _store(self, pl_module: LightningModule, opt_idx: int, num_param_groups: int,
               current_param_groups: list[dict[str, Any]]) -> None:
        names = {p: n for n, p in pl_module.named_parameters()}
        if opt_idx not in self._internal_optimizer_metadata:
            self._internal_optimizer_metadata[opt_idx] = self._map_groups(current_param_groups, names)
        elif num_param_groups != len(current_param_groups):
            self._internal_optimizer_metadata[opt_idx].extend(
                self._map_groups(current_param_groups[num_param_groups:], names))

    # ---- the tools -------------------------------------------------------------------------

    @staticmethod
    def flatten_modules(modules: _Modules) -> list[Module]:
        """The leaf modules (and modules with parameters of their own) in ``modules``."""
        if isinstance(modules, ModuleDict):
            modules = modules.values()
        if isinstance(modules, Iterable) and not isinstance(modules, Module):
            found: list[Module] = []
            for m in modules:
                found.extend(BaseFinetuning.flatten_modules(m))
            return found
        return [m for m in modules.modules() if not list(m.children()) or m._parameters]

    @staticmethod
    def filter_params(modules: _Modules, train_bn: bool = True, requires_grad: bool = True) -> Generator:
        """The parameters of ``modules`` whose ``requires_grad`` equals ``requires_grad`` (batch-norm ones
        left out when ``train_bn`` is False)."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm) and not train_bn:
                continue
            for param in module.parameters(recurse=False):
                if param.requires_grad == requires_grad:
                    yield param

    @staticmethod
    def make_trainable(modules: _Modules) -> None:
        """Unfreeze every parameter of ``modules`` (and let batch norms track statistics again)."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm):
                module.track_running_stats = True
            for param in module.parameters(recurse=False):
                param.requires_grad = True

    @staticmethod
    def freeze_module(module: Module) -> None:
        """Freeze the parameters of ``module`` itself (a batch norm also stops tracking statistics)."""
        if isinstance(module, _BatchNorm):
            module.track_running_stats = False
        for param in module.parameters(recurse=False):
            param.requires_grad = False

    @staticmethod
    def freeze(modules: _Modules, train_bn: bool = True) -> None:
        """Freeze ``modules``; batch norms stay trainable when ``train_bn`` is True."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm) and train_bn:
                BaseFinetuning.make_trainable(module)
            else:
                BaseFinetuning.freeze_module(module)

    @staticmethod
    def filter_on_optimizer(optimizer: Optimizer, params: Iterable) -> list:
        """``params`` that are not already in one of ``optimizer``'s parameter groups."""
        known = {id(p) for group in optimizer.param_groups for p in group["params"]}
        params = list(params)
        fresh = [p for p in params if id(p) not in known]
        if len(fresh) != len(params):
            rank_zero_warn("Some parameters to unfreeze are already in the optimizer and are skipped. Did "
                           f"configure_optimizers pass all parameters to {type(optimizer).__name__}? Pass "
                           "`filter(lambda p: p.requires_grad, self.parameters())` instead.")
        return fresh

    @staticmethod
    def unfreeze_and_add_param_group(modules: _Modules, optimizer: Optimizer, lr: float | None = None,
                                     initial_denom_lr: float = 10.0, train_bn: bool = True) -> None:
        """Unfreeze ``modules`` and add their parameters to ``optimizer`` as a new group with learning rate
        ``lr`` (default: the first group's learning rate divided by ``initial_denom_lr``)."""
        frozen = {id(p) for p in BaseFinetuning.filter_params(modules, train_bn=train_bn, requires_grad=False)}
        BaseFinetuning.make_trainable(modules)
        group_lr = optimizer.param_groups[0]["lr"] / initial_denom_lr if lr is None else float(lr)
        known = {id(p) for group in optimizer.param_groups for p in group["params"]}
        # parameters that trained all along (batch norms with train_bn) and are in the optimizer: nothing to do
        candidates = [p for p in BaseFinetuning.filter_params(modules, train_bn=train_bn, requires_grad=True)
                      if id(p) in frozen or id(p) not in known]
        params = BaseFinetuning.filter_on_optimizer(optimizer, candidates)
        if params:
            optimizer.add_param_group({"params": params, "lr": group_lr})

    # ---- hooks -----------------------------------------------------------------------------

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self.freeze_before_training(pl_module)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        for opt_idx, optimizer in enumerate(trainer.optimizers):
            before = len(optimizer.param_groups)
            self.finetune_function(pl_module, trainer.current_epoch, optimizer)
            self._store(pl_module, opt_idx, before, optimizer.param_groups)

    def finetune_function(self, pl_module: LightningModule, epoch: int, optimizer: Optimizer) -> None:
        """Called at the start of every epoch: unfreeze what should train from ``epoch`` on."""
        raise NotImplementedError(f"{type(self).__name__} must implement finetune_function.")

    def freeze_before_training(self, pl_module: LightningModule) -> None:
        """Called in ``setup``: freeze what should not train at first."""
        raise NotImplementedError(f"{type(self).__name__} must implement freeze_before_training.")


class BackboneFinetuning(BaseFinetuning):
    """Train ``pl_module.backbone`` only from epoch ``unfreeze_backbone_at_epoch`` on, with its own learning
    rate that then grows each epoch by ``lambda_func(epoch + 1)`` (capped at the main learning rate when
    ``should_align``).

    Args:
        unfreeze_backbone_at_epoch: the 0-based epoch at which the backbone starts training.
        lambda_func: multiplier of the backbone learning rate per epoch after unfreezing.
        backbone_initial_ratio_lr: the backbone's first learning rate as a fraction of the main one.
        backbone_initial_lr: the backbone's first learning rate (overrides the ratio).
        should_align: never let the backbone's learning rate exceed the main one.
        initial_denom_lr: see :meth:`BaseFinetuning.unfreeze_and_add_param_group`.
        train_bn: train the backbone's batch norms while it is frozen.
        verbose: log both learning rates each epoch.
        rounding: decimals in that log.
    """

    def __init__(self, unfreeze_backbone_at_epoch: int = 10, lambda_func: Callable[[int], float] = multiplicative,
                 backbone_initial_ratio_lr: float = 10e-2, backbone_initial_lr: float | None = None,
                 should_align: bool = True, initial_denom_lr: float = 10.0, train_bn: bool = True,
                 verbose: bool = False, rounding: int = 12) -> None:
        super().__init__()
        self.unfreeze_backbone_at_epoch = unfreeze_backbone_at_epoch
        self.lambda_func = lambda_func
        self.backbone_initial_ratio_lr = backbone_initial_ratio_lr
        self.backbone_initial_lr = backbone_initial_lr
        self.should_align = should_align
        self.initial_denom_lr = initial_denom_lr
        self.train_bn = train_bn
        self.verbose = verbose
        self.rounding = rounding
        self.previous_backbone_lr: float | None = None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "previous_backbone_lr": self.previous_backbone_lr}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.previous_backbone_lr = state_dict["previous_backbone_lr"]
        super().load_state_dict(state_dict)

    def freeze_before_training(self, pl_module: LightningModule) -> None:
        if not isinstance(getattr(pl_module, "backbone", None), Module):
            raise MisconfigurationException(f"BackboneFinetuning needs {type(pl_module).__name__} to have a "
                                            "`backbone` attribute that is an nn.Module.")
        self.freeze(pl_module.backbone)

    def finetune_function(self, pl_module: LightningModule, epoch: int, optimizer: Optimizer) -> None:
        current_lr = optimizer.param_groups[0]["lr"]
        if epoch == self.unfreeze_backbone_at_epoch:
            backbone_lr = self.backbone_initial_lr if self.backbone_initial_lr is not None else \
                current_lr * self.backbone_initial_ratio_lr
            self.previous_backbone_lr = backbone_lr
            self.unfreeze_and_add_param_group(pl_module.backbone, optimizer, backbone_lr, train_bn=self.train_bn,
                                              initial_denom_lr=self.initial_denom_lr)
        elif epoch > self.unfreeze_backbone_at_epoch and self.previous_backbone_lr is not None:
            backbone_lr = self.lambda_func(epoch + 1) * self.previous_backbone_lr
            if self.should_align and backbone_lr > current_lr:
                backbone_lr = current_lr
            optimizer.param_groups[-1]["lr"] = backbone_lr
            self.previous_backbone_lr = backbone_lr
        else:
            return
        if self.verbose:
            log.info(f"Current lr: {round(current_lr, self.rounding)}, "
                     f"Backbone lr: {round(backbone_lr, self.rounding)}")
