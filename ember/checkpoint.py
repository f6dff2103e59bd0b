"""Checkpoints: the Lightning-format dict, atomic saving through fsspec, and safe loading."""

from __future__ import annotations

import inspect
import os
import pickle
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ember.trainer.loops import _resume_state
from ember.utilities.exceptions import MisconfigurationException

if TYPE_CHECKING:
    from ember.module import LightningModule
    from ember.trainer.trainer import Trainer

LIGHTNING_FORMAT_VERSION = "2.6.0"  # the Lightning release whose checkpoint layout ember writes


def _fs_and_path(path: str | Path) -> tuple[Any, str]:
    import fsspec.core

    return fsspec.core.url_to_fs(str(path))


def _is_local(fs: Any) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def _atomic_save(obj: Any, path: str | Path) -> None:
    """Write ``obj`` with ``torch.save`` so that readers see the old file or the complete new one."""
    fs, fspath = _fs_and_path(path)
    parent = os.path.dirname(fspath)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    if not _is_local(fs):
        with fs.open(fspath, "wb") as f:
            torch.save(obj, f)
        return
    # the temporary name does not end in .ckpt, so that nothing mistakes a half-written file for a checkpoint
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(fspath)}.", suffix=".tmp", dir=parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, fspath)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _load_checkpoint(path: str | Path, map_location: Any = "cpu", weights_only: bool | None = None) -> dict:
    """Load a checkpoint dict; refuses pickled code unless ``weights_only=False``."""
    fs, fspath = _fs_and_path(path)
    if not fs.exists(fspath):
        raise FileNotFoundError(f"Checkpoint file not found: {str(path)!r}.")
    safe = True if weights_only is None else weights_only
    try:
        with fs.open(fspath, "rb") as f:
            checkpoint = torch.load(f, map_location=map_location, weights_only=safe)
    except pickle.UnpicklingError as err:
        if safe and "weights_only" in str(err):
            raise pickle.UnpicklingError(
                f"Refusing to load {str(path)!r} with weights_only=True: it contains Python objects that would run "
                f"code when unpickled ({str(err).splitlines()[0]}). If you trust the file, pass weights_only=False."
            ) from err
        raise ValueError(f"{str(path)!r} is not a valid checkpoint (corrupt or truncated): {err}") from err
    except (RuntimeError, EOFError, OSError, KeyError, ValueError, IndexError) as err:  # what garbage bytes raise
        raise ValueError(f"{str(path)!r} is not a valid checkpoint (corrupt or truncated): {err}") from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{str(path)!r} is not a Lightning/ember checkpoint: it has no 'state_dict' entry.")
    return checkpoint


