"""Preemption: SIGTERM (and SIGUSR1 on SLURM) become "finish this step, checkpoint, exit"."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

from ember.utilities.rank_zero import rank_zero_info

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer


class _Preempted(Exception):
    """Raised inside fit once the preemption checkpoint is written; fit turns it into an exit."""

    def __init__(self, signum: int, path: str) -> None:
        super().__init__(f"received signal {signum}; checkpoint saved to {path}")
        self.signum, self.path = signum, path


class _SignalHandlers:
    """Records preemption signals while fit runs; the loop checks ``received`` after each batch."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def register(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be installed from the main thread
        signals = [signal.SIGTERM]
        if "SLURM_JOB_ID" in os.environ and hasattr(signal, "SIGUSR1"):
            signals.append(signal.SIGUSR1)
        for signum in signals:
            self._previous[signum] = signal.signal(signum, self._record)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


def _hpc_checkpoints(folder: str) -> list[tuple[int, str]]:
    if not os.path.isdir(folder):
        return []
    found = [(int(m.group(1)), os.path.join(folder, name)) for name in os.listdir(folder)
             if (m := re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", name))]
    return sorted(found)


def _save_preemption_checkpoint(trainer: Trainer, signum: int) -> str:
    """Write the checkpoint a restarted job resumes from: ``last.ckpt`` (or ``hpc_ckpt_N`` on SLURM)."""
    if signum != signal.SIGTERM and "SLURM_JOB_ID" in os.environ:
        found = _hpc_checkpoints(trainer.default_root_dir)
        path = os.path.join(trainer.default_root_dir, f"hpc_ckpt_{found[-1][0] + 1 if found else 1}.ckpt")
    else:
        callback = trainer.checkpoint_callback
        folder = callback.dirpath if callback is not None and callback.dirpath else \
            os.path.join(trainer.default_root_dir, "checkpoints")
        path = os.path.join(folder, "last.ckpt")
    trainer.save_checkpoint(path)
    rank_zero_info(f"Received signal {signum}: saved {path} after global step {trainer.global_step}; exiting. "
                   "Resume with fit(..., ckpt_path='last') (or 'hpc' on SLURM).")
    if signum != signal.SIGTERM and shutil.which("scontrol") and "SLURM_JOB_ID" in os.environ:
        subprocess.run(["scontrol", "requeue", os.environ["SLURM_JOB_ID"]], check=False)
    return path
