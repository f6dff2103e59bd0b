"""The mechanisms that keep ember's training step cheap (issue 6); their speed is measured in benchmarks/.

- ember makes a fixed, small number of Python calls of its own per training step;
- torch's optimizers get their closure run first, then ``step()`` (LBFGS, optimizers with step pre-hooks
  and other optimizers still receive the closure), with the same numbers either way;
- hooks nobody implements are not called, and one that is implemented is.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from typing import Any

import torch

import ember
from ember.callbacks import Callback
from tests.helpers import BoringModel, make_trainer

_EMBER_DIR = os.path.dirname(os.path.abspath(ember.__file__)) + os.sep
# What a plain automatic-optimization step costs in ember-owned Python calls: moving the batch (1),
# self.log (1: a key already logged as a step value is stored without _Results.log), the training closure, the
# closure-first check (_may_step_directly) and _finish_batch (3). The loop steps a closure-first torch optimizer
# itself (no LightningOptimizer.step frame) and asks _should_validate only at a batch where validation may be due.
MAX_EMBER_CALLS_PER_STEP = 5


class _CountedSteps(BoringModel):
    """Counts the Python calls into ember's own code during epoch 1 (epoch 0 warms every cache up)."""

    def __init__(self) -> None:
        super().__init__(n_train=64)
        self.calls: list[str] = []

    def _profile(self, frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename.startswith(_EMBER_DIR):
            self.calls.append(f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_code.co_name}")

    def on_train_epoch_start(self) -> None:
        if self.current_epoch == 1:
            sys.setprofile(self._profile)

    def on_train_epoch_end(self) -> None:
        sys.setprofile(None)


def test_ember_calls_per_training_step_stay_within_budget(tmp_path: Any) -> None:
    model = _CountedSteps()
    trainer = make_trainer(tmp_path, max_epochs=2, limit_val_batches=0)
    trainer.fit(model)
    steps = trainer.num_training_batches
    assert steps == 16
    counts = Counter(model.calls)
    per_step = {name: n / steps for name, n in counts.items() if n >= steps}  # once per epoch is not per step
    assert sum(per_step.values()) <= MAX_EMBER_CALLS_PER_STEP, per_step
    assert per_step["module.py:log"] == 1  # the counter does see ember's calls


def test_a_listening_callback_is_called_and_costs_only_its_own_calls(tmp_path: Any) -> None:
    class Listens(Callback):
        def __init__(self) -> None:
            self.losses: list[float] = []

        def on_before_backward(self, trainer: Any, pl_module: Any, loss: torch.Tensor) -> None:
            self.losses.append(float(loss.detach()))

    listener = Listens()
    make_trainer(tmp_path, max_epochs=1, limit_val_batches=0, callbacks=[listener]).fit(BoringModel())
    assert len(listener.losses) == 4


class _StepSpy(BoringModel):
    """Records whether the raw optimizer's ``step`` received a closure."""

    def __init__(self, optimizer: str = "sgd", pre_hook: bool = False) -> None:
        super().__init__()
        self.kind, self.pre_hook = optimizer, pre_hook
        self.closures: list[bool] = []
        self.order: list[str] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.order.append("training_step")
        return super().training_step(batch, batch_idx)

    def configure_optimizers(self) -> Any:
        if self.kind == "lbfgs":
            opt = torch.optim.LBFGS(self.parameters(), lr=0.1, max_iter=2)
        else:
            opt = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)
        original = opt.step

        def step(closure: Any = None) -> Any:
            self.closures.append(closure is not None)
            return original(closure)

        opt.step = step  # type: ignore[method-assign]
        if self.pre_hook:
            opt.register_step_pre_hook(lambda *_: self.order.append("pre_hook"))
        return opt


def test_torch_optimizers_run_the_closure_first_with_the_same_numbers(tmp_path: Any) -> None:
    fast, slow = _StepSpy(), _StepSpy(pre_hook=True)
    make_trainer(tmp_path, max_epochs=2, limit_val_batches=0).fit(fast)
    make_trainer(tmp_path, max_epochs=2, limit_val_batches=0).fit(slow)
    assert fast.closures == [False] * 8  # closure run by ember, then step()
    assert slow.closures == [True] * 8  # a step pre-hook must run before training_step: the closure goes along
    assert slow.order[:4] == ["pre_hook", "training_step", "pre_hook", "training_step"]
    for a, b in zip(fast.parameters(), slow.parameters()):
        assert torch.equal(a, b)


def test_lbfgs_still_gets_its_closure(tmp_path: Any) -> None:
    model = _StepSpy("lbfgs")
    make_trainer(tmp_path, max_epochs=1, limit_val_batches=0).fit(model)
    assert model.closures == [True] * 4
    assert model.order.count("training_step") > 4  # LBFGS re-evaluated the closure


def test_clipping_switched_on_mid_fit_still_applies_on_the_plain_path(tmp_path: Any) -> None:
    class ClipLater(Callback):
        def __init__(self) -> None:
            self.weights: list[torch.Tensor] = []

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            if trainer.current_epoch == 1:
                trainer.gradient_clip_val = 1e-6

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self.weights.append(torch.cat([p.detach().flatten().clone() for p in pl_module.parameters()]))

    clip = ClipLater()
    make_trainer(tmp_path, max_epochs=2, limit_val_batches=0, callbacks=[clip]).fit(BoringModel(lr=0.1))
    first, second = clip.weights
    assert (second - first).norm() <= 4 * 0.1 * 1e-6 * 1.01  # 4 steps of SGD on gradients clipped to norm 1e-6


def test_training_still_takes_gradients_when_a_hook_switches_grad_off(tmp_path: Any) -> None:
    class GradOff(BoringModel):  # torch's step(closure) re-enables grad for the closure; ember's own step must too
        def on_train_start(self) -> None:
            torch.set_grad_enabled(False)

        def on_train_end(self) -> None:
            torch.set_grad_enabled(True)

    plain, grad_off = BoringModel(), GradOff()
    make_trainer(tmp_path, max_epochs=1, limit_val_batches=0).fit(plain)
    make_trainer(tmp_path, max_epochs=1, limit_val_batches=0).fit(grad_off)
    assert torch.is_grad_enabled()
    for a, b in zip(plain.parameters(), grad_off.parameters()):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(plain.parameters(), BoringModel().parameters()))
