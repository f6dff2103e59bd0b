"""``TensorBoardLogger``: scalars, hyperparameters and the model graph as TensorBoard event files.

Layout on disk, the same as ``CSVLogger``'s (``name`` empty or ``None`` drops the middle level)::

    save_dir/name/version_0/events.out.tfevents.*
    save_dir/name/version_0/hparams.yaml
    save_dir/name/version_0/<sub_dir>/events.out.tfevents.*     (with ``sub_dir``)

The writer is ``torch.utils.tensorboard.SummaryWriter`` when the ``tensorboard`` package is installed,
``tensorboardX.SummaryWriter`` when only ``tensorboardX`` is; either is imported when the first event
is written, never by ``import ember``.
"""

from __future__ import annotations

import os
from argparse import Namespace
from typing import Any

from ember.loggers._utils import _package_available, _sanitize_params
from ember.loggers.csv_logs import _join, _VersionedDirs, _write_text_atomic
from ember.loggers.logger import (
    Logger,
    _add_prefix,
    _convert_params,
    _flatten_dict,
    _scalar,
    _to_plain,
    rank_zero_experiment,
)
from ember.utilities.rank_zero import rank_zero_only, rank_zero_warn

__all__ = ["TensorBoardLogger"]


def _tensorboard_available() -> bool:
    """Whether a TensorBoard writer can be made (``tensorboard`` or ``tensorboardX`` is installed)."""
    return _package_available("tensorboard") or _package_available("tensorboardX")


def _writer_module() -> tuple[Any, Any]:
    """(SummaryWriter class, hparams summary function) from torch's tensorboard support or tensorboardX."""
    if _package_available("tensorboard"):
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams
    elif _package_available("tensorboardX"):
        from tensorboardX import SummaryWriter  # type: ignore[no-redef]
        from tensorboardX.summary import hparams  # type: ignore[no-redef]
    else:
        raise ModuleNotFoundError("TensorBoardLogger needs `tensorboard` (or `tensorboardX`), which is not "
                                  "installed; `pip install tensorboard` (or `pip install 'ember[tensorboard]'`), "
                                  "or use ember.loggers.CSVLogger.")
    return SummaryWriter, hparams