def _plain(value: Any) -> Any:
    """Hyperparameters as plain containers, so that ``weights_only`` loading accepts them."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value) if type(value) in (list, tuple) else list(map(_plain, value))
    return value


def _progress_counters(n: int) -> dict[str, int]:
    return {"ready": n, "completed": n, "started": n, "processed": n}


def _lightning_loops(trainer: Trainer) -> dict[str, Any]:
    """The ``loops`` entry in Lightning's layout, plus ember's own exact-resume state."""
    p = trainer._progress
    epoch_done = int(p.epoch_finished)
    batch_progress = {"total": _progress_counters(p.total_batch_idx), "current": _progress_counters(p.batch_idx),
                      "is_last_batch": p.epoch_finished}
    steps = {"total": {"ready": p.global_step, "completed": p.global_step},
             "current": {"ready": p.global_step, "completed": p.global_step}}
    empty_eval = {"state_dict": {}, "batch_progress": {"total": _progress_counters(0),
                                                       "current": _progress_counters(0), "is_last_batch": False}}
    return {
        "fit_loop": {
            "state_dict": {"ember": _resume_state(trainer)},
            "epoch_loop.state_dict": {"_batches_that_stepped": p.batches_that_stepped},
            "epoch_loop.batch_progress": batch_progress,
            "epoch_loop.scheduler_progress": {"total": {"ready": 0, "completed": 0},
                                              "current": {"ready": 0, "completed": 0}},
            "epoch_loop.automatic_optimization.state_dict": {},
            "epoch_loop.automatic_optimization.optim_progress": {
                "optimizer": {"step": steps, "zero_grad": {"total": _progress_counters(p.global_step),
                                                           "current": _progress_counters(p.global_step)}}},
            "epoch_loop.manual_optimization.state_dict": {},
            "epoch_loop.manual_optimization.optim_step_progress": steps,
            "epoch_loop.val_loop.state_dict": {},
            "epoch_loop.val_loop.batch_progress": empty_eval["batch_progress"],
            "epoch_progress": {
                "total": {"ready": p.epoch + 1, "completed": p.epoch + epoch_done, "started": p.epoch + 1,
                          "processed": p.epoch + 1},
                "current": {"ready": p.epoch + 1, "completed": p.epoch + epoch_done, "started": p.epoch + 1,
                            "processed": p.epoch + 1}},
        },
        "validate_loop": empty_eval, "test_loop": empty_eval,
        "predict_loop": {"state_dict": {}, "batch_progress": {"total": _progress_counters(0),
                                                              "current": _progress_counters(0)}},
    }


def _dump_checkpoint(trainer: Trainer, weights_only: bool = False) -> dict[str, Any]:
    """Build the checkpoint dict in Lightning's layout."""
    module = trainer.lightning_module
    checkpoint: dict[str, Any] = {
        "epoch": trainer.current_epoch,
        "global_step": trainer.global_step,
        "pytorch-lightning_version": LIGHTNING_FORMAT_VERSION,
        "state_dict": module.state_dict(),
        "loops": _lightning_loops(trainer),
    }
    if not weights_only:
        states = {cb.state_key: cb.state_dict() for cb in trainer.callbacks}
        checkpoint["callbacks"] = {key: state for key, state in states.items() if state}
        checkpoint["optimizer_states"] = [opt.state_dict() for opt in trainer.optimizers]
        checkpoint["lr_schedulers"] = [config.scheduler.state_dict() for config in trainer.lr_scheduler_configs]
        precision_state = trainer.strategy.precision.state_dict()
        if precision_state:
            checkpoint[type(trainer.strategy.precision).__name__] = precision_state
    if module.hparams:
        checkpoint["hparams_name"] = "kwargs"
        checkpoint["hyper_parameters"] = _plain(dict(module.hparams))
    datamodule = trainer.datamodule
    if datamodule is not None:
        if datamodule.hparams:
            checkpoint["datamodule_hparams_name"] = "kwargs"
            checkpoint["datamodule_hyper_parameters"] = _plain(dict(datamodule.hparams))
        state = datamodule.state_dict()
        if state:
            checkpoint[type(datamodule).__qualname__] = state
    if not weights_only:
        for cb in trainer.callbacks:
            cb.on_save_checkpoint(trainer, module, checkpoint)
    module.on_save_checkpoint(checkpoint)
    return checkpoint


def _load_module_state(module: LightningModule, state_dict: dict[str, Any], strict: bool, source: str) -> None:
    missing, unexpected = module.load_state_dict(state_dict, strict=False)
    if strict and (missing or unexpected):
        raise RuntimeError(f"The weights in {source} do not match {type(module).__name__}: missing keys "
                           f"{list(missing)}, unexpected keys {list(unexpected)}. Check that the model matches the "
                           "checkpoint, or load with strict=False.")


def _module_from_checkpoint(cls: type[LightningModule], checkpoint: dict[str, Any], hparams_file: Any,
                            strict: bool | None, **kwargs: Any) -> LightningModule:
    hparams = dict(checkpoint.get("hyper_parameters", {}))
    if hparams_file is not None:
        import yaml

        fs, fspath = _fs_and_path(hparams_file)
        with fs.open(fspath, "r") as f:
            hparams = dict(yaml.safe_load(f) or {})
    hparams.update(kwargs)
    params = inspect.signature(cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        hparams = {k: v for k, v in hparams.items() if k in params}
    module = cls(**hparams)
    module.on_load_checkpoint(checkpoint)
    _load_module_state(module, checkpoint["state_dict"], module.strict_loading if strict is None else strict,
                       "the checkpoint")
    return module


def _restore_training_state(trainer: Trainer, checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """Restore optimizers, schedulers, precision scaler and loop progress; return ember's resume state."""
    if "optimizer_states" not in checkpoint:
        raise MisconfigurationException(
            "The checkpoint was saved with weights_only=True and holds no optimizer or loop state, so fit cannot "
            "resume from it; load the weights with LightningModule.load_from_checkpoint and start a new fit.")
    for opt, state in zip(trainer.optimizers, checkpoint["optimizer_states"]):
        trainer.strategy.load_optimizer_state(opt, state)
    for config, state in zip(trainer.lr_scheduler_configs, checkpoint.get("lr_schedulers", [])):
        config.scheduler.load_state_dict(state)
    trainer.strategy.precision.load_state_dict(checkpoint.get(type(trainer.strategy.precision).__name__, {}))
    trainer._progress.load_checkpoint(checkpoint)
    return checkpoint["loops"]["fit_loop"]["state_dict"].get("ember")
