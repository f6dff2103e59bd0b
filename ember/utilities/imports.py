"""Is an optional package installed? Answered without importing it (``import ember`` stays light)."""

from __future__ import annotations

import importlib.util


def _package_available(name: str) -> bool:
    """Whether ``name`` could be imported, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _require(package: str, user: str, extra: str) -> None:
    """Raise a ``ModuleNotFoundError`` that says how to install ``package``, which ``user`` needs."""
    if not _package_available(package):
        raise ModuleNotFoundError(f"{user} needs the `{package}` package, which is not installed; install it with "
                                  f"`pip install {package}` (or `pip install 'ember[{extra}]'`).")