class TensorBoardLogger(_VersionedDirs, Logger):
    """Log to TensorBoard event files under ``save_dir/name/version_N``.

    Args:
        save_dir: directory (or fsspec URL) under which ``name/version_N`` is created.
        name: experiment folder name; ``""`` or ``None`` puts the versions straight under ``save_dir``.
        version: an int gives ``version_<int>``, a string is used as the folder name, ``None`` picks the
            next free ``version_N``.
        log_graph: add the model's graph (traced with ``model.example_input_array``) when training starts.
        default_hp_metric: with the hyperparameters, log a placeholder ``hp_metric = -1`` so that the
            HPARAMS tab shows the run; log your own ``hp_metric`` to replace it.
        prefix: prepended to every metric name as ``"{prefix}-{name}"``.
        sub_dir: an extra folder inside the version folder for the event files.
        **kwargs: passed to ``SummaryWriter`` (e.g. ``max_queue``, ``flush_secs``, ``filename_suffix``).
    """

    NAME_HPARAMS_FILE = "hparams.yaml"
    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        save_dir: str | os.PathLike,
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        log_graph: bool = False,
        default_hp_metric: bool = True,
        prefix: str = "",
        sub_dir: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        from fsspec.core import url_to_fs

        self._save_dir = os.path.expanduser(os.fspath(save_dir))
        self._fs, _ = url_to_fs(self._save_dir)
        self._name = name or ""
        self._version = version
        self._sub_dir = None if sub_dir is None else os.fspath(sub_dir)
        self._log_graph = log_graph
        self._default_hp_metric = default_hp_metric
        self._prefix = prefix
        self._kwargs = kwargs
        self._experiment: Any = None
        self._hparams_dirty = False
        self.hparams: dict[str, Any] = {}

    # ---- where things go -------------------------------------------------------------------

    @property
    def log_dir(self) -> str:
        """``root_dir/version_N`` (plus ``sub_dir``): where the event files go."""
        log_dir = self._version_dir()
        if self._sub_dir:
            log_dir = _join(log_dir, self._sub_dir)
        return os.path.expandvars(log_dir)

    @property
    def sub_dir(self) -> str | None:
        return self._sub_dir

    # ---- the writer ------------------------------------------------------------------------

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The ``SummaryWriter`` (created, with its folder, on first use): ``logger.experiment.add_image(...)``."""
        if self._experiment is None:
            writer_cls, _ = _writer_module()
            self._fs.makedirs(self.log_dir, exist_ok=True)
            self._experiment = writer_cls(log_dir=self.log_dir, **self._kwargs)
        return self._experiment

    # ---- logging ---------------------------------------------------------------------------

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        writer = self.experiment
        for key, value in _add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR).items():
            value = _scalar(value)
            try:
                if isinstance(value, dict):
                    writer.add_scalars(key, {k: _scalar(v) for k, v in value.items()}, step)
                else:
                    writer.add_scalar(key, value, step)
            except Exception as err:
                raise ValueError(f"TensorBoardLogger cannot log {key}={value!r}: log a number, a scalar tensor or "
                                 "a dict of them.") from err

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace | None = None, metrics: Any = None,
                        step: int | None = None) -> None:
        """Record ``params`` in ``hparams.yaml`` and in TensorBoard's HPARAMS tab, together with ``metrics``
        (a dict, or one number that becomes ``hp_metric``)."""
        params = _convert_params(params)
        self.hparams.update(params)
        self._hparams_dirty = True
        if metrics is None:
            metrics = {"hp_metric": -1} if self._default_hp_metric else {}
        elif not isinstance(metrics, dict):
            metrics = {"hp_metric": metrics}
        if not metrics:
            return
        self.log_metrics(metrics, step)
        _, hparams_summary = _writer_module()
        flat = _sanitize_params(_flatten_dict(params))
        writer = self.experiment._get_file_writer()
        for summary in hparams_summary(flat, {k: _scalar(v) for k, v in metrics.items()}):
            writer.add_summary(summary, step)

    @rank_zero_only
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Trace ``model`` with ``input_array`` (default ``model.example_input_array``) into the GRAPHS tab."""
        if not self._log_graph:
            return
        if input_array is None:
            input_array = getattr(model, "example_input_array", None)
        if input_array is None:
            rank_zero_warn("TensorBoardLogger(log_graph=True) cannot log the graph: set `model.example_input_array` "
                           "or pass `input_array`.")
            return
        import torch

        if not isinstance(input_array, (torch.Tensor, tuple)):
            rank_zero_warn(f"TensorBoardLogger cannot trace an input of type {type(input_array).__name__}; use a "
                           "tensor or a tuple of the positional arguments of `forward`.")
            return
        trainer = getattr(model, "_trainer", None)
        if trainer is not None:
            input_array = trainer._to_device(input_array, 0)
        else:
            device = next(model.parameters(), torch.empty(0)).device
            input_array = input_array.to(device) if isinstance(input_array, torch.Tensor) else tuple(
                x.to(device) if isinstance(x, torch.Tensor) else x for x in input_array)
        modes = {m: m.training for m in model.modules()}
        try:
            self.experiment.add_graph(model, input_array)
        except Exception as err:  # a model that cannot be traced must not end the run
            rank_zero_warn(f"TensorBoardLogger could not trace the model's graph: {err}")
        finally:
            for module, training in modes.items():
                module.training = training

    # ---- flushing --------------------------------------------------------------------------

    @rank_zero_only
    def save(self) -> None:
        if self._experiment is not None:
            self._experiment.flush()
        if self._hparams_dirty:
            import yaml

            self._fs.makedirs(self.log_dir, exist_ok=True)
            text = yaml.safe_dump(_to_plain(self.hparams), sort_keys=True, default_flow_style=False)
            _write_text_atomic(self._fs, _join(self.log_dir, self.NAME_HPARAMS_FILE), text)
            self._hparams_dirty = False

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()
        if self._experiment is not None:
            self._experiment.close()  # a later log call opens a new events file

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_experiment"] = None  # the writer holds threads and open files
        return state
