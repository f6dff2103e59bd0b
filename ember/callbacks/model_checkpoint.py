"""``ModelCheckpoint``: write checkpoints during ``fit`` and keep the best ``k`` of them.

When a checkpoint is due is decided by one of three triggers (at most one may be chosen):

* ``every_n_epochs`` (the default, ``1``): at the end of the training epoch, or after validation when
  validation does not run exactly once at the end of every epoch;
* ``every_n_train_steps``: after the training batch that brings ``trainer.global_step`` to a multiple of it;
* ``train_time_interval``: after the first training batch once that much wall-clock time has passed.

Which checkpoints are kept is decided by ``monitor``/``mode``/``save_top_k``; ``save_last`` additionally
maintains ``last.ckpt`` (refreshed alongside the regular checkpoints, as in Lightning 2.6). All file-system access goes through fsspec, so ``dirpath`` may be a remote URL
(``s3://...``, ``memory://...``) as well as a local folder.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import weakref
from copy import deepcopy
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union

import torch
from torch import Tensor

from ember.callbacks.callback import Callback
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_info, rank_zero_warn

if TYPE_CHECKING:
    from ember.module import LightningModule
    from ember.trainer.trainer import Trainer

_PATH = Union[str, Path]

# "{name}" or "{name:spec}" inside a filename template; the name may hold anything but braces and ":".
_TEMPLATE_FIELD = re.compile(r"\{([^{}:]+)(?::([^{}]*))?\}")


# --------------------------------------------------------------------------------------------------
# File-system helper: every read, listing, link and deletion the callback does goes through here.
# --------------------------------------------------------------------------------------------------
class _Files:
    """Tiny fsspec wrapper so local folders and remote URLs are handled the same way."""

    @staticmethod
    def fs(path: _PATH) -> Any:
        import fsspec.core  # imported on first use: keeps `import ember` fast

        fs, _ = fsspec.core.url_to_fs(str(path))
        return fs

    @staticmethod
    def is_local(path: _PATH) -> bool:
        import fsspec.utils

        return fsspec.utils.get_protocol(str(path)) == "file"

    @classmethod
    def exists(cls, path: _PATH) -> bool:
        return cls.fs(path).exists(str(path))

    @classmethod
    def is_nonempty_dir(cls, path: _PATH) -> bool:
        fs = cls.fs(path)
        return fs.isdir(str(path)) and len(fs.ls(str(path), detail=False)) > 0

    @classmethod
    def list_names(cls, path: _PATH) -> list[str]:
        """Base names of the entries of folder ``path`` (empty when it does not exist)."""
        fs = cls.fs(path)
        if not fs.isdir(str(path)):
            return []
        return [os.path.basename(str(p).rstrip("/")) for p in fs.ls(str(path), detail=False)]

    @classmethod
    def remove(cls, path: _PATH) -> None:
        fs = cls.fs(path)
        if fs.exists(str(path)):
            fs.rm(str(path), recursive=True)

    @classmethod
    def makedirs(cls, path: _PATH) -> None:
        cls.fs(path).makedirs(str(path), exist_ok=True)

    @classmethod
    def open(cls, path: _PATH, mode: str = "r") -> Any:
        return cls.fs(path).open(str(path), mode)

    @classmethod
    def link_or_copy(cls, target: str, link: str) -> None:
        """Make ``link`` point at ``target``: a relative symlink locally (a copy where symlinks fail),
        a copy on remote file systems."""
        if cls.is_local(target) and cls.is_local(link):
            if os.path.isdir(link) and not os.path.islink(link):
                shutil.rmtree(link)
            tmp = f"{link}.tmp-link"  # made under a temporary name, then renamed: "last" never goes missing
            if os.path.lexists(tmp):
                os.remove(tmp)
            try:
                os.symlink(os.path.relpath(target, os.path.dirname(link)), tmp)
            except OSError:
                if os.path.isdir(target):
                    shutil.copytree(target, link)
                    return
                shutil.copy(target, tmp)
            os.replace(tmp, link)
            return
        cls.remove(link)
        cls.fs(target).copy(str(target), str(link), recursive=True)


def _normalize_local(path: _PATH) -> str:
    text = str(path)
    if text.startswith("file://"):
        text = text[len("file://"):]
    return os.path.realpath(os.path.expanduser(text))


class ModelCheckpoint(Callback):
    """Save checkpoints periodically during ``fit``; optionally keep only the best ``save_top_k``.

    Args:
        dirpath: folder (or fsspec URL) for the checkpoints. ``None`` means: resolved at ``setup`` to
            ``<save_dir>/<name>/<version>/checkpoints`` of the first logger, or
            ``<default_root_dir>/checkpoints`` without loggers.
        filename: name template without extension, e.g. ``"{epoch}-{val_loss:.2f}"``; the default is
            ``"{epoch}-{step}"``, giving ``epoch=3-step=120.ckpt``.
        monitor: metric (a key of ``trainer.callback_metrics``) that ranks checkpoints; ``None`` keeps the
            most recent one(s).
        verbose: log a line for every save decision.
        save_last: ``True`` also writes ``last.ckpt`` whenever a regular checkpoint is written (on every
            step/time trigger; at epoch/validation ends only if a checkpoint was saved at that step), and
            at the end of training if nothing was ever saved. ``"link"`` (local folders only) makes it a
            relative symlink to the newest checkpoint written instead of a second copy.
        save_top_k: how many of the best checkpoints to keep; ``-1`` keeps all, ``0`` saves none (except
            ``last``). Without ``monitor`` only ``-1``, ``0`` and ``1`` make sense.
        save_weights_only: passed on to ``trainer.save_checkpoint``.
        mode: ``"min"`` or ``"max"``: whether a lower or a higher ``monitor`` value is better.
        auto_insert_metric_name: turn ``{val_loss:.2f}`` into ``val_loss=0.12`` rather than ``0.12``.
        every_n_train_steps: save after every this many optimizer steps (``0``/``None``: never).
        train_time_interval: save when at least this ``datetime.timedelta`` passed since the last save.
        every_n_epochs: save every this many epochs (``0``: never). Defaults to ``1`` when no trigger
            is given.
        save_on_train_epoch_end: save at the end of the training epoch (``True``) or after validation
            (``False``); ``None`` picks whichever comes last in an epoch.
        enable_version_counter: when a file name is taken, append ``-v1``, ``-v2``, ... instead of
            overwriting.
    """

    CHECKPOINT_JOIN_CHAR = "-"
    CHECKPOINT_EQUALS_CHAR = "="
    CHECKPOINT_NAME_LAST = "last"
    FILE_EXTENSION = ".ckpt"
    STARTING_VERSION = 1

    def __init__(
        self,
        dirpath: _PATH | None = None,
        filename: str | None = None,
        monitor: str | None = None,
        verbose: bool = False,
        save_last: bool | Literal["link"] | None = None,
        save_top_k: int = 1,
        save_weights_only: bool = False,
        mode: str = "min",
        auto_insert_metric_name: bool = True,
        every_n_train_steps: int | None = None,
        train_time_interval: timedelta | None = None,
        every_n_epochs: int | None = None,
        save_on_train_epoch_end: bool | None = None,
        enable_version_counter: bool = True,
    ) -> None:
        super().__init__()
        self.monitor = monitor
        self.verbose = verbose
        self.save_last = save_last
        self.save_top_k = save_top_k
        self.save_weights_only = save_weights_only
        self.auto_insert_metric_name = auto_insert_metric_name
        self._save_on_train_epoch_end = save_on_train_epoch_end
        self._enable_version_counter = enable_version_counter

        # bookkeeping
        self._last_global_step_saved = 0  # nothing is ever saved at step 0
        self._last_time_checked: float | None = None
        self._last_checkpoint_saved = ""
        self._validation_has_run = False
        # a step/time-triggered save found `monitor` missing: do it after the next validation instead
        self._defer_save_until_validation = False
        self._warned: set[str] = set()
        self.current_score: Tensor | None = None
        self.best_k_models: dict[str, Tensor] = {}
        self.kth_best_model_path = ""
        self.best_model_score: Tensor | None = None
        self.best_model_path = ""
        self.last_model_path = ""

        self._check_mode(mode)
        self.mode = mode
        self.kth_value: Tensor = torch.tensor(float("inf") if mode == "min" else float("-inf"))

        self._check_trigger_types(every_n_train_steps, every_n_epochs, train_time_interval)
        if every_n_train_steps is None and every_n_epochs is None and train_time_interval is None:
            every_n_epochs, every_n_train_steps = 1, 0
        self._every_n_epochs: int = every_n_epochs or 0
        self._every_n_train_steps: int = every_n_train_steps or 0
        self._train_time_interval: timedelta | None = train_time_interval
        self._validate_configuration()

        if dirpath is not None and _Files.is_local(dirpath):
            dirpath = _normalize_local(dirpath)
        elif dirpath is not None:
            dirpath = str(dirpath)
        self.dirpath: str | None = dirpath
        self.filename = filename

    # ------------------------------------------------------------------------------------------
    # argument checks
    # ------------------------------------------------------------------------------------------
    @staticmethod
    def _check_mode(mode: str) -> None:
        if mode not in ("min", "max"):
            raise MisconfigurationException(
                f"ModelCheckpoint(mode={mode!r}) is not supported: `mode` must be 'min' (lower "
                f"`monitor` values are better) or 'max' (higher values are better)."
            )

    @staticmethod
    def _check_trigger_types(
        every_n_train_steps: Any, every_n_epochs: Any, train_time_interval: Any
    ) -> None:
        for name, value in (("every_n_train_steps", every_n_train_steps), ("every_n_epochs", every_n_epochs)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise MisconfigurationException(
                    f"ModelCheckpoint({name}={value!r}) is not supported: `{name}` must be an int >= 0 "
                    f"(0 disables this trigger) or None."
                )
            if value < 0:
                raise MisconfigurationException(
                    f"ModelCheckpoint({name}={value}) is not supported: `{name}` must be >= 0 "
                    f"(0 disables this trigger) or None."
                )
        if train_time_interval is not None and not isinstance(train_time_interval, timedelta):
            raise MisconfigurationException(
                f"ModelCheckpoint(train_time_interval={train_time_interval!r}) is not supported: "
                f"`train_time_interval` must be a `datetime.timedelta`, e.g. timedelta(minutes=30), or None."
            )

    def _validate_configuration(self) -> None:
        top_k = self.save_top_k
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < -1:
            raise MisconfigurationException(
                f"ModelCheckpoint(save_top_k={top_k!r}) is not supported: `save_top_k` must be -1 "
                f"(keep every checkpoint), 0 (save none except `last`) or a positive int (keep that many "
                f"best checkpoints)."
            )
        triggers = [
            self._every_n_train_steps >= 1,
            self._every_n_epochs >= 1,
            self._train_time_interval is not None,
        ]
        if sum(triggers) > 1:
            raise MisconfigurationException(
                f"ModelCheckpoint(every_n_train_steps={self._every_n_train_steps}, "
                f"every_n_epochs={self._every_n_epochs}, train_time_interval={self._train_time_interval}) "
                f"is not supported: `every_n_train_steps`, `every_n_epochs` and `train_time_interval` are "
                f"mutually exclusive; set only one of them."
            )
        if self.monitor is None and top_k not in (-1, 0, 1):
            raise MisconfigurationException(
                f"ModelCheckpoint(save_top_k={top_k}, monitor=None) is not a valid configuration: without "
                f"a `monitor` there is no quantity to rank checkpoints by. Pass `monitor='<logged metric>'`, "
                f"or use save_top_k=1 (keep the newest), -1 (keep all) or 0 (none)."
            )
        if self.save_last not in (None, True, False, "link"):
            raise MisconfigurationException(
                f"ModelCheckpoint(save_last={self.save_last!r}) is not supported: `save_last` must be "
                f"True, False, None or 'link'."
            )

    # ------------------------------------------------------------------------------------------
    # public properties / state
    # ------------------------------------------------------------------------------------------
    @property
    def state_key(self) -> str:
        return self._generate_state_key(
            monitor=self.monitor,
            mode=self.mode,
            every_n_train_steps=self._every_n_train_steps,
            every_n_epochs=self._every_n_epochs,
            train_time_interval=self._train_time_interval,
        )

    @property
    def every_n_epochs(self) -> int:
        return self._every_n_epochs

    def state_dict(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "best_model_score": self.best_model_score,
            "best_model_path": self.best_model_path,
            "current_score": self.current_score,
            "dirpath": self.dirpath,
            "best_k_models": self.best_k_models,
            "kth_best_model_path": self.kth_best_model_path,
            "kth_value": self.kth_value,
            "last_model_path": self.last_model_path,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved_dirpath = state_dict.get("dirpath", self.dirpath)
        if saved_dirpath == self.dirpath:
            self.best_model_score = state_dict["best_model_score"]
            self.kth_best_model_path = state_dict.get("kth_best_model_path", self.kth_best_model_path)
            self.kth_value = state_dict.get("kth_value", self.kth_value)
            self.best_k_models = state_dict.get("best_k_models", self.best_k_models)
            self.last_model_path = state_dict.get("last_model_path", self.last_model_path)
        else:
            rank_zero_warn(
                f"ModelCheckpoint: the checkpoint folder changed from {saved_dirpath!r} to {self.dirpath!r}; "
                f"only `best_model_path` is restored (`best_model_score`, `best_k_models`, "
                f"`kth_best_model_path`, `kth_value` and `last_model_path` start afresh)."
            )
        self.best_model_path = state_dict["best_model_path"]

    def to_yaml(self, filepath: _PATH | None = None) -> None:
        """Write ``best_k_models`` (path -> score) as YAML, by default to ``<dirpath>/best_k_models.yaml``."""
        scores = {path: float(score.item()) if isinstance(score, Tensor) else float(score)
                  for path, score in self.best_k_models.items()}
        if filepath is None:
            if not self.dirpath:
                raise MisconfigurationException(
                    "ModelCheckpoint.to_yaml() needs a `filepath` when the callback has no `dirpath` yet."
                )
            filepath = os.path.join(self.dirpath, "best_k_models.yaml")
        _Files.makedirs(os.path.dirname(str(filepath)) or ".")
        with _Files.open(filepath, "w") as fp:
            import yaml

            yaml.dump(scores, fp)

    # ------------------------------------------------------------------------------------------
    # hooks
    # ------------------------------------------------------------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        dirpath = trainer.strategy.broadcast(self._resolve_dirpath(trainer))
        self.dirpath = dirpath
        if stage == "fit":
            self._validation_has_run = False
            if trainer.is_global_zero:
                self._warn_if_dir_not_empty(dirpath)
        if self.save_last == "link" and not _Files.is_local(dirpath):
            raise ValueError(
                f"ModelCheckpoint(save_last='link') needs a local folder (symlinks), but dirpath={dirpath!r}. "
                f"Use save_last=True for remote file systems."
            )

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._last_time_checked = time.monotonic()

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._every_n_train_steps < 1 and self._train_time_interval is None:
            return  # saves only at epoch or validation end: nothing to do per batch
        if self._should_skip_saving_checkpoint(trainer):
            return
        step_due = self._every_n_train_steps >= 1 and trainer.global_step % self._every_n_train_steps == 0
        time_due = False
        now = time.monotonic()
        if self._train_time_interval is not None:
            previous = self._last_time_checked
            time_due = previous is not None and (now - previous) >= self._train_time_interval.total_seconds()
            # every rank has to agree, or ranks would disagree about entering the (collective) save
            time_due = trainer.strategy.broadcast(time_due)
        if not (step_due or time_due):
            return
        if time_due:
            self._last_time_checked = now
        candidates = self._monitor_candidates(trainer)
        if self.monitor is not None and self.monitor not in candidates:
            # typically a validation metric that has not been produced yet: save (top-k and last)
            # after the next validation run instead, when that run is where this callback saves
            self._defer_save_until_validation = True
            return
        self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._should_skip_saving_checkpoint(trainer) or not self._should_save_on_train_epoch_end(trainer):
            return
        self._save_epoch_checkpoints(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._validation_has_run = True
        if self._should_skip_saving_checkpoint(trainer) or self._should_save_on_train_epoch_end(trainer):
            return
        if self._defer_save_until_validation:
            self._defer_save_until_validation = False
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)
            return
        self._save_epoch_checkpoints(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # `last` is normally refreshed together with a regular checkpoint; make sure it exists at the
        # end of training even when no regular checkpoint was ever written (e.g. save_top_k=0)
        if not self.save_last or self._last_checkpoint_saved:
            return
        if bool(trainer.fast_dev_run) or trainer.state.fn != "fit":
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    # ------------------------------------------------------------------------------------------
    # decisions
    # ------------------------------------------------------------------------------------------
    def _save_epoch_checkpoints(self, trainer: Trainer) -> None:
        candidates = self._monitor_candidates(trainer)
        if self._every_n_epochs >= 1 and (trainer.current_epoch + 1) % self._every_n_epochs == 0:
            self._save_topk_checkpoint(trainer, candidates)
        # `last` follows the regular checkpoints: refresh it only when one was written at this step
        # (or, for a link, whenever there is a checkpoint to point at)
        saved_now = self._last_global_step_saved == trainer.global_step
        if saved_now or (self.save_last == "link" and self._last_checkpoint_saved):
            self._save_last_checkpoint(trainer, candidates)

    def _should_skip_saving_checkpoint(self, trainer: Trainer) -> bool:
        return (
            bool(trainer.fast_dev_run)
            or trainer.state.fn != "fit"
            or trainer.sanity_checking
            or self._last_global_step_saved == trainer.global_step
        )

    def _should_save_on_train_epoch_end(self, trainer: Trainer) -> bool:
        if self._save_on_train_epoch_end is not None:
            return self._save_on_train_epoch_end
        # validation is not run at the end of every epoch: the epoch end comes after it is due
        if trainer.check_val_every_n_epoch != 1:
            return False
        num_val_batches = trainer.num_val_batches
        total = sum(num_val_batches) if isinstance(num_val_batches, (list, tuple)) else num_val_batches
        if total == 0:  # no validation at all
            return True
        # validation runs once, at the end of the epoch: save after it, at the epoch end
        return trainer.val_check_interval == 1.0

    def _monitor_candidates(self, trainer: Trainer) -> dict[str, Any]:
        candidates: dict[str, Any] = {}
        for key, value in deepcopy(dict(trainer.callback_metrics)).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = torch.tensor(value)
            candidates[key] = value
        epoch = candidates.get("epoch")
        candidates["epoch"] = epoch.int() if isinstance(epoch, Tensor) else torch.tensor(trainer.current_epoch)
        step = candidates.get("step")
        candidates["step"] = step.int() if isinstance(step, Tensor) else torch.tensor(trainer.global_step)
        return candidates

    def check_monitor_top_k(self, trainer: Trainer, current: Tensor | None = None) -> bool:
        """Whether a checkpoint scoring ``current`` belongs among the best ``save_top_k``."""
        if current is None:
            return False
        if self.save_top_k == -1 or len(self.best_k_models) < self.save_top_k:
            return True
        better = torch.lt if self.mode == "min" else torch.gt
        kth = self.best_k_models[self.kth_best_model_path]
        decision = bool(better(current, kth.to(current.device) if isinstance(kth, Tensor) else kth))
        return bool(trainer.strategy.reduce_boolean_decision(decision))

    # ------------------------------------------------------------------------------------------
    # saving
    # ------------------------------------------------------------------------------------------
    def _save_topk_checkpoint(self, trainer: Trainer, candidates: dict[str, Any]) -> None:
        if self.save_top_k == 0:
            return
        if self.monitor is None:
            self._save_latest_checkpoint(trainer, candidates)
            return
        if self.monitor not in candidates:
            message = (
                f"ModelCheckpoint(monitor={self.monitor!r}) could not find {self.monitor!r} among the "
                f"logged metrics; available: {list(candidates)}. Log it with "
                f"`self.log({self.monitor!r}, value)` in the LightningModule, or change `monitor`."
            )
            if self._validation_has_run:
                raise MisconfigurationException(message)
            # validation may not have produced the metric yet: skip this save, say so once
            if message not in self._warned:
                self._warned.add(message)
                rank_zero_warn(message)
            return
        current = candidates[self.monitor]
        if not isinstance(current, Tensor):
            current = torch.tensor(current)
        if self.check_monitor_top_k(trainer, current):
            self._update_best_and_save(current, trainer, candidates)
        elif self.verbose:
            rank_zero_info(
                f"Epoch {int(candidates['epoch'])}, global step {int(candidates['step'])}: "
                f"{self.monitor!r} = {float(current):0.5f} is not among the best {self.save_top_k}; not saved."
            )

    def _save_latest_checkpoint(self, trainer: Trainer, candidates: dict[str, Any]) -> None:
        """``monitor=None``: every trigger saves; with save_top_k=1 only the newest file is kept."""
        filepath = self._unique_filepath(candidates, trainer, replaceable=self.best_model_path)
        previous, self.best_model_path = self.best_model_path, filepath
        if self.verbose:
            rank_zero_info(
                f"Epoch {int(candidates['epoch'])}, global step {int(candidates['step'])}: "
                f"saving checkpoint to {filepath!r}"
            )
        self._save_checkpoint(trainer, filepath)
        if self.save_top_k == 1 and previous and self._should_remove_checkpoint(trainer, previous, filepath):
            self._remove_checkpoint(trainer, previous)

    def _update_best_and_save(self, current: Tensor, trainer: Trainer, candidates: dict[str, Any]) -> None:
        k = len(self.best_k_models) + 1 if self.save_top_k == -1 else self.save_top_k

        evicted = None
        if len(self.best_k_models) == k and k > 0:
            evicted = self.kth_best_model_path
            self.best_k_models.pop(evicted)

        if torch.isnan(current).any():  # a NaN score ranks as the worst possible
            current = torch.tensor(float("inf") if self.mode == "min" else float("-inf"), device=current.device)

        filepath = self._unique_filepath(candidates, trainer, replaceable=evicted)
        self.current_score = current
        self.best_k_models[filepath] = current

        worst, best = (max, min) if self.mode == "min" else (min, max)
        if len(self.best_k_models) == k:
            self.kth_best_model_path = worst(self.best_k_models, key=self.best_k_models.get)  # type: ignore[arg-type]
            self.kth_value = self.best_k_models[self.kth_best_model_path]
        self.best_model_path = best(self.best_k_models, key=self.best_k_models.get)  # type: ignore[arg-type]
        self.best_model_score = self.best_k_models[self.best_model_path]

        if self.verbose:
            rank_zero_info(
                f"Epoch {int(candidates['epoch'])}, global step {int(candidates['step'])}: "
                f"{self.monitor!r} reached {float(current):0.5f} (best {float(self.best_model_score):0.5f}), "
                f"saving checkpoint to {filepath!r} as top {k}"
            )
        # write the new file first, then drop the one it displaced
        self._save_checkpoint(trainer, filepath)
        if evicted and self._should_remove_checkpoint(trainer, evicted, filepath):
            self._remove_checkpoint(trainer, evicted)

    def _save_last_checkpoint(self, trainer: Trainer, candidates: dict[str, Any]) -> None:
        if not self.save_last:
            return
        filepath = self.format_checkpoint_name(candidates, self.CHECKPOINT_NAME_LAST)
        if self._enable_version_counter:
            version = self.STARTING_VERSION
            while filepath != self.last_model_path and self.file_exists(filepath, trainer):
                filepath = self.format_checkpoint_name(candidates, self.CHECKPOINT_NAME_LAST, ver=version)
                version += 1
        previous, self.last_model_path = self.last_model_path, filepath
        if self.save_last == "link" and self._last_checkpoint_saved and self.save_top_k != 0:
            self._link_checkpoint(trainer, self._last_checkpoint_saved, filepath)
        else:
            self._save_checkpoint(trainer, filepath)
        if previous and self._should_remove_checkpoint(trainer, previous, filepath):
            self._remove_checkpoint(trainer, previous)

    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        trainer.save_checkpoint(filepath, self.save_weights_only)
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(weakref.proxy(self))

    def _link_checkpoint(self, trainer: Trainer, filepath: str, linkpath: str) -> None:
        if trainer.is_global_zero:
            _Files.link_or_copy(filepath, linkpath)
        trainer.strategy.barrier()

    def _should_remove_checkpoint(self, trainer: Trainer, previous: str, current: str) -> bool:
        """Delete ``previous`` only if it is not ``current``, not the checkpoint training resumed from,
        and (for local files) lives inside this callback's ``dirpath``."""
        if previous == current:
            return False
        if not _Files.is_local(previous):
            return True
        previous_path = Path(previous).absolute()
        resumed_from = getattr(trainer, "ckpt_path", None)
        if resumed_from is not None and _Files.is_local(resumed_from):
            if Path(resumed_from).absolute() == previous_path:
                return False
        dirpath = Path(self.dirpath if self.dirpath else ".").absolute()
        return dirpath in previous_path.parents

    def _remove_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        if trainer.is_global_zero:
            _Files.remove(filepath)

    def file_exists(self, filepath: _PATH, trainer: Trainer) -> bool:
        """Whether ``filepath`` exists, as decided on rank 0 (so all ranks pick the same name)."""
        return bool(trainer.strategy.broadcast(_Files.exists(filepath)))

    # ------------------------------------------------------------------------------------------
    # names
    # ------------------------------------------------------------------------------------------
    def _format_checkpoint_name(
        self,
        filename: str | None,
        metrics: dict[str, Any],
        prefix: str | None = None,
        auto_insert_metric_name: bool = True,
    ) -> str:
        """Fill the ``{name}`` / ``{name:spec}`` fields of ``filename`` from ``metrics``.

        Names may contain dots and slashes (``{val/loss}``); a name missing from ``metrics`` is filled
        with ``0``. With ``auto_insert_metric_name`` each field becomes ``name=value``.
        """
        if not filename:
            filename = "{epoch}" + self.CHECKPOINT_JOIN_CHAR + "{step}"

        def fill(match: re.Match) -> str:
            name, spec = match.group(1), match.group(2) or ""
            value = metrics.get(name, torch.tensor(0))
            text = format(value, spec)
            return f"{name}{self.CHECKPOINT_EQUALS_CHAR}{text}" if auto_insert_metric_name else text

        name = _TEMPLATE_FIELD.sub(fill, filename)
        if prefix:
            name = self.CHECKPOINT_JOIN_CHAR.join([prefix, name])
        return name

    def format_checkpoint_name(
        self,
        metrics: dict[str, Any],
        filename: str | None = None,
        ver: int | None = None,
        prefix: str | None = None,
    ) -> str:
        """Full path (or bare file name while ``dirpath`` is unset) of a checkpoint for ``metrics``.

        Example: with ``filename="{epoch}-{val_loss:.2f}"`` and metrics ``epoch=3, val_loss=0.1234``
        this gives ``<dirpath>/epoch=3-val_loss=0.12.ckpt``; ``ver=1`` gives ``...-v1.ckpt``.
        """
        name = self._format_checkpoint_name(
            filename or self.filename, metrics, prefix=prefix,
            auto_insert_metric_name=self.auto_insert_metric_name,
        )
        if ver is not None:
            name = self.CHECKPOINT_JOIN_CHAR.join((name, f"v{ver}"))
        name = f"{name}{self.FILE_EXTENSION}"
        return os.path.join(self.dirpath, name) if self.dirpath else name

    def _unique_filepath(self, candidates: dict[str, Any], trainer: Trainer, replaceable: str | None = None) -> str:
        """The formatted path, with ``-vN`` appended while it names an existing file (other than
        ``replaceable``, a file this save is allowed to overwrite)."""
        filepath = self.format_checkpoint_name(candidates)
        if self._enable_version_counter:
            version = self.STARTING_VERSION
            while filepath != replaceable and self.file_exists(filepath, trainer):
                filepath = self.format_checkpoint_name(candidates, ver=version)
                version += 1
        return filepath

    # kept under Lightning's name for code that calls it
    _get_metric_interpolated_filepath_name = _unique_filepath

    # ------------------------------------------------------------------------------------------
    # folders
    # ------------------------------------------------------------------------------------------
    def _resolve_dirpath(self, trainer: Trainer) -> str:
        if self.dirpath is not None:
            return self.dirpath
        if len(trainer.loggers) > 0:
            logger = trainer.loggers[0]
            save_dir = logger.save_dir if logger.save_dir is not None else trainer.default_root_dir
            version = logger.version
            version = version if isinstance(version, str) else f"version_{version}"
            return os.path.join(str(save_dir), str(logger.name), version, "checkpoints")
        return os.path.join(str(trainer.default_root_dir), "checkpoints")

    def _warn_if_dir_not_empty(self, dirpath: str) -> None:
        if self.save_top_k != 0 and _Files.is_nonempty_dir(dirpath):
            rank_zero_warn(f"Checkpoint directory {dirpath} exists and is not empty.")

    def _find_last_checkpoints(self, trainer: Trainer) -> set[str]:
        """Paths of the ``last*`` checkpoints in ``dirpath`` (what ``ckpt_path="last"`` resumes from)."""
        if not self.dirpath:
            return set()
        # the "last" name may itself be a template ("{epoch}-last"): its fields match anything
        pieces = _TEMPLATE_FIELD.split(self.CHECKPOINT_NAME_LAST)
        literal = [re.escape(text) for text in pieces[::3]]  # split() yields text, name, spec, text...
        pattern = re.compile(
            ".*".join(literal)
            + f"({re.escape(self.CHECKPOINT_JOIN_CHAR)}v[0-9]+)?{re.escape(self.FILE_EXTENSION)}"
        )
        return {
            os.path.join(self.dirpath, name)
            for name in _Files.list_names(self.dirpath)
            if pattern.fullmatch(name)
        }

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(dirpath={self.dirpath!r}, monitor={self.monitor!r}, "
            f"mode={self.mode!r}, save_top_k={self.save_top_k}, save_last={self.save_last!r})"
        )
