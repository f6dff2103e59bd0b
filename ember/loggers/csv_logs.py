"""``CSVLogger``: metrics to ``metrics.csv`` and hyperparameters to ``hparams.yaml``.

Layout on disk (``name`` empty or ``None`` drops the middle level)::

    save_dir/name/version_0/metrics.csv
    save_dir/name/version_0/hparams.yaml

``metrics.csv`` has one column per metric name ever logged plus ``step``, in sorted order, and
one row per ``log_metrics`` call; cells of metrics not logged in that call stay empty. When a new
metric name shows up the whole file is rewritten with the wider header.

Paths may be any fsspec URL (``s3://``, ``memory://`` ...). Local files are replaced atomically
(written to a temporary file next to them, then ``os.replace``d), so a crash never leaves a
half-written ``metrics.csv`` or ``hparams.yaml``; new rows under an unchanged header are appended.
"""

from __future__ import annotations

import csv
import io
import os
from argparse import Namespace
from typing import Any

from ember.loggers.logger import (
    Logger,
    _add_prefix,
    _convert_params,
    _scalar,
    _to_plain,
    rank_zero_experiment,
)
from ember.loggers._utils import _next_version
from ember.utilities.rank_zero import rank_zero_only, rank_zero_warn

__all__ = ["CSVLogger"]


def _join(base: str, *parts: str) -> str:
    """Join path parts; URLs (``proto://...``) always use ``/``."""
    parts = tuple(p for p in parts if p)
    if not parts:
        return base
    if "://" in base:
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return os.path.join(base, *parts)


def _is_local(fs: Any) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


