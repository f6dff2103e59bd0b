"""``RichProgressBar``: progress bars drawn with ``rich`` (the optional ``rich`` extra).

One bar per running loop, like the tqdm bar: ``Epoch 0/9`` for training (the logged metrics beside it),
a ``Validation DataLoader i`` bar under it while validating, ``Sanity Checking``, ``Testing`` and
``Predicting`` bars. When the console is not a terminal (CI logs, files), nothing is drawn; one plain
line per epoch is printed instead (see ``progress/plain.py``). ``rich`` is imported when the callback
is created, never by ``import ember``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ember.callbacks.progress.plain import _PlainProgress
from ember.callbacks.progress.progress_bar import ProgressBar, _convert_inf, _fn_is
from ember.utilities.imports import _require

if TYPE_CHECKING:
    from ember.module import LightningModule
    from ember.trainer.trainer import Trainer


@dataclass
class RichProgressBarTheme:
    """Styles (rich style strings or ``rich.style.Style``) of the parts of the bars."""

    description: Any = ""
    progress_bar: Any = "#6206E0"
    progress_bar_finished: Any = "#6206E0"
    progress_bar_pulse: Any = "#6206E0"
    batch_progress: Any = ""
    time: Any = "dim"
    processing_speed: Any = "dim underline"
    metrics: Any = "italic"
    metrics_text_delimiter: str = " "
    metrics_format: str = ".3f"


def _columns(theme: RichProgressBarTheme) -> list[Any]:
    from rich.progress import BarColumn, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from rich.text import Text

    class Count(ProgressColumn):
        def render(self, task: Any) -> Text:
            total = "?" if task.total is None else int(task.total)
            return Text(f"{int(task.completed)}/{total}", style=theme.batch_progress)

    class Speed(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:.2f}it/s", style=theme.processing_speed)

    return [TextColumn("[progress.description]{task.description}", style=theme.description),
            BarColumn(complete_style=theme.progress_bar, finished_style=theme.progress_bar_finished,
                      pulse_style=theme.progress_bar_pulse),
            Count(), TimeElapsedColumn(), TextColumn("•", style=theme.time), TimeRemainingColumn(), Speed(),
            TextColumn("{task.fields[metrics]}", style=theme.metrics)]


class RichProgressBar(ProgressBar):
    """Progress bars drawn with `rich <https://github.com/Textualize/rich>`_ (``pip install rich``).

    Args:
        refresh_rate: redraw every this many batches (the last is always drawn); ``0`` turns it off.
        leave: keep one finished bar per epoch on screen instead of reusing one bar.
        theme: the styles, a :class:`RichProgressBarTheme`.
        console_kwargs: arguments for the ``rich.console.Console`` the bars draw on.
    """

    def __init__(self, refresh_rate: int = 1, leave: bool = False, theme: RichProgressBarTheme | None = None,
                 console_kwargs: dict[str, Any] | None = None) -> None:
        _require("rich", "RichProgressBar", "rich")
        super().__init__()
        if refresh_rate < 0:
            raise ValueError(f"RichProgressBar(refresh_rate={refresh_rate}) must be >= 0.")
        self._refresh_rate = refresh_rate
        self._leave = leave
        self.theme = theme or RichProgressBarTheme()
        self._console_kwargs = dict(console_kwargs or {})
        self._console: Any = None
        self.progress: Any = None
        self.train_progress_bar_id: Any = None
        self.val_progress_bar_id: Any = None
        self.test_progress_bar_id: Any = None
        self.predict_progress_bar_id: Any = None
        self._plain = False
        self._plain_progress = _PlainProgress()
        self._loop_batches = 0

    def __getstate__(self) -> dict[str, Any]:
        # the console and the live display hold locks, threads and file handles
        return {**vars(self), "_console": None, "progress": None}

    @property
    def refresh_rate(self) -> int:
        return self._refresh_rate

    @property
    def is_enabled(self) -> bool:
        return bool(self._enabled) and self._refresh_rate > 0

    # ---- the display -----------------------------------------------------------------------

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        from rich.console import Console

        self._console = Console(**self._console_kwargs)
        self._plain = not self._console.is_terminal and not self._console.is_jupyter

    def _start(self) -> None:
        if self.progress is not None or self._plain or not self.is_enabled:
            return
        from rich.progress import Progress

        self.progress = Progress(*_columns(self.theme), console=self._console, auto_refresh=False,
                                 transient=False)
        self.progress.start()

    def _stop(self) -> None:
        if self.progress is not None:
            self.progress.refresh()
            self.progress.stop()
        self.progress = None
        self.train_progress_bar_id = self.val_progress_bar_id = None
        self.test_progress_bar_id = self.predict_progress_bar_id = None

    def _add(self, description: str, total: Any, visible: bool = True) -> Any:
        return self.progress.add_task(description, total=_convert_inf(total), metrics="", visible=visible)

    def _update(self, task: Any, completed: int, total: Any = None, force: bool = False, **fields: Any) -> None:
        if self.progress is None or task is None:
            return
        self.progress.update(task, completed=completed, **fields)
        if force or completed % self._refresh_rate == 0 or (total is not None and completed == total):
            self.progress.refresh()

    def _metrics_text(self, trainer: Trainer, pl_module: LightningModule) -> str:
        parts = []
        for name, value in self.get_metrics(trainer, pl_module).items():
            value = value.item() if hasattr(value, "item") else value
            shown = format(value, self.theme.metrics_format) if isinstance(value, float) else str(value)
            parts.append(f"{name}: {shown}")
        return self.theme.metrics_text_delimiter.join(parts)

    def _epoch_description(self, trainer: Trainer) -> str:
        max_epochs = getattr(trainer, "max_epochs", -1)
        return f"Epoch {trainer.current_epoch}/{max_epochs - 1}" if max_epochs and max_epochs > 0 else \
            f"Epoch {trainer.current_epoch}"

    # ---- sanity check and training ---------------------------------------------------------

    def on_sanity_check_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start()

    def on_sanity_check_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.progress is not None and self.val_progress_bar_id is not None:
            self.progress.remove_task(self.val_progress_bar_id)
            self.progress.refresh()
        self.val_progress_bar_id = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start()

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self._plain_progress.start("epoch")
        if self.progress is None:
            return
        description, total = self._epoch_description(trainer), _convert_inf(self.total_train_batches)
        if self.train_progress_bar_id is None or self._leave:
            self.train_progress_bar_id = self._add(description, total)
        else:
            self.progress.reset(self.train_progress_bar_id, total=total, description=description, visible=True)
        self.progress.refresh()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self.progress is not None:
            self._update(self.train_progress_bar_id, batch_idx + 1, _convert_inf(self.total_train_batches),
                         metrics=self._metrics_text(trainer, pl_module))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._plain and self.is_enabled:
            self._print_plain(self._plain_progress.epoch_line(trainer, self.get_metrics(trainer, pl_module)))
        self._update(self.train_progress_bar_id, self.train_batch_idx, force=True,
                     metrics=self._metrics_text(trainer, pl_module))

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._stop()

    # ---- validation ------------------------------------------------------------------------

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_start(trainer, pl_module)
        self._loop_batches = 0
        self._plain_progress.start(self.validation_description)
        if not _fn_is(trainer, "fit"):
            self._start()

    def on_validation_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        super().on_validation_batch_start(trainer, pl_module, batch, batch_idx, dataloader_idx)
        if self.progress is None or not self.has_dataloader_changed(dataloader_idx):
            return
        if self.val_progress_bar_id is not None:
            self.progress.remove_task(self.val_progress_bar_id)
        desc = self.sanity_check_description if trainer.sanity_checking else self.validation_description
        self.val_progress_bar_id = self._add(f"{desc} DataLoader {dataloader_idx}",
                                             self.total_val_batches_current_dataloader)
        self.progress.refresh()

    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        self._loop_batches += 1
        self._update(self.val_progress_bar_id, batch_idx + 1, _convert_inf(self.total_val_batches_current_dataloader))

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.reset_dataloader_idx_tracker()
        if _fn_is(trainer, "fit"):
            if self.progress is not None and self.val_progress_bar_id is not None and not trainer.sanity_checking:
                self.progress.remove_task(self.val_progress_bar_id)  # the epoch bar stays, its metrics updated
                self.val_progress_bar_id = None
                self._update(self.train_progress_bar_id, self.train_batch_idx, force=True,
                             metrics=self._metrics_text(trainer, pl_module))
            return
        self._end_loop(self.validation_description)

    # ---- test and predict ------------------------------------------------------------------

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_test_start(trainer, pl_module)
        self._begin_loop(self.test_description)

    def on_test_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        super().on_test_batch_start(trainer, pl_module, batch, batch_idx, dataloader_idx)
        if self.progress is not None and self.has_dataloader_changed(dataloader_idx):
            self.test_progress_bar_id = self._add(f"{self.test_description} DataLoader {dataloader_idx}",
                                                  self.total_test_batches_current_dataloader)

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        self._loop_batches += 1
        self._update(self.test_progress_bar_id, batch_idx + 1,
                     _convert_inf(self.total_test_batches_current_dataloader))

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.reset_dataloader_idx_tracker()
        self._end_loop(self.test_description)

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_predict_start(trainer, pl_module)
        self._begin_loop(self.predict_description)

    def on_predict_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                               dataloader_idx: int = 0) -> None:
        super().on_predict_batch_start(trainer, pl_module, batch, batch_idx, dataloader_idx)
        if self.progress is not None and self.has_dataloader_changed(dataloader_idx):
            self.predict_progress_bar_id = self._add(f"{self.predict_description} DataLoader {dataloader_idx}",
                                                     self.total_predict_batches_current_dataloader)

    def on_predict_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        self._loop_batches += 1
        self._update(self.predict_progress_bar_id, batch_idx + 1,
                     _convert_inf(self.total_predict_batches_current_dataloader))

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.reset_dataloader_idx_tracker()
        self._end_loop(self.predict_description)

    def _begin_loop(self, description: str) -> None:
        self._loop_batches = 0
        self._plain_progress.start(description)
        self._start()

    def _end_loop(self, description: str) -> None:
        if self._plain and self.is_enabled:
            self._print_plain(self._plain_progress.loop_line(description, self._loop_batches))
        self._stop()

    # ---- errors and printing ---------------------------------------------------------------

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._stop()

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._stop()

    def _print_plain(self, line: str) -> None:
        if self._console is not None:
            self._console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, flush=True)

    def print(self, *args: Any, **kwargs: Any) -> None:
        """Print above the bars without breaking them."""
        if self._console is None:
            print(*args, **kwargs)
        else:
            self._console.print(*args, markup=False, highlight=False, soft_wrap=True)
