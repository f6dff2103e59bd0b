"""``ModelSummary`` callback: print the model's layer table when ``fit`` starts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ember.callbacks.callback import Callback
from ember.utilities.model_summary import ModelSummary as _Summary
from ember.utilities.model_summary import _format_summary_table
from ember.utilities.rank_zero import rank_zero_only

if TYPE_CHECKING:
    from ember.module import LightningModule
    from ember.trainer.trainer import Trainer


@rank_zero_only
def _print(text: str) -> None:
    print(text, flush=True)


class ModelSummary(Callback):
    """Print a summary of the model's layers and parameter counts at the start of ``fit``.

    Args:
        max_depth: how many levels of submodules to list; ``-1`` lists all, ``0`` turns the
            summary off.
        **summarize_kwargs: passed on to :meth:`summarize` (for subclasses that restyle it).
    """

    def __init__(self, max_depth: int = 1, **summarize_kwargs: Any) -> None:
        if not isinstance(max_depth, int) or isinstance(max_depth, bool) or max_depth < -1:
            raise ValueError(f"`max_depth` can be -1, 0 or > 0, got {max_depth!r}.")
        self._max_depth = max_depth
        self._summarize_kwargs = summarize_kwargs

    @property
    def max_depth(self) -> int:
        return self._max_depth

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._max_depth:
            return
        if not getattr(trainer, "is_global_zero", True):
            return
        summary = self._summary(trainer, pl_module)
        self.summarize(
            summary._get_summary_data(),
            summary.total_parameters,
            summary.trainable_parameters,
            summary.model_size,
            summary.total_training_modes,
            summary.total_flops,
            **self._summarize_kwargs,
        )

    def _summary(self, trainer: Trainer, pl_module: LightningModule) -> _Summary:
        return _Summary(pl_module, max_depth=self._max_depth)

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int = 0,
        **summarize_kwargs: Any,
    ) -> None:
        """Render and print the table (rank 0 only); override to show it differently."""
        table = _format_summary_table(
            total_parameters, trainable_parameters, model_size, total_training_modes, total_flops, *summary_data
        )
        _print("\n" + table)
