"""The loops: fit (epochs of training batches with validation inside), evaluation, prediction.

Plain functions over the Trainer, top to bottom; every hook is a one-line ``trainer._hook(...)`` call.
"""

from __future__ import annotations

import math
import random
import signal
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from itertools import chain, islice, repeat
from typing import TYPE_CHECKING, Any

import torch

from ember.metrics import _Results
from ember.optimization import _may_step_directly, _scheduler_step, _TrainingClosure
from ember.precision import Precision
from ember.trainer.preemption import _Preempted, _save_preemption_checkpoint
from ember.trainer.states import RunningStage
from ember.utilities.rank_zero import rank_zero_info

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer


@dataclass(slots=True)  # slots: no class-level defaults, so attribute reads stay on CPython's fast path
class _Progress:
    """Where fit stands; saved in checkpoints so that a resumed run continues exactly."""

    epoch: int = 0  # trainer.current_epoch
    global_step: int = 0  # optimizer steps taken
    batch_idx: int = 0  # batches finished in the current epoch
    total_batch_idx: int = 0  # batches finished in all epochs
    batches_that_stepped: int = 0  # the step number loggers see
    epoch_finished: bool = False  # the current epoch's batches are done (its end hooks may still run)
    stepped: bool = False  # the last batch ended with an optimizer step
    phase: str = ""  # where in a batch/epoch a checkpoint was taken: "batch_end", "validating", "epoch_end"

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        fit = checkpoint.get("loops", {}).get("fit_loop", {})
        own = fit.get("state_dict", {}).get("ember")
        if own is not None:
            self.__init__(**own["progress"])  # type: ignore[misc]
        else:  # a Lightning checkpoint: read its progress counters
            batches = fit.get("epoch_loop.batch_progress", {})
            self.epoch = checkpoint.get("epoch", 0)
            self.global_step = checkpoint.get("global_step", 0)
            self.batch_idx = batches.get("current", {}).get("completed", 0)
            self.total_batch_idx = batches.get("total", {}).get("completed", 0)
            self.batches_that_stepped = fit.get("epoch_loop.state_dict", {}).get("_batches_that_stepped", 0)
            self.epoch_finished = bool(batches.get("is_last_batch", False))
        if self.epoch_finished and self.phase == "" or own is None and self.epoch_finished:
            self.epoch, self.batch_idx, self.epoch_finished = self.epoch + 1, 0, False  # resume at the next epoch


@dataclass(frozen=True, slots=True)
class _StepPlan:
    """What a training step must call, worked out once per fit (see ``_plan_step``)."""

    live: frozenset[str]  # per-batch hooks that a callback or the module implements
    own_zero_grad: bool  # the module overrides optimizer_zero_grad (else: optimizer.zero_grad())
    own_backward: bool  # the module overrides backward (else: loss.backward())
    own_step: bool  # the module overrides optimizer_step (else: optimizer.step(closure))
    scaled: bool  # the precision changes the loss before backward (GradScaler)
    plain_forward: bool  # training_step needs no precision context
    clipping_hook: bool  # the module overrides configure_gradient_clipping
    automatic: bool  # automatic optimization
    plain_backward: bool  # zero_grad and backward are torch's own calls, with no hook around them


_BATCH_HOOKS = ("on_train_batch_start", "on_train_batch_end")
_AROUND_BACKWARD = ("on_before_zero_grad", "on_before_backward", "on_after_backward", "on_before_optimizer_step")
# every hook and every override called, as when a profiler watches
_FULL_STEP_PLAN = _StepPlan(live=frozenset(_BATCH_HOOKS + _AROUND_BACKWARD), own_zero_grad=True, own_backward=True,
                            own_step=True, scaled=True, plain_forward=False, clipping_hook=True, automatic=True,
                            plain_backward=False)


