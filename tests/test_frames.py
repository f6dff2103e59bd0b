"""How deep ember's call stack is when the user's ``training_step`` runs (DESIGN.md: "One path").

Lightning puts 22 of its own frames between ``trainer.fit`` and ``training_step``; ember allows six.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import torch
import torch.nn.functional as F

import ember
from tests.helpers import BoringModel, make_trainer

MAX_EMBER_FRAMES = 6
_EMBER_DIR = os.path.dirname(os.path.abspath(ember.__file__)) + os.sep


def _ember_frames() -> list[str]:
    """``file:line function`` of every frame inside the ember package, innermost first (the caller excluded)."""
    frames = []
    frame = sys._getframe(2)  # skip this helper and the training_step that called it
    while frame is not None:
        path = os.path.abspath(frame.f_code.co_filename)
        if path.startswith(_EMBER_DIR):
            frames.append(f"{os.path.relpath(path, os.path.dirname(_EMBER_DIR.rstrip(os.sep)))}:{frame.f_lineno} "
                          f"{frame.f_code.co_name}")
        frame = frame.f_back
    return frames


class _Automatic(BoringModel):
    def __init__(self) -> None:
        super().__init__()
        self.stacks: list[list[str]] = []

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        self.stacks.append(_ember_frames())
        return super().training_step(batch, batch_idx)


class _Manual(_Automatic):
    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch: Any, batch_idx: int) -> None:
        self.stacks.append(_ember_frames())
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(F.mse_loss(self(batch[0]), batch[1]))
        opt.step()


def _check(stacks: list[list[str]]) -> None:
    assert stacks, "training_step never ran"
    deepest = max(stacks, key=len)
    listing = "\n  ".join(deepest)
    assert len(deepest) <= MAX_EMBER_FRAMES, (
        f"{len(deepest)} ember frames between trainer.fit and training_step (at most {MAX_EMBER_FRAMES}):\n  {listing}")
    assert any("trainer.py" in f and " fit" in f for f in deepest), f"fit is not on the stack:\n  {listing}"


def test_automatic_optimization_frames(tmp_path: Any) -> None:
    model = _Automatic()
    make_trainer(tmp_path, max_epochs=1, limit_val_batches=0).fit(model)
    _check(model.stacks)


def test_automatic_optimization_with_accumulation_and_clipping_frames(tmp_path: Any) -> None:
    model = _Automatic()
    make_trainer(tmp_path, max_epochs=1, limit_val_batches=0, accumulate_grad_batches=2,
                 gradient_clip_val=1.0).fit(model)
    _check(model.stacks)


def test_manual_optimization_frames(tmp_path: Any) -> None:
    model = _Manual()
    make_trainer(tmp_path, max_epochs=1, limit_val_batches=0).fit(model)
    _check(model.stacks)


def test_lbfgs_frames(tmp_path: Any) -> None:
    class LBFGS(_Automatic):
        def configure_optimizers(self) -> Any:
            return torch.optim.LBFGS(self.parameters(), max_iter=2)

    model = LBFGS()
    make_trainer(tmp_path, max_epochs=1, limit_val_batches=0, limit_train_batches=2).fit(model)
    _check(model.stacks)


def test_the_frame_counter_sees_ember_frames(tmp_path: Any) -> None:
    """The counter can fail: it finds fit, the loop and the closure on the stack."""
    model = _Automatic()
    make_trainer(tmp_path, max_epochs=1, limit_val_batches=0, limit_train_batches=1).fit(model)
    names = " ".join(model.stacks[0])
    assert len(model.stacks[0]) >= 3
    for expected in ("fit", "_train_epoch", "__call__"):
        assert expected in names, names
