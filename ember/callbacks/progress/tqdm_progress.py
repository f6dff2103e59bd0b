"""``TQDMProgressBar``: the default progress bar, drawn with tqdm on ``sys.stdout``.

Bars shown:

* ``Sanity Checking DataLoader i`` while the sanity-check validation runs,
* ``Epoch N`` for training (total = training batches per epoch; ``?`` when unknown),
* ``Validation DataLoader i`` below it while validating (removed when done),
* ``Testing DataLoader i`` / ``Predicting DataLoader i`` for ``trainer.test`` / ``trainer.predict``.

tqdm is imported only when the first bar is created, so ``import ember`` stays cheap.

When stdout is not a terminal (a CI log, a file, a pipe) the bars are not drawn; one plain line per epoch
is printed instead (``Epoch 3/9: train_loss=0.123 val_loss=0.456 (1.2 s)``), see ``progress/plain.py``.
"""

from __future__ import annotations

import time

import sys
from typing import TYPE_CHECKING, Any

from ember.callbacks.progress.plain import _plain_output, _PlainProgress
from ember.callbacks.progress.progress_bar import ProgressBar, _convert_inf, _fn_is

if TYPE_CHECKING:
    from ember.module import LightningModule
    from ember.trainer.trainer import Trainer

_PAD_SIZE = 5
_tqdm_class: Any = None


def _pad_number(text: str) -> str:
    """Right-pad a short decimal with zeros so postfix values keep a steady width
    (``1.39`` -> ``1.390``, ``2`` -> ``2.000``)."""
    if "e" in text or "E" in text or len(text) >= _PAD_SIZE:
        return text
    try:
        float(text)
    except ValueError:
        return text
    if "." not in text:
        text += "."
    return text + "0" * (_PAD_SIZE - len(text))


def _get_tqdm_class() -> Any:
    """Build (once) ember's tqdm subclass; this is where tqdm gets imported."""
    global _tqdm_class
    if _tqdm_class is None:
        if "ipykernel" in sys.modules:  # notebook: let tqdm pick its widget bar
            from tqdm.auto import tqdm as base
        else:
            from tqdm.std import tqdm as base

        class Tqdm(base):  # type: ignore[misc, valid-type]
            """tqdm whose postfix numbers keep a fixed width, so the bar does not jitter."""

            @staticmethod
            def format_num(n: Any) -> str:
                text = n if isinstance(n, str) else base.format_num(n)
                if isinstance(n, (float, str)):
                    return _pad_number(text)
                return text

        _tqdm_class = Tqdm
    return _tqdm_class