def _plan_step(trainer: Trainer) -> _StepPlan:
    """Skip, for this fit, the per-step hooks that nobody implements and the defaults that only call torch."""
    module, precision = trainer.lightning_module, trainer.strategy.precision
    runs = lambda name: trainer._hooks_for(name)[2] == "user"  # noqa: E731
    clipping_hook, automatic = runs("configure_gradient_clipping"), module.automatic_optimization
    if "_profiler_markers" in trainer.__dict__:  # a profiler times each hook and default: call them all
        return replace(_FULL_STEP_PLAN, clipping_hook=clipping_hook, automatic=automatic)
    live = frozenset(name for name in _BATCH_HOOKS + _AROUND_BACKWARD if any(trainer._hooks_for(name)))
    own_zero_grad, own_backward, scaled = runs("optimizer_zero_grad"), runs("backward"), precision.scaler is not None
    return _StepPlan(
        live=live, own_zero_grad=own_zero_grad, own_backward=own_backward, own_step=runs("optimizer_step"),
        scaled=scaled,
        plain_forward=type(precision).forward_context is Precision.forward_context and
        precision.dtype == torch.float32,
        clipping_hook=clipping_hook, automatic=automatic,
        plain_backward=not (own_zero_grad or own_backward or scaled or clipping_hook or live & set(_AROUND_BACKWARD)))


# -- data helpers ---------------------------------------------------------------------------------
def _length(loader: Any) -> float:
    try:
        return len(loader)
    except (TypeError, NotImplementedError):
        return math.inf


def _num_batches(loader: Any, limit: int | float, name: str) -> float:
    """How many batches of ``loader`` a loop uses under ``limit_{name}_batches``."""
    length = _length(loader)
    if isinstance(limit, int):
        return min(length, limit)
    if math.isinf(length):
        if limit not in (0.0, 1.0):
            raise ValueError(f"limit_{name}_batches={limit} is a fraction, but the {name} dataloader has no length; "
                             "use an int number of batches or 1.0.")
        return length if limit == 1.0 else 0
    batches = int(length * limit)
    if limit > 0 and batches == 0 and length > 0:
        raise ValueError(f"limit_{name}_batches={limit} selects 0 of the {length} batches; use a larger fraction "
                         f"or an int number of batches.")
    return batches


