"""``WandbLogger``: metrics, hyperparameters (the run config), media and checkpoints to Weights & Biases.

``wandb`` is imported when the run is first used, never by ``import ember``. ``offline=True`` (or
``WANDB_MODE=offline``) writes the run under ``save_dir/wandb/offline-run-*`` for a later ``wandb sync``.
"""

from __future__ import annotations

import os
from argparse import Namespace
from pathlib import Path
from typing import Any, Literal

from ember.loggers._utils import _require, _scan_checkpoints
from ember.loggers.logger import Logger, _add_prefix, _convert_params, _scalar, _to_plain, rank_zero_experiment
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_only, rank_zero_warn

__all__ = ["WandbLogger"]


class WandbLogger(Logger):
    """Log to a Weights & Biases run.

    Args:
        name: the run's display name.
        save_dir: folder under which wandb writes its ``wandb/`` folder (``dir`` is an alias).
        version: id of the run, to resume it (``id`` is an alias).
        offline: write the run locally (``wandb sync`` uploads it later).
        anonymous: allow anonymous logging.
        project: the project; default ``$WANDB_PROJECT`` or ``"lightning_logs"``.
        log_model: upload ModelCheckpoint's checkpoints as ``model`` artifacts: ``"all"`` as each is saved,
            ``True`` when training ends (as each is saved when ``save_top_k == -1``), ``False`` never.
        prefix: prepended to every metric name as ``"{prefix}-{name}"``.
        experiment: an existing ``wandb`` run to log into.
        checkpoint_name: the artifact name for checkpoints (default ``model-<run id>``).
        add_file_policy: ``"mutable"`` copies a checkpoint before upload, ``"immutable"`` does not.
        **kwargs: passed to ``wandb.init`` (``entity``, ``group``, ``tags``, ``config``, ``mode``, ...).
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        name: str | None = None,
        save_dir: str | os.PathLike = ".",
        version: str | None = None,
        offline: bool = False,
        dir: str | os.PathLike | None = None,
        id: str | None = None,
        anonymous: bool | None = None,
        project: str | None = None,
        log_model: bool | Literal["all"] = False,
        experiment: Any = None,
        prefix: str = "",
        checkpoint_name: str | None = None,
        add_file_policy: Literal["mutable", "immutable"] = "mutable",
        **kwargs: Any,
    ) -> None:
        _require("wandb", "WandbLogger", "wandb")
        if offline and log_model:
            raise MisconfigurationException(f"WandbLogger(offline=True, log_model={log_model!r}) cannot work: "
                                            "checkpoints cannot be uploaded offline; set offline=False or "
                                            "log_model=False.")
        super().__init__()
        if dir is not None and (save_dir is None or os.fspath(save_dir) == "."):
            save_dir = dir  # `dir` is wandb's own name for the folder
        self._offline = offline
        self._log_model = log_model
        self._prefix = prefix
        self._experiment = experiment
        self._logged_model_time: dict[str, float] = {}
        self._checkpoint_callbacks: dict[int, Any] = {}
        self._checkpoint_name = checkpoint_name
        self.add_file_policy = add_file_policy
        self._wandb_init: dict[str, Any] = {
            "name": name,
            "project": project or os.environ.get("WANDB_PROJECT", "lightning_logs"),
            "dir": None if save_dir is None else os.fspath(save_dir),
            "id": version or id,
            "resume": "allow",
            "anonymous": "allow" if anonymous else None,
        }
        if offline:
            self._wandb_init["mode"] = "offline"
        self._wandb_init.update(kwargs)
        self._project = self._wandb_init["project"]
        self._save_dir = self._wandb_init["dir"]
        self._name = self._wandb_init["name"]
        self._id = self._wandb_init["id"]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self._experiment is not None:  # a copy (or a spawned worker) resumes the same run by id
            state["_id"] = getattr(self._experiment, "id", None)
            state["_name"] = getattr(self._experiment, "name", None)
        state["_experiment"] = None
        return state

    # ---- the run ---------------------------------------------------------------------------

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The ``wandb`` run (started on first use): ``logger.experiment.log({...})``."""
        if self._experiment is None:
            import wandb

            if wandb.run is not None:
                rank_zero_warn("A wandb run is already active; WandbLogger logs into it. Call `wandb.finish()` "
                               "first to start a new run.")
                self._experiment = wandb.run
            else:
                init = dict(self._wandb_init)
                if self._id is not None:
                    init["id"] = self._id
                if init.get("dir") is not None:
                    os.makedirs(init["dir"], exist_ok=True)
                self._experiment = wandb.init(**init)
            if callable(getattr(self._experiment, "define_metric", None)):
                if self._wandb_init.get("sync_tensorboard"):
                    self._experiment.define_metric("*", step_metric="global_step")
                else:
                    self._experiment.define_metric("trainer/global_step")
                    self._experiment.define_metric("*", step_metric="trainer/global_step", step_sync=True)
        return self._experiment

    @property
    def save_dir(self) -> str | None:
        return self._save_dir

    @property
    def name(self) -> str | None:
        """The project (the run's own name is ``logger.experiment.name``)."""
        return self._project

    @property
    def version(self) -> str | None:
        """The run id (the one given to the constructor until the run exists)."""
        return self._experiment.id if self._experiment else self._id

    def watch(self, model: Any, log: str | None = "gradients", log_freq: int = 100, log_graph: bool = True) -> None:
        """Track gradients/parameters of ``model`` (``wandb.watch``)."""
        self.experiment.watch(model, log=log, log_freq=log_freq, log_graph=log_graph)

    # ---- logging ---------------------------------------------------------------------------

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace | None = None, *args: Any, **kwargs: Any) -> None:
        params = _convert_params(params)
        plain = {k: (getattr(v, "__name__", None) or str(v)) if callable(v) else _to_plain(v)
                 for k, v in params.items()}
        self.experiment.config.update(plain, allow_val_change=True)

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        metrics = {k: _scalar(v) for k, v in _add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR).items()}
        if step is not None and not self._wandb_init.get("sync_tensorboard"):
            self.experiment.log({**metrics, "trainer/global_step": step})
        else:
            self.experiment.log(metrics)

    @rank_zero_only
    def log_table(self, key: str, columns: list[str] | None = None, data: list[list[Any]] | None = None,
                  dataframe: Any = None, step: int | None = None) -> None:
        """Log a ``wandb.Table`` from ``columns`` + ``data`` or from a ``dataframe``."""
        import wandb

        self.log_metrics({key: wandb.Table(columns=columns, data=data, dataframe=dataframe)}, step)

    @rank_zero_only
    def log_text(self, key: str, columns: list[str] | None = None, data: list[list[str]] | None = None,
                 dataframe: Any = None, step: int | None = None) -> None:
        """Log a table of text."""
        self.log_table(key, columns, data, dataframe, step)

    @rank_zero_only
    def log_image(self, key: str, images: list[Any], step: int | None = None, **kwargs: Any) -> None:
        """Log images; each keyword is a list with one value per image (``caption=[...]``, ``masks=[...]``)."""
        self._log_media("Image", key, images, step, kwargs)

    @rank_zero_only
    def log_audio(self, key: str, audios: list[Any], step: int | None = None, **kwargs: Any) -> None:
        """Log audio clips; each keyword is a list with one value per clip (``sample_rate=[...]``)."""
        self._log_media("Audio", key, audios, step, kwargs)

    @rank_zero_only
    def log_video(self, key: str, videos: list[Any], step: int | None = None, **kwargs: Any) -> None:
        """Log videos; each keyword is a list with one value per video (``fps=[...]``)."""
        self._log_media("Video", key, videos, step, kwargs)

    def _log_media(self, kind: str, key: str, items: list[Any], step: int | None, kwargs: dict[str, list]) -> None:
        if not isinstance(items, list):
            raise TypeError(f"WandbLogger.log_{kind.lower()} expects a list, got {type(items).__name__}.")
        for name, values in kwargs.items():
            if len(values) != len(items):
                raise ValueError(f"WandbLogger.log_{kind.lower()}: {name} has {len(values)} values for "
                                 f"{len(items)} items; give one per item.")
        import wandb

        cls = getattr(wandb, kind)
        media = [cls(item, **{k: v[i] for k, v in kwargs.items()}) for i, item in enumerate(items)]
        self.log_metrics({key: media}, step)

    # ---- artifacts -------------------------------------------------------------------------

    @staticmethod
    @rank_zero_only
    def download_artifact(artifact: str, save_dir: str | os.PathLike | None = None,
                          artifact_type: str | None = None, use_artifact: bool | None = True) -> str:
        """Download ``artifact`` (``"entity/project/name:alias"``) and return the folder it went to."""
        import wandb

        if wandb.run is not None and use_artifact:
            found = wandb.run.use_artifact(artifact, type=artifact_type)
        else:
            found = wandb.Api().artifact(artifact, type=artifact_type)
        return found.download(root=None if save_dir is None else os.fspath(save_dir))

    def use_artifact(self, artifact: str, artifact_type: str | None = None) -> Any:
        """Declare that this run uses ``artifact``; returns the ``wandb.Artifact``."""
        return self.experiment.use_artifact(artifact, type=artifact_type)

    # ---- checkpoints and the end of the run ------------------------------------------------

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        if self._log_model == "all" or (self._log_model is True and checkpoint_callback.save_top_k == -1):
            self._scan_and_log_checkpoints(checkpoint_callback)
        elif self._log_model is True:
            self._checkpoint_callbacks[id(checkpoint_callback)] = checkpoint_callback

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Upload pending checkpoints. The run stays open (``wandb.finish()`` ends it), so that
        ``trainer.test`` after ``fit`` logs into the same run."""
        if status != "success" or self._experiment is None:
            return
        for callback in self._checkpoint_callbacks.values():
            self._scan_and_log_checkpoints(callback)

    def _scan_and_log_checkpoints(self, checkpoint_callback: Any) -> None:
        import wandb

        for mtime, path, score, tag in _scan_checkpoints(checkpoint_callback, self._logged_model_time):
            metadata = {
                "score": _scalar(score),
                "original_filename": Path(path).name,
                checkpoint_callback.__class__.__name__: {
                    k: getattr(checkpoint_callback, k) for k in ("monitor", "mode", "save_last", "save_top_k",
                                                                 "save_weights_only")
                    if hasattr(checkpoint_callback, k)},
            }
            name = self._checkpoint_name or f"model-{self.experiment.id}"
            artifact = wandb.Artifact(name=name, type="model", metadata=metadata)
            artifact.add_file(path, name="model.ckpt", policy=self.add_file_policy)
            aliases = ["latest", "best"] if path == checkpoint_callback.best_model_path else ["latest"]
            self.experiment.log_artifact(artifact, aliases=aliases)
            self._logged_model_time[path] = mtime