def __getattr__(name: str) -> Any:
    # ``from ember.callbacks.progress.tqdm_progress import Tqdm`` builds the class on demand
    if name == "Tqdm":
        return _get_tqdm_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class TQDMProgressBar(ProgressBar):
    """The default progress bar.

    Args:
        refresh_rate: redraw every this many batches (the last batch is always drawn);
            ``0`` turns the bar off.
        process_position: shift the bars down by ``2 * process_position`` lines, to stack the
            bars of several trainers running side by side.
        leave: keep each finished epoch's bar on screen (a new bar per epoch) instead of
            reusing one bar for all epochs.
    """

    _min_redraw_interval = 0.1  # seconds between redraws of the training bar

    BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"

    def __init__(self, refresh_rate: int = 1, process_position: int = 0, leave: bool = False) -> None:
        super().__init__()
        if refresh_rate < 0:
            raise ValueError(f"`refresh_rate` must be >= 0, got {refresh_rate}")
        self._refresh_rate = int(refresh_rate)
        self._process_position = int(process_position)
        self._leave = bool(leave)
        self._train_progress_bar: Any = None
        self._val_progress_bar: Any = None
        self._test_progress_bar: Any = None
        self._predict_progress_bar: Any = None
        self._plain = False  # decided in setup: stdout is not a terminal
        self._plain_progress = _PlainProgress()
        self._plain_count = 0

    def __getstate__(self) -> dict[str, Any]:
        # tqdm objects hold locks and file handles; a copy or pickle starts without bars
        return {k: (None if k.endswith("_progress_bar") else v) for k, v in vars(self).items()}

    # ---- settings --------------------------------------------------------------------------

    @property
    def refresh_rate(self) -> int:
        return self._refresh_rate

    @property
    def process_position(self) -> int:
        return self._process_position

    @property
    def is_enabled(self) -> bool:
        return bool(self._enabled) and self.refresh_rate > 0

    # ---- the bars (raise if used before they exist, like a missing attribute would) ---------

    def _bar(self, attr: str, label: str) -> Any:
        bar = getattr(self, attr)
        if bar is None:
            raise TypeError(f"The `{self.__class__.__name__}.{label}` reference has not been set yet.")
        return bar

    @property
    def train_progress_bar(self) -> Any:
        return self._bar("_train_progress_bar", "train_progress_bar")

    @train_progress_bar.setter
    def train_progress_bar(self, bar: Any) -> None:
        self._train_progress_bar = bar

    @property
    def val_progress_bar(self) -> Any:
        return self._bar("_val_progress_bar", "val_progress_bar")

    @val_progress_bar.setter
    def val_progress_bar(self, bar: Any) -> None:
        self._val_progress_bar = bar

    @property
    def test_progress_bar(self) -> Any:
        return self._bar("_test_progress_bar", "test_progress_bar")

    @test_progress_bar.setter
    def test_progress_bar(self, bar: Any) -> None:
        self._test_progress_bar = bar

    @property
    def predict_progress_bar(self) -> Any:
        return self._bar("_predict_progress_bar", "predict_progress_bar")

    @predict_progress_bar.setter
    def predict_progress_bar(self, bar: Any) -> None:
        self._predict_progress_bar = bar

    # ---- bar factories (override to restyle) -----------------------------------------------

    def _make_bar(self, desc: str, position: int, leave: bool) -> Any:
        return _get_tqdm_class()(
            desc=desc,
            position=position,
            disable=self.is_disabled or self._plain,
            leave=leave,
            dynamic_ncols=True,
            file=sys.stdout,  # looked up now, so redirected/captured stdout is honoured
            smoothing=0,
            bar_format=self.BAR_FORMAT,
        )

    def init_sanity_tqdm(self) -> Any:
        """The bar for the sanity-check validation."""
        return self._make_bar(self.sanity_check_description, 2 * self.process_position, leave=False)

    def init_train_tqdm(self) -> Any:
        """The main (epoch) bar."""
        return self._make_bar(self.train_description, 2 * self.process_position, leave=True)

    def init_validation_tqdm(self) -> Any:
        """The validation bar: under the main bar during fit, on its own (and kept) for validate."""
        has_main_bar = self._trainer is None or not _fn_is(self._trainer, "validate")
        return self._make_bar(
            self.validation_description, 2 * self.process_position + int(has_main_bar), leave=not has_main_bar
        )

    def init_test_tqdm(self) -> Any:
        return self._make_bar(self.test_description, 2 * self.process_position, leave=True)

    def init_predict_tqdm(self) -> Any:
        return self._make_bar(self.predict_description, 2 * self.process_position, leave=True)

    # ---- helpers ---------------------------------------------------------------------------

    def _should_update(self, current: int, total: int | float | None) -> bool:
        return self.is_enabled and (current % self.refresh_rate == 0 or current == total)

    @staticmethod
    def _reset(bar: Any, total: int | float | None, desc: str | None = None) -> None:
        if bar.disable:
            return
        # tqdm's reset(total=None) would keep the old total; an unknown length must show "?"
        bar.total = _convert_inf(total)
        if desc is not None:
            bar.set_description(desc, refresh=False)
        bar.reset()
        bar.initial = 0

    @staticmethod
    def _update_n(bar: Any, n: int, postfix: dict[str, Any] | None = None) -> None:
        if bar.disable:
            return
        bar.n = n
        if postfix is not None:
            bar.set_postfix(postfix, refresh=False)
        bar.refresh()

    def _set_postfix(self, bar: Any, trainer: Trainer, pl_module: LightningModule) -> None:
        if bar is not None and not bar.disable:
            bar.set_postfix(self.get_metrics(trainer, pl_module))

    # ---- plain lines when stdout is not a terminal ----------------------------------------

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._plain = _plain_output()

    def _plain_start(self, description: str) -> None:
        self._plain_count = 0
        self._plain_progress.start(description)

    def _plain_end(self, description: str) -> None:
        if self._plain and self.is_enabled:
            self._plain_progress.emit(self._plain_progress.loop_line(description, self._plain_count))

    # ---- sanity check ----------------------------------------------------------------------

    def on_sanity_check_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.val_progress_bar = self.init_sanity_tqdm()
        self.train_progress_bar = _get_tqdm_class()(disable=True)  # placeholder so validation hooks need no checks

    def on_sanity_check_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._train_progress_bar is not None:
            self._train_progress_bar.close()
        if self._val_progress_bar is not None:
            self._val_progress_bar.close()
        self._train_progress_bar = None
        self._val_progress_bar = None

    # ---- training --------------------------------------------------------------------------

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.train_progress_bar = self.init_train_tqdm()

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self._plain_progress.start("epoch")
        if self._leave or self._train_progress_bar is None:
            if self._leave and self._train_progress_bar is not None:
                self._train_progress_bar.close()
            self.train_progress_bar = self.init_train_tqdm()
        self._reset(self.train_progress_bar, self.total_train_batches, f"Epoch {trainer.current_epoch}")

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        n = batch_idx + 1
        bar = self._train_progress_bar
        if bar is None or bar.disable or not self._should_update(n, bar.total):
            return
        if n != bar.total and time.time() - getattr(bar, "last_print_t", 0.0) < self._min_redraw_interval:
            bar.n = n  # redrawn at most every 0.1 s: reading the metrics costs a host sync each time
            return
        self._update_n(bar, n, self.get_metrics(trainer, pl_module))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._plain and self.is_enabled:
            self._plain_progress.emit(self._plain_progress.epoch_line(trainer, self.get_metrics(trainer, pl_module)))
        bar = self._train_progress_bar
        if bar is None:
            return
        if not bar.disable:
            # make sure the last batch is drawn even if refresh_rate skipped it
            if bar.n != self.train_batch_idx:
                bar.n = self.train_batch_idx
            bar.set_postfix(self.get_metrics(trainer, pl_module))
        if self._leave:
            bar.close()

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._train_progress_bar is not None:
            self._train_progress_bar.close()

    # ---- validation ------------------------------------------------------------------------

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_start(trainer, pl_module)
        self._plain_start(self.validation_description)
        if not trainer.sanity_checking:
            self.val_progress_bar = self.init_validation_tqdm()

    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        super().on_validation_batch_start(trainer, pl_module, batch, batch_idx, dataloader_idx)
        if not self.has_dataloader_changed(dataloader_idx) or self._val_progress_bar is None:
            return
        desc = self.sanity_check_description if trainer.sanity_checking else self.validation_description
        self._reset(self._val_progress_bar, self.total_val_batches_current_dataloader,
                    f"{desc} DataLoader {dataloader_idx}")

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:
        super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        self._plain_count += 1
        n = batch_idx + 1
        bar = self._val_progress_bar
        if bar is not None and self._should_update(n, bar.total):
            self._update_n(bar, n)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._val_progress_bar is not None:
            self._val_progress_bar.close()
            self._val_progress_bar = None
        self.reset_dataloader_idx_tracker()
        if _fn_is(trainer, "validate"):
            self._plain_end(self.validation_description)
        if _fn_is(trainer, "fit") and not trainer.sanity_checking:
            # show the fresh validation metrics on the epoch bar
            self._set_postfix(self._train_progress_bar, trainer, pl_module)

    # ---- test ------------------------------------------------------------------------------

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_test_start(trainer, pl_module)
        self._plain_start(self.test_description)
        self.test_progress_bar = self.init_test_tqdm()

    def on_test_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        super().on_test_batch_start(trainer, pl_module, batch, batch_idx, dataloader_idx)
        if not self.has_dataloader_changed(dataloader_idx) or self._test_progress_bar is None:
            return
        self._reset(self._test_progress_bar, self.total_test_batches_current_dataloader,
                    f"{self.test_description} DataLoader {dataloader_idx}")

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:
        super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        self._plain_count += 1
        n = batch_idx + 1
        bar = self._test_progress_bar
        if bar is not None and self._should_update(n, bar.total):
            self._update_n(bar, n)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._test_progress_bar is not None:
            self._test_progress_bar.close()
            self._test_progress_bar = None
        self.reset_dataloader_idx_tracker()
        self._plain_end(self.test_description)

    # ---- predict ---------------------------------------------------------------------------

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_predict_start(trainer, pl_module)
        self._plain_start(self.predict_description)
        self.predict_progress_bar = self.init_predict_tqdm()

    def on_predict_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        super().on_predict_batch_start(trainer, pl_module, batch, batch_idx, dataloader_idx)
        if not self.has_dataloader_changed(dataloader_idx) or self._predict_progress_bar is None:
            return
        self._reset(self._predict_progress_bar, self.total_predict_batches_current_dataloader,
                    f"{self.predict_description} DataLoader {dataloader_idx}")

    def on_predict_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
        batch_idx: int, dataloader_idx: int = 0,
    ) -> None:
        super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        self._plain_count += 1
        n = batch_idx + 1
        bar = self._predict_progress_bar
        if bar is not None and self._should_update(n, bar.total):
            self._update_n(bar, n)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._predict_progress_bar is not None:
            self._predict_progress_bar.close()
            self._predict_progress_bar = None
        self.reset_dataloader_idx_tracker()
        self._plain_end(self.predict_description)

    # ---- errors ----------------------------------------------------------------------------

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        # leave the terminal clean: close whatever is still open
        for attr in ("_val_progress_bar", "_test_progress_bar", "_predict_progress_bar", "_train_progress_bar"):
            bar = getattr(self, attr)
            if bar is not None:
                try:
                    bar.close()
                except Exception:
                    pass
                setattr(self, attr, None)

    # ---- printing --------------------------------------------------------------------------

    def print(self, *args: Any, sep: str = " ", **kwargs: Any) -> None:
        """Print a message above the bars without garbling them."""
        active = None
        for attr in ("_val_progress_bar", "_test_progress_bar", "_predict_progress_bar", "_train_progress_bar"):
            bar = getattr(self, attr)
            if bar is not None and not bar.disable:
                active = bar
                break
        if active is None:
            print(*args, sep=sep, **kwargs)
            return
        kwargs.setdefault("file", sys.stdout)
        active.write(sep.join(map(str, args)), **kwargs)