def _set_sampler_epoch(loader: Any, epoch: int) -> None:
    for sampler in (getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        if sampler is not None and callable(getattr(sampler, "set_epoch", None)):
            sampler.set_epoch(epoch)


def _with_last(iterator: Iterator[Any], limit: float) -> Iterator[tuple[Any, bool]]:
    """(batch, is_last) pairs; fetches one batch ahead only when the length is unknown."""
    if not math.isinf(limit):  # built from C iterators only: no Python frame per batch
        n = int(limit)
        return zip(islice(iterator, n), chain(repeat(False, n - 1), (True,)))
    return _with_last_unsized(iterator)


def _with_last_unsized(iterator: Iterator[Any]) -> Iterator[tuple[Any, bool]]:
    try:
        batch = next(iterator)
    except StopIteration:
        return
    for upcoming in iterator:
        yield batch, False
        batch = upcoming
    yield batch, True


# -- fit ------------------------------------------------------------------------------------------
def _fit_loop(trainer: Trainer, resume: dict[str, Any] | None = None) -> None:
    """Sanity check, then epochs until a limit is reached. ``resume`` is ember's state from a checkpoint."""
    p = trainer._progress
    _run_sanity_check(trainer)
    if trainer.limit_train_batches == 0:
        return
    trainer._setup_train_data()
    if _fit_done(trainer, log=True):
        return
    iterator = None
    if p.batch_idx == 0:  # Lightning creates the first epoch's iterator here, before on_train_start
        trainer._epoch_rng = {"iter": _rng_state(trainer.train_dataloader)}
        iterator = iter(trainer.train_dataloader)
    trainer._validation_on = trainer._val_enabled  # fixed for the run; the loop reads it every batch
    trainer._step_plan = _plan_step(trainer)
    if trainer._validation_on:
        trainer._setup_eval_data("val")
    trainer._train_results = _Results(training=True)
    trainer._metrics.results, trainer._metrics.on_step = trainer._train_results, True
    trainer._hook("on_train_start")
    if resume is not None:
        iterator = _resume(trainer, resume)
    while not _fit_done(trainer, log=True):
        trainer.state.stage = RunningStage.TRAINING
        _train_epoch(trainer, iterator)
        iterator = None
        if trainer._reload_every and p.epoch % trainer._reload_every == 0 and not _fit_done(trainer):
            trainer._reload_train_dataloader()
    trainer._hook("on_train_end")


def _resume(trainer: Trainer, state: dict[str, Any]) -> Iterator[Any] | None:
    """Put data order, metrics and random state back where the checkpointed run was; finish its batch."""
    p = trainer._progress
    params = dict(trainer.lightning_module.named_parameters())
    for name, grad in _this_rank(trainer, state.get("grads", {})).items():
        params[name].grad = grad.to(params[name].device, params[name].dtype)
    trainer._train_results.load_state_dict(state.get("results", {}))
    trainer._metrics.callback.update(state.get("callback_metrics", {}))
    iterator = None
    if p.batch_idx > 0 and not p.epoch_finished:  # mid-epoch: replay the shuffle, skip the batches trained on
        data_rng = state["epoch_rng"]
        _set_rng_state(data_rng["iter"], trainer.train_dataloader)
        iterator = iter(trainer.train_dataloader)
        if "first_batch" in data_rng:
            _set_rng_state(data_rng["first_batch"], trainer.train_dataloader)
        for _ in range(p.batch_idx):  # eagerly, so that the sampler draws its seed from this state
            next(iterator)
        trainer._epoch_rng = data_rng
    _set_rng_state(_this_rank(trainer, state["rng"]), trainer.train_dataloader)
    if p.phase == "epoch_end":
        _end_train_epoch(trainer, hooks=False)
        return None
    if p.phase in ("batch_end", "validating"):
        if _finish_batch(trainer, p.batch_idx - 1, p.epoch_finished, p.stepped) or p.epoch_finished:
            _end_train_epoch(trainer)
            return None
    return iterator


def _this_rank(trainer: Trainer, per_rank: Any) -> Any:
    """This process's entry of a per-rank list (rank 0's when resuming with a different number of ranks)."""
    if not isinstance(per_rank, list):
        return per_rank  # written by a single process before per-rank state existed
    return per_rank[trainer.global_rank] if len(per_rank) == trainer.world_size else per_rank[0]


def _resume_state(trainer: Trainer) -> dict[str, Any]:
    """What ember adds to a checkpoint so that resuming reproduces the uninterrupted run exactly."""
    p = trainer._progress
    strategy = trainer.strategy
    state: dict[str, Any] = {
        "progress": p.state_dict(),
        # per rank: each process draws its own dropout masks (and accumulates its own micro-batch gradients)
        "rng": [_compact(s) for s in strategy.all_gather_object(_rng_state(trainer.train_dataloader))],
        "epoch_rng": {k: _compact(s) for k, s in trainer._epoch_rng.items()},
        "results": trainer._train_results.state_dict(),
        "callback_metrics": {k: v.detach().cpu() for k, v in trainer._metrics.callback.items()
                             if isinstance(v, torch.Tensor)},
    }
    accumulating = p.batch_idx % trainer.accumulate_grad_batches != 0 and not p.epoch_finished
    if accumulating or not trainer.lightning_module.automatic_optimization:
        # gradients of a half-accumulated window (or of manual optimization) are part of the state
        grads = {name: param.grad.detach().cpu() for name, param in
                 trainer.lightning_module.named_parameters() if param.grad is not None}
        state["grads"] = strategy.all_gather_object(grads)
    return state


def _can_stop_early(trainer: Trainer) -> bool:
    p = trainer._progress
    return p.epoch >= trainer._min_epochs and (trainer.min_steps is None or p.global_step >= trainer.min_steps)


def _fit_done(trainer: Trainer, log: bool = False) -> bool:
    p = trainer._progress
    reason = None
    if trainer.num_training_batches == 0:
        reason = "No training batches."
    elif 0 <= trainer.max_steps <= p.global_step:
        reason = f"`max_steps={trainer.max_steps}` reached."
    elif 0 <= trainer.max_epochs <= p.epoch:
        reason = f"`max_epochs={trainer.max_epochs}` reached."
    elif trainer.should_stop and _can_stop_early(trainer):
        reason = "`trainer.should_stop` was set."
    if reason and log and not trainer.sanity_checking:
        rank_zero_info(f"`Trainer.fit` stopped: {reason}")
    return reason is not None


def _train_epoch(trainer: Trainer, iterator: Iterator[Any] | None) -> None:
    p, module = trainer._progress, trainer.lightning_module
    loader, num_batches = trainer.train_dataloader, trainer.num_training_batches
    _set_sampler_epoch(loader, p.epoch)
    if p.batch_idx == 0:
        trainer._hook("on_train_epoch_start")
    accumulate = trainer.accumulate_grad_batches  # read after the hook: GradientAccumulationScheduler sets it
    if iterator is None:
        trainer._epoch_rng = {"iter": _rng_state(loader)}
        iterator = iter(loader)
    elif p.batch_idx == 0:  # hooks (on_train_start) ran since iter(): the first next(), where a sampler draws its
        #                   shuffle seed, starts from another state, which resuming must put back
        trainer._epoch_rng["first_batch"] = _rng_state(loader)
    plan = trainer._step_plan
    automatic, batch_start, batch_end = plan.automatic, *(name in plan.live for name in _BATCH_HOOKS)
    optimizer = trainer._lightning_optimizers[0] if automatic and trainer._lightning_optimizers else None
    torch_optimizer = optimizer.optimizer if optimizer is not None else None
    closure = _TrainingClosure(trainer, torch_optimizer)
    # LightningOptimizer.step's closure-first path, taken here without its frame (see there for the conditions)
    direct = optimizer is not None and optimizer._closure_first and not (plan.own_step or plan.scaled)
    results, move = trainer._train_results, trainer._batch_mover(0)
    for batch, is_last in _with_last(iterator, num_batches - p.batch_idx):
        batch_idx, trainer._is_last_batch = p.batch_idx, is_last
        batch = results.batch = move(batch)
        ready = batch_idx + 1
        steps = not automatic or ready % accumulate == 0 or is_last
        if batch_start and trainer._hook("on_train_batch_start", batch, batch_idx) == -1:
            p.epoch_finished = True
            _step_schedulers(trainer, "step", steps, batch_idx, last=True)
            break
        if automatic:
            closure.batch, closure.batch_idx = batch, batch_idx
            if accumulate > 1:  # (otherwise every batch starts and ends a window: the closure's defaults)
                closure.zero_grad, closure.after = batch_idx % accumulate == 0, steps and not plan.scaled
            if not steps:
                with trainer.strategy.no_backward_sync(module):
                    closure()
            elif direct and _may_step_directly(torch_optimizer):
                closure()
                torch_optimizer.step()
                p.global_step += 1
            elif optimizer is None:
                closure()
            elif plan.own_step:
                module.__dict__["_current_fx_name"] = "optimizer_step"
                module.optimizer_step(p.epoch, batch_idx, optimizer, closure)
            else:
                optimizer.step(closure=closure)  # what LightningModule.optimizer_step does
        else:
            module.__dict__["_current_fx_name"] = "training_step"
            with trainer.strategy.precision.forward_context():
                outputs = trainer.strategy.training_step(batch, batch_idx)  # through DDP where there is one
            outputs = {"loss": outputs.detach()} if isinstance(outputs, torch.Tensor) else outputs
        p.batch_idx, p.total_batch_idx, p.epoch_finished = ready, p.total_batch_idx + 1, is_last
        p.stepped, p.phase = steps, "batch_end"
        if trainer.lr_scheduler_configs:
            _step_schedulers(trainer, "step", steps, batch_idx, last=is_last)
        if batch_end:
            trainer._hook("on_train_batch_end", closure.output if automatic else outputs, batch, batch_idx)
        if _finish_batch(trainer, batch_idx, is_last, steps):
            break
    _end_train_epoch(trainer)


_SIGNAL_CHECK_EVERY = 8  # batches between the ranks' checks for a preemption signal


def _finish_batch(trainer: Trainer, batch_idx: int, is_last: bool, stepped: bool) -> bool:
    """What follows ``on_train_batch_end``: logging, validation when due, plateau schedulers. True to stop."""
    p = trainer._progress
    if p.phase == "batch_end":
        if stepped and trainer.loggers:
            trainer._log_step_metrics()
        # batches counted in this epoch, or across epochs (check_val_every_n_epoch=None)
        index = batch_idx if trainer.check_val_every_n_epoch is not None else p.total_batch_idx - 1
        if (is_last or (index + 1) % trainer.val_check_batch == 0 or trainer.should_stop) and \
                _should_validate(trainer, index, is_last):  # (the common answer, "not now", without a call)
            trainer._metrics.collect(on_step=True)  # validation-time callbacks see this step's values
            if stepped:
                trainer._module_hook("on_validation_model_zero_grad")
            p.phase = "validating"
            _run_validation(trainer)
    p.phase = ""
    if stepped:
        if trainer.lr_scheduler_configs:
            _step_schedulers(trainer, "step", True, batch_idx, plateau=True)
        p.batches_that_stepped += 1
    signum = trainer._signals.received
    if trainer.strategy.world_size > 1:  # every rank must stop at the same batch, or their collectives would mismatch
        # agreeing costs a collective, so ranks compare notes every few batches (preemption grace periods are
        # seconds long, batches usually much shorter)
        agreed = p.total_batch_idx % _SIGNAL_CHECK_EVERY == 0 and \
            trainer.strategy.reduce_boolean_decision(signum is not None, all=False)
        signum = signal.SIGTERM if agreed else None
    if signum is not None:  # preempted: checkpoint this exact point and leave
        raise _Preempted(signum, _save_preemption_checkpoint(trainer, signum))
    if trainer.should_stop:
        for logger in trainer.loggers:
            logger.save()
        return 0 <= trainer.max_steps <= p.global_step or _can_stop_early(trainer)
    return 0 <= trainer.max_steps <= p.global_step


def _end_train_epoch(trainer: Trainer, hooks: bool = True) -> None:
    p = trainer._progress
    trainer._metrics.collect(on_step=True)  # the last step's values stay in callback_metrics, as in Lightning
    trainer._metrics.on_step = False
    trainer._metrics.collect(on_step=False)  # reduce sync_dist epoch metrics here, on every rank in the same order
    if hooks:
        p.phase = "epoch_end"
        trainer._hook("on_train_epoch_end")
    trainer._metrics.collect(on_step=False)
    if p.epoch_finished or p.batch_idx == trainer.num_training_batches:
        _step_schedulers(trainer, "epoch", True, p.epoch, plateau=True)
    p.batches_that_stepped -= 1  # loggers see epoch metrics at the step of the epoch's last batch
    trainer._log_metrics(trainer._metrics.collect(on_step=False))
    p.batches_that_stepped += 1
    trainer._train_results = _Results(training=True)
    trainer._metrics.results, trainer._metrics.on_step = trainer._train_results, True
    p.epoch, p.batch_idx, p.epoch_finished, p.phase = p.epoch + 1, 0, False, ""


def _step_schedulers(trainer: Trainer, interval: str, stepped: bool, index: int, plateau: bool = False,
                     last: bool = False) -> None:
    """Lightning's timing: step schedulers after each optimizer step, epoch ones on the last batch."""
    if not trainer.lr_scheduler_configs or not trainer.lightning_module.automatic_optimization or not stepped:
        return
    _scheduler_step(trainer, interval, plateau, index + 1)
    if interval == "step" and last and not plateau:
        _scheduler_step(trainer, "epoch", False, trainer._progress.epoch + 1)


def _should_validate(trainer: Trainer, index: int, is_last: bool) -> bool:
    """Whether validation runs after batch ``index`` (counted as ``val_check_batch`` counts)."""
    if not trainer._validation_on or (trainer._progress.epoch + 1) % (trainer.check_val_every_n_epoch or 1):
        return False
    if trainer.should_stop and _can_stop_early(trainer):
        return True
    if math.isinf(trainer.val_check_batch):
        return is_last
    return (index + 1) % trainer.val_check_batch == 0


def _run_validation(trainer: Trainer) -> None:
    trainer.state.stage = RunningStage.VALIDATING
    train_results = trainer._metrics.results
    _evaluation_loop(trainer, RunningStage.VALIDATING, trainer.val_dataloaders, trainer.num_val_batches)
    trainer._metrics.results = train_results
    trainer._metrics.on_step = True
    trainer.state.stage = RunningStage.TRAINING


def _run_sanity_check(trainer: Trainer) -> None:
    if not trainer._val_enabled or trainer.num_sanity_val_steps == 0:
        return
    state = _rng_state()
    trainer.state.stage = RunningStage.SANITY_CHECKING
    trainer._hook("on_sanity_check_start")
    trainer._setup_eval_data("val")
    limits = [min(n, trainer.num_sanity_val_steps) for n in trainer.num_val_batches]
    trainer.num_sanity_val_batches = limits
    if any(limits):
        _evaluation_loop(trainer, RunningStage.SANITY_CHECKING, trainer.val_dataloaders, limits)
    trainer._hook("on_sanity_check_end")
    trainer._metrics.reset()
    trainer.state.stage = RunningStage.TRAINING
    _set_rng_state(state)  # the sanity check must not change what training sees


def _generators(loader: Any) -> list[torch.Generator]:
    """The torch Generators a DataLoader draws its shuffling from (its own, its sampler's)."""
    found: list[torch.Generator] = []
    for owner in (loader, getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None),
                                                                  "sampler", None)):
        gen = getattr(owner, "generator", None)
        if isinstance(gen, torch.Generator) and all(gen is not g for g in found):
            found.append(gen)
    return found


