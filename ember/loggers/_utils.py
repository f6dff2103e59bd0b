"""Helpers shared by the TensorBoard, MLflow and W&B loggers (no third-party imports here)."""

from __future__ import annotations

import enum
import os
import re
from typing import Any

from ember.utilities.imports import _package_available, _require  # noqa: F401  (used by the loggers)

_VERSION_DIR = re.compile(r"^version_(\d+)$")


def _sanitize_params(params: dict[str, Any]) -> dict[str, Any]:
    """Hyperparameter values a dashboard can show: numbers, strings, bools; names for callables and enums,
    ``str()`` for anything else (tensors with more than one element included)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, (bool, int, float, str)):
            out[key] = value
        elif isinstance(value, enum.Enum):
            out[key] = value.name
        elif callable(value) and not hasattr(value, "ndim"):
            out[key] = getattr(value, "__name__", None) or str(value)
        elif hasattr(value, "ndim") and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
            out[key] = value.item()
        else:
            out[key] = str(value)
    return out


def _next_version(fs: Any, root: str) -> int:
    """One more than the largest ``version_N`` folder under ``root`` (0 when there is none)."""
    try:
        if not fs.isdir(root):
            return 0
        entries = fs.ls(root, detail=True)
    except (FileNotFoundError, NotADirectoryError, OSError):
        return 0
    found = [int(m.group(1)) for entry in entries if entry.get("type") == "directory"
             for m in [_VERSION_DIR.match(entry["name"].rstrip("/").rsplit("/", 1)[-1])] if m]
    return max(found) + 1 if found else 0


def _scan_checkpoints(checkpoint_callback: Any, logged: dict[str, float]) -> list[tuple[float, str, Any, str]]:
    """Checkpoint files of ``checkpoint_callback`` not logged yet (or changed since): ``(mtime, path, score,
    tag)`` sorted oldest first. ``logged`` maps path -> mtime of what was already uploaded."""
    candidates: dict[str, tuple[Any, str]] = {}
    if getattr(checkpoint_callback, "last_model_path", ""):
        candidates[checkpoint_callback.last_model_path] = (getattr(checkpoint_callback, "current_score", None),
                                                           "latest")
    if getattr(checkpoint_callback, "best_model_path", ""):
        candidates[checkpoint_callback.best_model_path] = (checkpoint_callback.best_model_score, "best")
    for path, score in (getattr(checkpoint_callback, "best_k_models", None) or {}).items():
        candidates.setdefault(path, (score, "best_k"))
    found = []
    for path, (score, tag) in candidates.items():
        if not path or not os.path.isfile(path):
            continue
        mtime = os.path.getmtime(path)
        if path not in logged or logged[path] < mtime:
            found.append((mtime, path, score, tag))
    return sorted(found)
