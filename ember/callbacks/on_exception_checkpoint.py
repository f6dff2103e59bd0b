"""OnExceptionCheckpoint: save a checkpoint when fit is interrupted by an exception."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ember.callbacks.callback import Callback

if TYPE_CHECKING:
    from ember.module import LightningModule
    from ember.trainer.trainer import Trainer


class OnExceptionCheckpoint(Callback):
    """Writes ``dirpath/filename.ckpt`` when ``fit`` raises (including KeyboardInterrupt), to resume from later.

    The checkpoint is the state after the last completed step, written atomically like every other.
    """

    FILE_EXTENSION = ".ckpt"

    def __init__(self, dirpath: str | os.PathLike, filename: str = "on_exception") -> None:
        if not filename or os.sep in filename:
            raise ValueError(f"OnExceptionCheckpoint(filename={filename!r}) must be a plain file name, "
                             "e.g. 'on_exception'.")
        self.dirpath = os.fspath(dirpath)
        self.filename = filename

    @property
    def ckpt_path(self) -> str:
        """Where the checkpoint goes."""
        return os.path.join(self.dirpath, self.filename + self.FILE_EXTENSION)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if trainer.state.fn == "fit" and trainer.optimizers:
            trainer.save_checkpoint(self.ckpt_path)