def _rng_state(loader: Any = None) -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) random states, plus those of ``loader``'s generators."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np

        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        state["numpy"] = (kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, gauss)
    except ImportError:
        pass
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if loader is not None:
        state["loader"] = [g.get_state() for g in _generators(loader)]
    return state


def _compact(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with Python's 625-int tuple as one tensor: a checkpoint pickles one object instead of 625."""
    version, internal, gauss = state["python"]
    if isinstance(internal, tuple):
        state = {**state, "python": (version, torch.tensor(internal, dtype=torch.int64), gauss)}
    return state


def _set_rng_state(state: dict[str, Any], loader: Any = None) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal.tolist()) if isinstance(internal, torch.Tensor) else internal, gauss))
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy as np

        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if loader is not None:
        for gen, gen_state in zip(_generators(loader), state.get("loader", [])):
            gen.set_state(gen_state)


# -- evaluation and prediction --------------------------------------------------------------------
def _capture_modes(module: torch.nn.Module) -> dict[torch.nn.Module, bool]:
    return {m: m.training for m in module.modules()}


def _restore_modes(modes: dict[torch.nn.Module, bool]) -> None:
    for m, training in modes.items():
        if m.training != training:  # (nn.Module.__setattr__ is slow: skip what is already right)
            m.training = training


