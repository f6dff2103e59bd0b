"""``MLFlowLogger``: metrics, hyperparameters (as params) and optionally checkpoints to an MLflow run.

Talks to the tracking store through ``mlflow.tracking.MlflowClient`` only (no global ``mlflow.start_run``
state), so several loggers and several runs can live in one process. ``mlflow`` (or the lighter
``mlflow-skinny``) is imported when the logger is created, never by ``import ember``.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from argparse import Namespace
from pathlib import Path
from typing import Any, Literal

from ember.loggers._utils import _require, _scan_checkpoints
from ember.loggers.logger import Logger, _add_prefix, _convert_params, _flatten_dict, _scalar, rank_zero_experiment
from ember.utilities.rank_zero import rank_zero_only, rank_zero_warn

__all__ = ["MLFlowLogger"]

_LOCAL_FILE_URI_PREFIX = "file:"
_INVALID_KEY_CHARS = re.compile(r"[^a-zA-Z0-9_/. -]+")
_RUN_NAME_TAG = "mlflow.runName"
_STATUS = {"success": "FINISHED", "finished": "FINISHED", "failed": "FAILED", "killed": "KILLED"}


class MLFlowLogger(Logger):
    """Log to an MLflow tracking store (a server, a database such as ``sqlite:///mlflow.db``, or a folder).

    Args:
        experiment_name: the MLflow experiment; created when it does not exist.
        run_name: shown as the run's name (the ``mlflow.runName`` tag).
        tracking_uri: where the store is; ``None`` takes ``$MLFLOW_TRACKING_URI``, else the folder store
            ``file:<save_dir>``.
        tags: tags for the new run.
        save_dir: the folder store used when no tracking URI is given.
        log_model: ``True`` uploads the checkpoints of ModelCheckpoint when training ends (every one as it
            is saved when ``save_top_k == -1``), ``"all"`` as each is saved, ``False`` never.
        prefix: prepended to every metric name as ``"{prefix}-{name}"``.
        artifact_location: where a newly created experiment stores artifacts.
        run_id: log into this existing run instead of creating one.
        synchronous: passed to ``MlflowClient.log_batch`` (``False`` logs in the background); ``None`` keeps
            MLflow's default.
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        experiment_name: str = "lightning_logs",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        tags: dict[str, Any] | None = None,
        save_dir: str | None = "./mlruns",
        log_model: bool | Literal["all"] = False,
        prefix: str = "",
        artifact_location: str | None = None,
        run_id: str | None = None,
        synchronous: bool | None = None,
        checkpoint_path_prefix: str = "",
    ) -> None:
        super().__init__()
        _require("mlflow", "MLFlowLogger", "mlflow")
        tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or \
            f"{_LOCAL_FILE_URI_PREFIX}{os.fspath(save_dir or './mlruns')}"
        if tracking_uri.startswith(_LOCAL_FILE_URI_PREFIX):
            # Recent MLflow refuses folder stores unless asked for explicitly; save_dir is that request.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self._experiment_name = experiment_name
        self._experiment_id: str | None = None
        self._tracking_uri = tracking_uri
        self._run_name = run_name
        self._run_id = run_id
        self.tags = dict(tags) if tags else None
        self._log_model = log_model
        self._logged_model_time: dict[str, float] = {}
        self._checkpoint_callback: Any = None
        self._checkpoint_path_prefix = checkpoint_path_prefix
        self._prefix = prefix
        self._artifact_location = artifact_location
        self._log_batch_kwargs = {} if synchronous is None else {"synchronous": synchronous}
        self._initialized = False
        from mlflow.tracking import MlflowClient

        self._mlflow_client = MlflowClient(tracking_uri)

    # ---- the run ---------------------------------------------------------------------------

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The ``MlflowClient``; its first use creates (or finds) the experiment and the run."""
        if self._initialized:
            return self._mlflow_client
        client = self._mlflow_client
        if self._run_id is not None:
            self._experiment_id = client.get_run(self._run_id).info.experiment_id
            self._initialized = True
            return client
        if self._experiment_id is None:
            found = client.get_experiment_by_name(self._experiment_name)
            if found is not None and found.lifecycle_stage != "deleted":
                self._experiment_id = found.experiment_id
            else:
                self._experiment_id = client.create_experiment(name=self._experiment_name,
                                                               artifact_location=self._artifact_location)
        tags = dict(self.tags or {})
        if self._run_name is not None:
            if _RUN_NAME_TAG in tags:
                rank_zero_warn(f"MLFlowLogger: the tag {_RUN_NAME_TAG} is replaced by run_name={self._run_name!r}.")
            tags[_RUN_NAME_TAG] = self._run_name
        run = client.create_run(experiment_id=self._experiment_id, tags=_resolve_tags(tags))
        self._run_id = run.info.run_id
        self._initialized = True
        return client

    @property
    def run_id(self) -> str | None:
        _ = self.experiment
        return self._run_id

    @property
    def experiment_id(self) -> str | None:
        _ = self.experiment
        return self._experiment_id

    @property
    def name(self) -> str | None:
        """The experiment id (as Lightning reports it)."""
        return self.experiment_id

    @property
    def version(self) -> str | None:
        """The run id."""
        return self.run_id

    @property
    def save_dir(self) -> str | None:
        """The local folder of a ``file:`` store; ``None`` for servers and databases."""
        if self._tracking_uri.startswith(_LOCAL_FILE_URI_PREFIX):
            return self._tracking_uri[len(_LOCAL_FILE_URI_PREFIX):]
        return None

    # ---- logging ---------------------------------------------------------------------------

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace | None = None, *args: Any, **kwargs: Any) -> None:
        """Record ``params`` (nested dicts flattened with ``/``) as the run's params, in batches of 100."""
        from mlflow.entities import Param

        flat = _flatten_dict(_convert_params(params))
        # MLflow rejects values over its length limit (6000 characters in current versions)
        items = [Param(key=k, value=str(v)[:6000]) for k, v in flat.items()]
        for start in range(0, len(items), 100):
            self.experiment.log_batch(run_id=self.run_id, params=items[start:start + 100], **self._log_batch_kwargs)

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        from mlflow.entities import Metric

        timestamp_ms = int(time.time() * 1000)
        batch = []
        for key, value in _add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR).items():
            value = _scalar(value)
            if isinstance(value, str):
                rank_zero_warn(f"MLFlowLogger drops the metric {key}={value!r}: metric values must be numbers.")
                continue
            clean = _INVALID_KEY_CHARS.sub("", key)
            if clean != key:
                rank_zero_warn(f"MLflow metric names may only use letters, digits and '_', '/', '.', '-', ' '; "
                               f"{key!r} is logged as {clean!r}.", category=RuntimeWarning)
            batch.append(Metric(key=clean, value=float(value), timestamp=timestamp_ms, step=step or 0))
        if batch:
            self.experiment.log_batch(run_id=self.run_id, metrics=batch, **self._log_batch_kwargs)

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        """Upload pending checkpoints (``log_model=True``) and mark the run finished or failed."""
        if not self._initialized:
            return
        if self._checkpoint_callback is not None:
            self._scan_and_log_checkpoints(self._checkpoint_callback)
        client = self.experiment
        if client.get_run(self.run_id):
            client.set_terminated(self.run_id, _STATUS.get(status, status.upper()))

    # ---- checkpoints -----------------------------------------------------------------------

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        if self._log_model == "all" or (self._log_model is True and checkpoint_callback.save_top_k == -1):
            self._scan_and_log_checkpoints(checkpoint_callback)
        elif self._log_model is True:
            self._checkpoint_callback = checkpoint_callback

    def _scan_and_log_checkpoints(self, checkpoint_callback: Any) -> None:
        import yaml

        for mtime, path, score, _ in _scan_checkpoints(checkpoint_callback, self._logged_model_time):
            metadata = {
                "score": _scalar(score),
                "original_filename": Path(path).name,
                "Checkpoint": {k: getattr(checkpoint_callback, k) for k in ("monitor", "mode", "save_last",
                                                                            "save_top_k", "save_weights_only")
                               if hasattr(checkpoint_callback, k)},
            }
            aliases = ["latest", "best"] if path == checkpoint_callback.best_model_path else ["latest"]
            artifact_path = os.path.join(self._checkpoint_path_prefix, Path(path).stem) \
                if self._checkpoint_path_prefix else Path(path).stem
            self.experiment.log_artifact(self._run_id, path, artifact_path)
            with tempfile.TemporaryDirectory() as tmp:
                with open(os.path.join(tmp, "metadata.yaml"), "w") as f:
                    yaml.safe_dump(metadata, f, default_flow_style=False)
                with open(os.path.join(tmp, "aliases.txt"), "w") as f:
                    f.write(str(aliases))
                self.experiment.log_artifacts(self._run_id, tmp, artifact_path)
            self._logged_model_time[path] = mtime


def _resolve_tags(tags: dict[str, Any]) -> dict[str, Any]:
    """``tags`` plus MLflow's context tags (source, user, git commit), as ``mlflow.start_run`` would add."""
    try:
        from mlflow.tracking.context.registry import resolve_tags
    except ImportError:  # an MLflow without the context registry
        return tags
    return resolve_tags(tags)
