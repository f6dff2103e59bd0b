"""``RichModelSummary``: the ``ModelSummary`` table drawn with ``rich`` (imported only when it prints)."""

from __future__ import annotations

from typing import Any

from ember.callbacks.model_summary import ModelSummary
from ember.utilities.imports import _require
from ember.utilities.model_summary import get_human_readable_count
from ember.utilities.rank_zero import rank_zero_only

_RIGHT = ("Params", "Params per Device", "FLOPs", "In sizes", "Out sizes")


class RichModelSummary(ModelSummary):
    """Print the model summary as a rich table when ``fit`` starts.

    Args:
        max_depth: how many levels of submodules to list (``-1``: all, ``0``: no summary).
        **summarize_kwargs: ``header_style`` (default ``"bold magenta"``) styles the header row.
    """

    def __init__(self, max_depth: int = 1, **summarize_kwargs: Any) -> None:
        _require("rich", "RichModelSummary", "rich")
        super().__init__(max_depth=max_depth, **summarize_kwargs)

    @staticmethod
    @rank_zero_only
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                  model_size: float, total_training_modes: dict[str, int], total_flops: int = 0,
                  **summarize_kwargs: Any) -> None:
        from rich import get_console
        from rich.table import Table

        console = get_console()
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        for header, _ in summary_data:
            if header == " ":
                table.add_column(" ", style="dim")
            elif header == "Name":
                table.add_column(header, justify="left", no_wrap=True)
            else:
                table.add_column(header, justify="right" if header in _RIGHT else "left")
        for row in zip(*(cells for _, cells in summary_data)):
            table.add_row(*row)
        console.print(table)
        grid = Table.grid(expand=True)
        grid.add_column()
        rows = [
            ("Trainable params", get_human_readable_count(int(trainable_parameters))),
            ("Non-trainable params", get_human_readable_count(int(total_parameters - trainable_parameters))),
            ("Total params", get_human_readable_count(int(total_parameters))),
            ("Total estimated model params size (MB)", f"{model_size:.3f}"),
            ("Modules in train mode", str(total_training_modes.get("train", 0))),
            ("Modules in eval mode", str(total_training_modes.get("eval", 0))),
            ("Total FLOPs", get_human_readable_count(int(total_flops))),
        ]
        for label, value in rows:
            grid.add_row(f"[bold]{label}[/]: {value}")
        console.print(grid)