def _evaluation_loop(trainer: Trainer, stage: RunningStage, loaders: list[Any], limits: list[float],
                     verbose: bool = False) -> list[dict[str, Any]]:
    """Run validation or test over every dataloader; return one dict of logged metrics per dataloader."""
    module = trainer.lightning_module
    kind = "test" if stage == RunningStage.TESTING else "validation"
    step = module.test_step if kind == "test" else module.validation_step
    sanity = stage == RunningStage.SANITY_CHECKING
    results = trainer._metrics.results = _Results()
    trainer._metrics.on_step = True
    multi = len(loaders) > 1
    modes = _capture_modes(module)
    trainer._module_hook(f"on_{kind}_model_eval")
    outputs: list[dict[str, Any]] = []
    batch_start, batch_end, step_name = f"on_{kind}_batch_start", f"on_{kind}_batch_end", f"{kind}_step"
    starts, ends = any(trainer._hooks_for(batch_start)), any(trainer._hooks_for(batch_end))
    plain_forward = trainer._step_plan.plain_forward  # in fit; outside it, the context is always entered
    loggers = bool(trainer.loggers) and not sanity
    with trainer._eval_context():
        trainer._hook(f"on_{kind}_start")
        trainer._hook(f"on_{kind}_epoch_start")
        seen = trainer._eval_log_steps[kind]  # per dataloader; restarts when the dataloaders are (re)loaded
        for dl_idx, (loader, limit) in enumerate(zip(loaders, limits)):
            if limit == 0:
                continue
            if trainer.state.fn == "fit":
                _set_sampler_epoch(loader, trainer._progress.epoch)
            move = trainer._batch_mover(dl_idx)
            for batch_idx, (batch, _) in enumerate(_with_last(iter(loader), limit)):
                batch = move(batch)
                results.new_batch(batch, dl_idx if multi else None)
                args = (batch, batch_idx, dl_idx) if multi else (batch, batch_idx)
                if starts:
                    trainer._hook(batch_start, *args)
                module.__dict__["_current_fx_name"] = step_name
                if plain_forward:
                    out = step(*args)
                else:
                    with trainer.strategy.precision.forward_context():
                        out = step(*args)
                if ends:
                    trainer._hook(batch_end, out, *args)
                if loggers:  # (the metric dicts themselves are folded in when read, and below)
                    trainer._log_metrics(trainer._metrics.collect(on_step=True), step=seen[dl_idx])
                if not sanity:
                    seen[dl_idx] += 1
            trainer._metrics.collect(on_step=True)  # the last batch's step values stay in logged_metrics
            trainer._metrics.on_step = False
            outputs.append({} if sanity else trainer._metrics.collect(on_step=False))
            trainer._metrics.on_step = True
        results.dataloader_idx = None
        trainer._metrics.on_step = False
        trainer._hook(f"on_{kind}_epoch_end")
        trainer._metrics.collect(on_step=False)
        if not sanity:
            epoch_end = trainer._metrics.collect(on_step=False)
            for out in outputs:
                out.update(epoch_end)
            merged: dict[str, Any] = {}
            for out in outputs:
                merged.update(out)
            trainer._log_metrics(merged)
        trainer._hook(f"on_{kind}_end")
    if trainer._hooks_for(f"on_{kind}_model_train")[2] == "user":  # an override replaces the restore (as Lightning)
        trainer._module_hook(f"on_{kind}_model_train")
    else:
        _restore_modes(modes)
    if verbose and trainer.is_global_zero and not sanity:
        _print_results(outputs, kind)
    return outputs


