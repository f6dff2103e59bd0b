"""``LambdaCallback``: a callback made of plain functions, one per hook."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ember.callbacks.callback import Callback

# every hook a Callback has, plus state/checkpoint methods users may want to fill in
_HOOKS = frozenset(name for name, value in vars(Callback).items()
                   if callable(value) and not name.startswith("_") and name != "state_key")


class LambdaCallback(Callback):
    """Build a callback from functions: ``LambdaCallback(on_train_epoch_end=lambda trainer, pl_module: ...)``.

    Each keyword names a Callback hook and receives the arguments that hook receives.
    """

    def __init__(self, **hooks: Callable[..., Any]) -> None:
        unknown = sorted(set(hooks) - _HOOKS)
        if unknown:
            raise TypeError(f"LambdaCallback got {unknown}, which are not Callback hooks; use names such as "
                            "on_train_epoch_end, on_validation_batch_end, setup, teardown.")
        for name, fn in hooks.items():
            if not callable(fn):
                raise TypeError(f"LambdaCallback({name}=...) must be callable, got {type(fn).__name__}.")
            setattr(self, name, fn)
