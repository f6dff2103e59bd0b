"""Run or print only on the process of global rank 0."""

from __future__ import annotations

import functools
import logging
import os
import warnings
from typing import Any, Callable, TypeVar

log = logging.getLogger("ember")
_T = TypeVar("_T")


def _rank_from_env() -> int:
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if key in os.environ:
            return int(os.environ[key])
    return 0


def rank_zero_only(fn: Callable[..., _T]) -> Callable[..., _T | None]:
    """Decorate ``fn`` so that it runs only where ``rank_zero_only.rank == 0``."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> _T | None:
        if rank_zero_only.rank == 0:
            return fn(*args, **kwargs)
        return None

    return wrapped


rank_zero_only.rank = _rank_from_env()  # type: ignore[attr-defined]


@rank_zero_only
def rank_zero_info(*args: Any, **kwargs: Any) -> None:
    """Log at INFO level on rank 0 only."""
    log.info(*args, **kwargs)


@rank_zero_only
def rank_zero_debug(*args: Any, **kwargs: Any) -> None:
    """Log at DEBUG level on rank 0 only."""
    log.debug(*args, **kwargs)


@rank_zero_only
def rank_zero_warn(message: str | Warning, category: type[Warning] = UserWarning, stacklevel: int = 4,
                   **kwargs: Any) -> None:
    """Emit a warning on rank 0 only."""
    warnings.warn(message, category, stacklevel=stacklevel, **kwargs)


class PossibleUserWarning(UserWarning):
    """A warning about something that is probably, but not certainly, a mistake."""


rank_zero_deprecation = functools.partial(rank_zero_warn, category=DeprecationWarning)