def _print_results(outputs: list[dict[str, Any]], kind: str) -> None:
    if not any(outputs):
        return
    title = "Test metric" if kind == "test" else "Validate metric"
    for i, out in enumerate(outputs):
        if not out:
            continue
        header = f"{title}" + (f" (dataloader {i})" if len(outputs) > 1 else "")
        width = max([len(header), *map(len, out)]) + 2
        line = "─" * (width + 24)
        print(line)
        print(f"{header:>{width}}{'DataLoader ' + str(i):>24}")
        print(line)
        for key, value in sorted(out.items()):
            value = value.item() if isinstance(value, torch.Tensor) else value
            print(f"{key:>{width}}{value:>24.6g}" if isinstance(value, float) else f"{key:>{width}}{value!s:>24}")
        print(line)


def _predict_loop(trainer: Trainer, loaders: list[Any], limits: list[float], return_predictions: bool) -> list[Any]:
    module = trainer.lightning_module
    multi = len(loaders) > 1
    modes = _capture_modes(module)
    trainer._module_hook("on_predict_model_eval")
    all_predictions: list[list[Any]] = []
    with trainer._eval_context():
        trainer._hook("on_predict_start")
        trainer._hook("on_predict_epoch_start")
        for dl_idx, (loader, limit) in enumerate(zip(loaders, limits)):
            predictions: list[Any] = []
            move = trainer._batch_mover(dl_idx)
            for batch_idx, (batch, _) in enumerate(_with_last(iter(loader), limit)):
                batch = move(batch)
                args = (batch, batch_idx, dl_idx) if multi else (batch, batch_idx)
                trainer._hook("on_predict_batch_start", *args)
                module.__dict__["_current_fx_name"] = "predict_step"
                with trainer.strategy.precision.forward_context():
                    out = module.predict_step(*args)
                trainer._hook("on_predict_batch_end", out, *args)
                if return_predictions:
                    predictions.append(out)
            all_predictions.append(predictions)
        trainer._hook("on_predict_epoch_end")
        trainer._hook("on_predict_end")
    _restore_modes(modes)
    if not return_predictions:
        return []
    return all_predictions if multi else all_predictions[0]


def _flatten_loaders(loaders: Any) -> list[Any]:
    if loaders is None:
        return []
    if isinstance(loaders, dict):
        return list(loaders.values())
    if isinstance(loaders, (list, tuple)) and not isinstance(loaders, torch.utils.data.Dataset):
        return list(loaders)
    return [loaders]