def _write_text_atomic(fs: Any, path: str, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see either the old or the new file, never half."""
    if _is_local(fs):
        local = fs._strip_protocol(path)
        tmp = f"{local}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                f.write(text)
                f.flush()
            os.replace(tmp, local)
        except BaseException:
            try:
                os.remove(tmp)
            except OSError:
                pass
            raise
    else:
        # object stores upload on close, so the file appears whole or not at all
        with fs.open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)


class _ExperimentWriter:
    """Buffers metric rows and writes ``metrics.csv`` / ``hparams.yaml`` under ``log_dir``."""

    NAME_HPARAMS_FILE = "hparams.yaml"
    NAME_METRICS_FILE = "metrics.csv"

    def __init__(self, log_dir: str, fs: Any) -> None:
        self.log_dir = log_dir
        self._fs = fs
        self.hparams: dict[str, Any] = {}
        self.metrics: list[dict[str, Any]] = []  # rows logged but not yet written
        self.metrics_keys: list[str] = []  # header of the file on disk
        self.metrics_file_path = _join(log_dir, self.NAME_METRICS_FILE)
        self.hparams_file_path = _join(log_dir, self.NAME_HPARAMS_FILE)
        self._rows_logged = 0
        self._file_started = False  # whether this writer created metrics.csv yet
        if self._fs.isdir(log_dir) and self._fs.ls(log_dir):
            rank_zero_warn(
                f"Experiment logs directory {log_dir} exists and is not empty. Its previous"
                f" {self.NAME_METRICS_FILE} and {self.NAME_HPARAMS_FILE} will be overwritten.",
                stacklevel=5,
            )
        self._fs.makedirs(log_dir, exist_ok=True)

    # ---- hyperparameters -------------------------------------------------------------------

    def log_hparams(self, params: dict[str, Any]) -> None:
        self.hparams.update(params)
        if self.hparams:  # no empty hparams.yaml for modules without hyperparameters
            self._save_hparams()

    def _save_hparams(self) -> None:
        import yaml

        text = yaml.safe_dump(_to_plain(self.hparams), sort_keys=True, default_flow_style=False)
        _write_text_atomic(self._fs, self.hparams_file_path, text)

    # ---- metrics ---------------------------------------------------------------------------

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if step is None:
            step = self._rows_logged
        row = {k: _scalar(v) for k, v in metrics.items()}
        row["step"] = int(step)
        self.metrics.append(row)
        self._rows_logged += 1

    def save(self) -> None:
        """Write buffered rows; rewrite the whole file when the header has to grow."""
        if self.hparams:
            self._save_hparams()
        if not self.metrics:
            return
        rows, self.metrics = self.metrics, []
        try:
            self._write_rows(rows)
        except BaseException:
            self.metrics = rows + self.metrics  # keep them for the next attempt
            raise

    def _write_rows(self, rows: list[dict[str, Any]]) -> None:
        known = set(self.metrics_keys)
        new_keys = {k for row in rows for k in row if k not in known}
        exists = self._file_started and self._fs.exists(self.metrics_file_path)
        if exists and not new_keys:
            self._append(rows)
            return
        keys = sorted(known | new_keys)
        old_rows: list[dict[str, str]] = []
        if exists:
            with self._fs.open(self.metrics_file_path, "r", encoding="utf-8", newline="") as f:
                old_rows = list(csv.DictReader(f))
        _write_text_atomic(self._fs, self.metrics_file_path, self._render(keys, old_rows + rows, header=True))
        self.metrics_keys = keys
        self._file_started = True

    def _append(self, rows: list[dict[str, Any]]) -> None:
        text = self._render(self.metrics_keys, rows, header=False)
        if _is_local(self._fs):
            with open(self._fs._strip_protocol(self.metrics_file_path), "a", encoding="utf-8", newline="") as f:
                f.write(text)  # one write call: rows land whole
        else:
            # many object stores cannot append: upload old content + new rows in one go
            old = self._fs.cat_file(self.metrics_file_path).decode("utf-8")
            _write_text_atomic(self._fs, self.metrics_file_path, old + text)

    @staticmethod
    def _render(keys: list[str], rows: list[dict[str, Any]], header: bool) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n", restval="")
        if header:
            writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()


class _VersionedDirs:
    """``save_dir/name/version_N`` for the file-writing loggers (CSV, TensorBoard); the version is the next
    free one unless given."""

    _save_dir: str
    _name: str
    _version: int | str | None
    _fs: Any

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> int | str:
        if self._version is None:
            self._version = _next_version(self._fs, self.root_dir)
        return self._version

    @property
    def save_dir(self) -> str:
        return self._save_dir

    @property
    def root_dir(self) -> str:
        return _join(self._save_dir, self._name)

    def _version_dir(self) -> str:
        version = self.version
        return _join(self.root_dir, version if isinstance(version, str) else f"version_{version}")


class CSVLogger(_VersionedDirs, Logger):
    """Log metrics to a CSV file and hyperparameters to a YAML file, on the local disk or any
    fsspec filesystem.

    Args:
        save_dir: directory (or URL) under which ``name/version_N`` is created.
        name: experiment name, the folder between ``save_dir`` and the version; ``""`` or ``None``
            puts the versions straight under ``save_dir``.
        version: an int gives ``version_<int>``; a string is used as the folder name as-is;
            ``None`` picks the next free ``version_N``.
        prefix: prepended to every metric name as ``"{prefix}-{name}"``.
        flush_logs_every_n_steps: how often buffered rows are written to disk.
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        save_dir: str | os.PathLike,
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        prefix: str = "",
        flush_logs_every_n_steps: int = 100,
    ) -> None:
        super().__init__()
        from fsspec.core import url_to_fs

        self._save_dir = os.fspath(save_dir)
        self._fs, _ = url_to_fs(self._save_dir)
        self._name = name or ""
        self._version = version
        self._prefix = prefix
        self._flush_logs_every_n_steps = max(1, int(flush_logs_every_n_steps))
        self._experiment: _ExperimentWriter | None = None

    # ---- where things go -------------------------------------------------------------------

    @property
    def log_dir(self) -> str:
        return self._version_dir()

    # ---- the writer ------------------------------------------------------------------------

    @property
    @rank_zero_experiment
    def experiment(self) -> _ExperimentWriter:
        """The object that writes the files (created, with its directory, on first use)."""
        if self._experiment is None:
            self._experiment = _ExperimentWriter(self.log_dir, self._fs)
        return self._experiment

    # ---- logging ---------------------------------------------------------------------------

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace | None = None, *args: Any, **kwargs: Any) -> None:
        self.experiment.log_hparams(_convert_params(params))

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        metrics = _add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR)
        experiment = self.experiment
        if step is None:
            step = experiment._rows_logged
        experiment.log_metrics(metrics, step)
        every = self._flush_logs_every_n_steps
        if (step + 1) % every == 0 or len(experiment.metrics) >= every:
            self.save()

    @rank_zero_only
    def save(self) -> None:
        super().save()
        if self._experiment is not None:  # nothing was ever logged: do not create directories
            self._experiment.save()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._experiment is None:
            return
        self.save()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_experiment"] = None  # the writer holds buffered rows; a copy starts clean
        return state
