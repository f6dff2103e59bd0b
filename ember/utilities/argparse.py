"""``PL_TRAINER_<ARG>`` environment variables as Trainer defaults, as in Lightning.

``PL_TRAINER_MAX_EPOCHS=3 python train.py`` makes ``Trainer()`` behave like ``Trainer(max_epochs=3)``;
an argument passed explicitly always wins. Values are read as Python literals (``3`` -> int,
``0.5`` -> float, ``True``/``False``/``None``, ``[0, 1]`` -> list) and kept as strings otherwise
(``cpu``, ``bf16-mixed``). A subclass ``MyTrainer`` reads ``PL_MYTRAINER_<ARG>``.
"""

from __future__ import annotations

import ast
import functools
import inspect
import os
from typing import Any, Callable, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])


def _parse_env_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _parse_env_variables(cls: type, template: str = "PL_{cls}_{arg}") -> dict[str, Any]:
    """The ``__init__`` arguments of ``cls`` that are set in the environment, parsed."""
    found: dict[str, Any] = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        text = os.environ.get(template.format(cls=cls.__name__.upper(), arg=name.upper()))
        if text:  # unset or empty: no default from the environment
            found[name] = _parse_env_value(text)
    return found


def _defaults_from_env_vars(fn: _F) -> _F:
    """Decorate ``__init__`` so that ``PL_<CLASS>_<ARG>`` variables fill the arguments not passed."""

    @functools.wraps(fn)
    def init(self: Any, *args: Any, **kwargs: Any) -> Any:
        if args:  # positional arguments count as passed explicitly
            names = [n for n in inspect.signature(fn).parameters if n != "self"]
            kwargs.update(zip(names, args))
        return fn(self, **{**_parse_env_variables(type(self)), **kwargs})

    return init  # type: ignore[return-value]
