"""The ``Logger`` interface every experiment logger implements, plus a no-op ``DummyLogger``.

A logger receives scalar metrics (``log_metrics``) and the run's hyperparameters
(``log_hyperparams``) from the Trainer. Subclasses must provide ``name``, ``version``,
``log_metrics`` and ``log_hyperparams``; everything else has a sensible default.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from argparse import Namespace
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

from ember.utilities.rank_zero import rank_zero_only

__all__ = ["DummyLogger", "Logger", "rank_zero_experiment"]


class _DummyExperiment:
    """Stands in for a real experiment object: every attribute is a callable that does nothing."""

    def nop(self, *args: Any, **kwargs: Any) -> None:
        return None

    def __getattr__(self, name: str) -> Callable[..., None]:
        if name.startswith("__") and name.endswith("__"):  # keep copy/pickle protocols intact
            raise AttributeError(name)
        return self.nop

    def __getitem__(self, _: Any) -> _DummyExperiment:
        # lets ``logger.experiment[0].add_image(...)`` work on non-zero ranks
        return self

    def __setitem__(self, *args: Any) -> None:
        pass

    def __bool__(self) -> bool:
        return True


def rank_zero_experiment(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Decorate a logger's ``experiment`` getter so that ranks other than 0 get a no-op object.

    Use it under ``@property``::

        @property
        @rank_zero_experiment
        def experiment(self):
            return self._make_run()
    """

    @functools.wraps(fn)
    def experiment(self: Any) -> Any:
        if rank_zero_only.rank > 0:  # type: ignore[attr-defined]
            return _DummyExperiment()
        return fn(self)

    return experiment


class Logger(ABC):
    """Base class for experiment loggers.

    Required in a subclass: the ``name`` and ``version`` properties and the ``log_metrics`` and
    ``log_hyperparams`` methods. Optional: ``experiment``, ``save_dir``, ``root_dir``,
    ``log_dir``, ``log_graph``, ``save``, ``finalize`` and ``after_save_checkpoint``.
    """

    @property
    @abstractmethod
    def name(self) -> str | None:
        """The experiment's name."""

    @property
    @abstractmethod
    def version(self) -> int | str | None:
        """The experiment's version (e.g. ``0`` for ``version_0``)."""

    @property
    def root_dir(self) -> str | None:
        """Directory holding all versions of this experiment, when the logger writes to disk."""
        return None

    @property
    def log_dir(self) -> str | None:
        """Directory this version writes to, when the logger writes to disk."""
        return None

    @property
    def save_dir(self) -> str | None:
        """The directory the logger was told to save under, when it writes to disk."""
        return None

    @property
    def group_separator(self) -> str:
        """Character that splits a metric name into groups (``"train/loss"``)."""
        return "/"

    @property
    def experiment(self) -> Any:
        """The underlying experiment object (a writer, a run handle...); ``None`` by default."""
        return None

    @abstractmethod
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Record ``metrics`` (name -> number) at training step ``step``."""

    @abstractmethod
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """Record the run's hyperparameters."""

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Record the model's computational graph; nothing by default."""

    def save(self) -> None:
        """Write out anything still buffered; nothing by default."""

    def finalize(self, status: str) -> None:
        """Called once at the end of a run (``status`` is ``"success"``, ``"failed"`` ...)."""
        self.save()

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Called after a checkpoint was saved; nothing by default."""


class DummyLogger(Logger):
    """A logger that records nothing; any method call on it is accepted and ignored.

    Useful as a placeholder (e.g. on ranks that should not log, or while tuning).
    """

    def __init__(self) -> None:
        super().__init__()
        self._experiment = _DummyExperiment()

    @property
    def experiment(self) -> _DummyExperiment:
        return self._experiment

    @property
    def name(self) -> str:
        return ""

    @property
    def version(self) -> str:
        return ""

    def log_metrics(self, *args: Any, **kwargs: Any) -> None:
        pass

    def log_hyperparams(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __getitem__(self, idx: int) -> DummyLogger:
        return self

    def __getattr__(self, name: str) -> Callable[..., None]:
        # only reached for attributes that do not exist: answer with a method that does nothing
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)

        def method(*args: Any, **kwargs: Any) -> None:
            return None

        return method


# ---------------------------------------------------------------------------------------------
# helpers shared by loggers (and the Trainer) to turn hyperparameters / metrics into plain data
# ---------------------------------------------------------------------------------------------


def _convert_params(params: Mapping[str, Any] | Namespace | None) -> dict[str, Any]:
    """``Namespace``/mapping/None -> a fresh ``dict``."""
    if params is None:
        return {}
    if isinstance(params, Namespace):
        return dict(vars(params))
    return dict(params)


def _to_plain(value: Any) -> Any:
    """Recursively turn a hyperparameter value into YAML-safe data (numbers, str, lists, dicts)."""
    import dataclasses
    import enum
    import os

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, enum.Enum):
        return _to_plain(value.value)
    if isinstance(value, Namespace):
        return {str(k): _to_plain(v) for k, v in vars(value).items()}
    if isinstance(value, Mapping):
        return {str(k) if not isinstance(k, (int, float, bool)) else k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [_to_plain(v) for v in items]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _to_plain(dataclasses.asdict(value))
    # torch tensors and numpy arrays/scalars: small ones become numbers or (nested) lists
    if hasattr(value, "tolist") and callable(value.tolist):
        try:
            return _to_plain(value.tolist())
        except Exception:
            pass
    if hasattr(value, "item") and callable(value.item):
        try:
            return _to_plain(value.item())
        except Exception:
            pass
    if callable(value):
        return getattr(value, "__qualname__", None) or getattr(value, "__name__", None) or repr(value)
    return str(value)


def _flatten_dict(params: Mapping[Any, Any], delimiter: str = "/", parent_key: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a/b": 1}``; Namespaces are flattened too."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        new_key = f"{parent_key}{delimiter}{key}" if parent_key else str(key)
        if isinstance(value, Namespace):
            value = vars(value)
        if isinstance(value, MutableMapping) and value:
            out.update(_flatten_dict(value, delimiter, new_key))
        else:
            out[new_key] = value
    return out


def _add_prefix(metrics: Mapping[str, Any], prefix: str, separator: str) -> dict[str, Any]:
    """Prepend ``prefix + separator`` to every metric name when ``prefix`` is non-empty."""
    if not prefix:
        return dict(metrics)
    return {f"{prefix}{separator}{k}": v for k, v in metrics.items()}


def _scalar(value: Any) -> Any:
    """A metric value as a Python number (tensors/numpy scalars via ``.item()``)."""
    if isinstance(value, (int, float)) or value is None:
        return value
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return item()
        except Exception:
            pass
    return value
