"""The fit loop: how long training runs, which batches it sees, validation scheduling, and optimization."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

import ember as pl
from ember.core import LightningOptimizer
from ember.utilities.exceptions import MisconfigurationException
from tests.helpers import BoringModel, Recorder, loader, make_trainer, reg_data, weights


class StopAt(pl.Callback):
    """Sets ``trainer.should_stop`` once ``global_step`` reaches ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def fit(tmp_path: Any, model: pl.LightningModule | None = None, **kwargs: Any) -> tuple[pl.Trainer, Recorder, Any]:
    model = model or BoringModel()
    recorder = Recorder()
    kwargs["callbacks"] = [recorder, *kwargs.get("callbacks", [])]
    trainer = make_trainer(tmp_path, **kwargs)
    trainer.fit(model)
    return trainer, recorder, model


# -- duration -------------------------------------------------------------------------------------------
def test_max_epochs(tmp_path: Any) -> None:
    trainer, rec, _ = fit(tmp_path, max_epochs=3)
    assert (trainer.current_epoch, trainer.global_step, rec.count("train_batch")) == (3, 12, 12)
    assert rec.count("train_epoch") == 3


def test_max_steps_stops_mid_epoch(tmp_path: Any) -> None:
    trainer, rec, _ = fit(tmp_path, max_epochs=5, max_steps=6)
    assert (trainer.global_step, rec.count("train_batch")) == (6, 6)
    assert trainer.current_epoch == 2  # as in Lightning: the cut-short second epoch still counts as ended


def test_max_steps_alone_sets_unlimited_epochs(tmp_path: Any) -> None:
    trainer, rec, _ = fit(tmp_path, max_epochs=None, max_steps=9)
    assert trainer.max_epochs == -1
    assert (trainer.global_step, rec.count("train_epoch")) == (9, 3)


def test_should_stop_from_callback(tmp_path: Any) -> None:
    trainer, rec, _ = fit(tmp_path, max_epochs=5, callbacks=[StopAt(2)])
    assert trainer.should_stop
    assert (trainer.global_step, rec.count("train_batch"), rec.count("train_epoch")) == (2, 2, 1)


def test_min_epochs_overrides_early_stop(tmp_path: Any) -> None:
    trainer, rec, _ = fit(tmp_path, max_epochs=5, min_epochs=3, callbacks=[StopAt(1)])
    assert trainer.should_stop
    assert rec.count("train_epoch") == 3
    assert trainer.global_step == 12  # every batch of the three epochs, not just the first


def test_min_steps_overrides_early_stop(tmp_path: Any) -> None:
    trainer, rec, _ = fit(tmp_path, max_epochs=5, min_steps=6, callbacks=[StopAt(1)])
    assert trainer.global_step == 6
    assert rec.count("train_epoch") == 2


def test_max_time_zero_stops_before_training(tmp_path: Any) -> None:
    trainer, rec, _ = fit(tmp_path, max_epochs=3, max_time={"seconds": 0})
    assert (trainer.global_step, rec.count("train_batch")) == (0, 0)
    assert rec.count("sanity_batch") == 2  # the sanity check still ran


def test_max_time_tiny_stops_after_a_batch(tmp_path: Any) -> None:
    class Slow(BoringModel):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            # burn a little time without sleeping: the first batch alone exceeds the 1 microsecond budget
            torch.randn(64, 64) @ torch.randn(64, 64)
            return super().training_step(batch, batch_idx)

    trainer, rec, _ = fit(tmp_path, Slow(), max_epochs=3, max_time={"microseconds": 1}, num_sanity_val_steps=0)
    assert rec.count("train_batch") <= 1
    assert trainer.current_epoch <= 1


def test_max_time_sets_should_stop_but_respects_min_epochs(tmp_path: Any) -> None:
    trainer, rec, _ = fit(tmp_path, max_epochs=5, min_epochs=2, max_time={"seconds": 0}, num_sanity_val_steps=0)
    assert trainer.should_stop
    assert trainer.current_epoch == 2 and rec.count("train_epoch") == 2


@pytest.mark.parametrize("limit, batches", [(3, 3), (0.5, 2), (1.0, 4), (10, 4)])
def test_limit_train_batches(tmp_path: Any, limit: Any, batches: int) -> None:
    trainer, rec, _ = fit(tmp_path, max_epochs=2, limit_train_batches=limit)
    assert trainer.num_training_batches == batches
    assert rec.count("train_batch") == 2 * batches
    assert trainer.global_step == 2 * batches


def test_limit_train_batches_zero_skips_training(tmp_path: Any) -> None:
    trainer, rec, _ = fit(tmp_path, max_epochs=2, limit_train_batches=0)
    assert (trainer.global_step, rec.count("train_batch")) == (0, 0)


@pytest.mark.parametrize("fast_dev_run, batches", [(True, 1), (3, 3)])
def test_fast_dev_run(tmp_path: Any, fast_dev_run: Any, batches: int) -> None:
    trainer = pl.Trainer(fast_dev_run=fast_dev_run, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path, callbacks=[rec := Recorder()])
    trainer.fit(BoringModel(n_train=40, n_val=40))
    assert rec.count("train_batch") == batches and trainer.global_step == batches
    assert rec.count("val_batch") == batches and rec.count("sanity_batch") == 0
    assert trainer.current_epoch == 1
    assert trainer.loggers == [] and trainer.logger is None
    assert list(tmp_path.iterdir()) == []  # no checkpoint, no logger folder
    assert trainer.checkpoint_callback is None or trainer.checkpoint_callback.best_model_path == ""
    assert trainer.test(BoringModel(n_val=40))[0]["test_loss"] > 0


def test_overfit_batches_uses_the_same_unshuffled_batches(tmp_path: Any) -> None:
    seen: list[tuple[str, int, torch.Tensor]] = []

    class Shuffled(BoringModel):
        def train_dataloader(self) -> DataLoader:
            return DataLoader(reg_data(16), batch_size=4, shuffle=True)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            seen.append(("train", self.current_epoch, batch[0].clone()))
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            seen.append(("val", self.current_epoch, batch[0].clone()))

    with pytest.warns(UserWarning, match="shuffling is turned off"):
        trainer, rec, _ = fit(tmp_path, Shuffled(), overfit_batches=2, max_epochs=3)
    assert trainer.num_training_batches == 2 and trainer.num_val_batches == [2]
    data = reg_data(16).tensors[0]
    train = [x for kind, _, x in seen if kind == "train"]
    assert len(train) == 6
    for i, x in enumerate(train):  # the first two batches, in order, every epoch
        assert torch.equal(x, data[(i % 2) * 4:(i % 2) * 4 + 4])
    val_data = BoringModel().val_dataloader().dataset.tensors[0]
    val = [x for kind, _, x in seen if kind == "val"]
    assert len(val) == 2 + 3 * 2  # sanity check + one run per epoch, 2 batches each (Lightning 2.x: val data)
    assert all(torch.equal(x, val_data[:4]) or torch.equal(x, val_data[4:8]) for x in val)


def test_on_train_batch_start_minus_one_ends_the_epoch(tmp_path: Any) -> None:
    class SkipRest(BoringModel):
        def on_train_batch_start(self, batch: Any, batch_idx: int) -> Any:
            return -1 if batch_idx == 2 else None

    trainer, rec, _ = fit(tmp_path, SkipRest(), max_epochs=3)
    steps = [(epoch_step, idx) for kind, epoch_step, idx in rec.calls if kind == "train_batch"]
    assert steps == [(0, 0), (1, 1), (2, 2), (2, 0), (3, 1), (4, 2), (4, 0), (5, 1), (6, 2)]
    assert (trainer.global_step, trainer.current_epoch) == (6, 3)


def test_limit_val_batches_zero_disables_validation(tmp_path: Any) -> None:
    trainer, rec, _ = fit(tmp_path, max_epochs=2, limit_val_batches=0)
    assert rec.count("val_batch") == 0 and rec.count("sanity_batch") == 0
    assert not trainer.enable_validation
    assert "val_loss" not in trainer.callback_metrics


def test_validation_is_skipped_without_validation_step(tmp_path: Any) -> None:
    class NoVal(BoringModel):
        validation_step = pl.LightningModule.validation_step

    trainer, rec, _ = fit(tmp_path, NoVal(), max_epochs=1)
    assert rec.count("val_batch") == 0 and rec.count("sanity_batch") == 0


@pytest.mark.parametrize("steps, expected", [(-1, 3), (0, 0), (1, 1), (None, 2)])
def test_num_sanity_val_steps(tmp_path: Any, steps: Any, expected: int) -> None:
    _, rec, _ = fit(tmp_path, BoringModel(n_val=12), num_sanity_val_steps=steps)
    assert rec.count("sanity_batch") == expected
    assert rec.count("val_batch") == 3


def test_sanity_check_does_not_change_what_training_sees(tmp_path: Any) -> None:
    draws: list[torch.Tensor] = []

    class Draws(BoringModel):
        def on_train_start(self) -> None:
            draws.append(torch.rand(3))

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            torch.rand(5)  # consumes the global RNG
            super().validation_step(batch, batch_idx)

    for steps in (0, 2):
        model = Draws()
        torch.manual_seed(123)
        make_trainer(tmp_path, num_sanity_val_steps=steps, limit_train_batches=1).fit(model)
    assert len(draws) == 2 and torch.equal(draws[0], draws[1])


def test_val_check_interval_across_epochs(tmp_path: Any) -> None:
    trainer, rec, _ = fit(tmp_path, max_epochs=3, check_val_every_n_epoch=None, val_check_interval=3,
                          num_sanity_val_steps=0)
    val_steps = [step for kind, step, idx in rec.calls if kind == "val_batch" and idx == 0]
    assert val_steps == [3, 6, 9, 12]  # every 3 batches, counted across the 4-batch epochs


def test_val_check_interval_fraction(tmp_path: Any) -> None:
    _, rec, _ = fit(tmp_path, BoringModel(n_train=32), max_epochs=1, val_check_interval=0.25, num_sanity_val_steps=0)
    val_steps = [step for kind, step, idx in rec.calls if kind == "val_batch" and idx == 0]
    assert val_steps == [2, 4, 6, 8]


def test_check_val_every_n_epoch(tmp_path: Any) -> None:
    _, rec, _ = fit(tmp_path, max_epochs=4, check_val_every_n_epoch=2, num_sanity_val_steps=0)
    val_steps = [step for kind, step, idx in rec.calls if kind == "val_batch" and idx == 0]
    assert val_steps == [8, 16]


def test_reload_dataloaders_every_n_epochs(tmp_path: Any) -> None:
    class Counting(BoringModel):
        train_calls = val_calls = 0

        def train_dataloader(self) -> DataLoader:
            self.train_calls += 1
            return loader(16 + 4 * self.train_calls)  # a new loader each time, one batch longer

        def val_dataloader(self) -> DataLoader:
            self.val_calls += 1
            return super().val_dataloader()

    trainer, rec, model = fit(tmp_path, Counting(), max_epochs=3, reload_dataloaders_every_n_epochs=1)
    assert (model.train_calls, model.val_calls) == (3, 3)
    batches_per_epoch = [sum(1 for kind, _, e in rec.calls if kind == "train_batch" and e == 0)]
    assert batches_per_epoch == [3]  # batch_idx 0 happened once per epoch
    assert trainer.global_step == 5 + 6 + 7

    trainer, rec, model = fit(tmp_path, Counting(), max_epochs=3)
    assert (model.train_calls, model.val_calls) == (1, 1)
    assert trainer.global_step == 15


# -- optimization ---------------------------------------------------------------------------------------
def test_accumulate_grad_batches_steps_the_last_partial_window(tmp_path: Any) -> None:
    stepped_at: list[int] = []

    class Steps(BoringModel):
        def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
            stepped_at.append(batch_idx)
            super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)

    trainer, rec, _ = fit(tmp_path, Steps(n_train=40), max_epochs=2, accumulate_grad_batches=3)
    assert stepped_at == [2, 5, 8, 9] * 2  # windows of 3, 3, 3 and the partial 1 at epoch end
    assert trainer.global_step == 8


def test_accumulation_equals_one_big_batch(tmp_path: Any) -> None:
    big = BoringModel(n_train=16, batch_size=8)
    make_trainer(tmp_path, max_epochs=1, limit_val_batches=0).fit(big)
    small = BoringModel(n_train=16, batch_size=4)
    make_trainer(tmp_path, max_epochs=1, limit_val_batches=0, accumulate_grad_batches=2).fit(small)
    for name, value in weights(big).items():
        torch.testing.assert_close(weights(small)[name], value)


class _BigGrads(BoringModel):
    """Gradients far above 1: records their norm / largest value before and after clipping."""

    def __init__(self) -> None:
        super().__init__(lr=1e-3)
        self.before: list[torch.Tensor] = []
        self.after: list[torch.Tensor] = []

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        x, y = batch
        return F.mse_loss(self(x), 100 * y)

    def on_before_optimizer_step(self, optimizer: Any) -> None:  # runs before clipping
        self.before.append(torch.cat([p.grad.flatten() for p in self.parameters()]).clone())

    def configure_optimizers(self) -> Any:
        module = self

        class Recording(torch.optim.SGD):
            def step(self, closure: Any = None) -> Any:  # what the real step sees, after clipping
                loss = closure() if closure is not None else None
                module.after.append(torch.cat([p.grad.flatten() for p in module.parameters()]).clone())
                super().step()
                return loss

        return Recording(self.parameters(), lr=self.lr)


@pytest.mark.parametrize("algorithm", ["norm", None])
def test_gradient_clipping_by_norm(tmp_path: Any, algorithm: Any) -> None:
    model = _BigGrads()
    fit(tmp_path, model, gradient_clip_val=0.5, gradient_clip_algorithm=algorithm, limit_val_batches=0)
    assert len(model.before) == len(model.after) == 4
    for before, after in zip(model.before, model.after):
        assert before.norm() > 5.0
        torch.testing.assert_close(after.norm(), torch.tensor(0.5), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(after, before * (0.5 / before.norm()), rtol=1e-4, atol=1e-5)


def test_gradient_clipping_by_value(tmp_path: Any) -> None:
    model = _BigGrads()
    fit(tmp_path, model, gradient_clip_val=0.1, gradient_clip_algorithm="value", limit_val_batches=0)
    for before, after in zip(model.before, model.after):
        assert before.abs().max() > 1.0
        torch.testing.assert_close(after, before.clamp(-0.1, 0.1))


def test_no_clipping_by_default(tmp_path: Any) -> None:
    model = _BigGrads()
    fit(tmp_path, model, limit_val_batches=0)
    for before, after in zip(model.before, model.after):
        assert torch.equal(before, after)


class _GAN(BoringModel):
    """Manual optimization with two optimizers, two schedulers, toggling and clipping."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.other = nn.Linear(4, 1)
        self.seen: list[dict[str, Any]] = []

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        opt_a, opt_b = self.optimizers()
        sched_a, sched_b = self.lr_schedulers()
        assert isinstance(opt_a, LightningOptimizer) and isinstance(opt_a.optimizer, torch.optim.SGD)
        self.toggle_optimizer(opt_a)
        frozen = [p.requires_grad for p in self.other.parameters()]
        loss_a = F.mse_loss(self.layer(x), 100 * y)
        opt_a.zero_grad()
        self.manual_backward(loss_a)
        norm_before = torch.cat([p.grad.flatten() for p in self.layer.parameters()]).norm()
        self.clip_gradients(opt_a, gradient_clip_val=0.5, gradient_clip_algorithm="norm")
        norm_after = torch.cat([p.grad.flatten() for p in self.layer.parameters()]).norm()
        opt_a.step()
        self.untoggle_optimizer(opt_a)
        with self.toggled_optimizer(opt_b):
            loss_b = F.mse_loss(self.other(x), y)
            opt_b.zero_grad()
            self.manual_backward(loss_b)
            opt_b.step()
        sched_a.step()
        if self.trainer.is_last_batch:
            sched_b.step()
        self.seen.append({"frozen": frozen, "restored": [p.requires_grad for p in self.other.parameters()],
                          "norm_before": norm_before, "norm_after": norm_after, "step": self.global_step,
                          "lr_a": opt_a.param_groups[0]["lr"], "lr_b": opt_b.param_groups[0]["lr"]})
        self.log("loss_a", loss_a)

    def configure_optimizers(self) -> Any:
        opt_a = torch.optim.SGD(self.layer.parameters(), lr=0.01)
        opt_b = torch.optim.SGD(self.other.parameters(), lr=0.1)
        return [{"optimizer": opt_a, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt_a, 1, gamma=0.5)},
                {"optimizer": opt_b, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt_b, 1, gamma=0.1)}]


def test_manual_optimization(tmp_path: Any) -> None:
    model = _GAN()
    other_before = weights(model.other)
    trainer, rec, _ = fit(tmp_path, model, max_epochs=2, limit_val_batches=0)
    assert trainer.global_step == 16  # every optimizer.step() counts, two per batch
    first = model.seen[0]
    assert first["frozen"] == [False, False] and first["restored"] == [True, True]
    assert first["norm_before"] > 0.5
    torch.testing.assert_close(first["norm_after"], torch.tensor(0.5), rtol=1e-4, atol=1e-4)
    assert [s["step"] for s in model.seen[:4]] == [2, 4, 6, 8]
    assert [s["lr_a"] for s in model.seen[:3]] == [0.005, 0.0025, 0.00125]  # the user steps it every batch
    assert [s["lr_b"] for s in model.seen[2:5]] == pytest.approx([0.1, 0.01, 0.01])  # ... this one per epoch
    assert not torch.equal(weights(model.other)["weight"], other_before["weight"])
    assert "loss_a" in trainer.callback_metrics


def test_manual_optimization_schedulers_are_not_stepped_automatically(tmp_path: Any) -> None:
    class Manual(BoringModel):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch: Any, batch_idx: int) -> None:
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(F.mse_loss(self(batch[0]), batch[1]))
            opt.step()

        def configure_optimizers(self) -> Any:
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            return [opt], [torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)]

    trainer, _, model = fit(tmp_path, Manual(), max_epochs=3, limit_val_batches=0)
    assert trainer.global_step == 12
    assert model.lr_schedulers().get_last_lr() == [0.1]


def test_lbfgs_runs_training_step_inside_the_closure(tmp_path: Any) -> None:
    calls: list[tuple[int, int]] = []

    class LBFGSModel(BoringModel):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            calls.append((batch_idx, self.global_step))
            return super().training_step(batch, batch_idx)

        def configure_optimizers(self) -> Any:
            return torch.optim.LBFGS(self.parameters(), lr=0.1, max_iter=3)

    model = LBFGSModel()
    before = weights(model)
    trainer, _, _ = fit(tmp_path, model, max_epochs=1, limit_val_batches=0)
    assert trainer.global_step == 4
    per_batch = [sum(1 for b, _ in calls if b == i) for i in range(4)]
    assert all(n > 1 for n in per_batch), per_batch  # LBFGS re-evaluates the closure
    assert [step for b, step in calls if b == 1] == [1] * per_batch[1]  # all within one optimizer step
    assert not torch.equal(weights(model)["layer.weight"], before["layer.weight"])


def test_training_step_returning_none_skips_the_step(tmp_path: Any) -> None:
    class SkipOdd(BoringModel):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return None if batch_idx % 2 else super().training_step(batch, batch_idx)

    model = SkipOdd()
    trainer, rec, _ = fit(tmp_path, model, max_epochs=1, limit_val_batches=0)
    assert rec.count("train_batch") == 4


def test_training_step_dict_output_reaches_on_train_batch_end(tmp_path: Any) -> None:
    outputs: list[Any] = []

    class DictOut(BoringModel):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return {"loss": super().training_step(batch, batch_idx), "extra": batch_idx}

        def on_train_batch_end(self, out: Any, batch: Any, batch_idx: int) -> None:
            outputs.append(out)

    fit(tmp_path, DictOut(), limit_val_batches=0)
    assert [o["extra"] for o in outputs] == [0, 1, 2, 3]
    assert all(not o["loss"].requires_grad for o in outputs)


# -- configure_optimizers formats ----------------------------------------------------------------------
def _configured(tmp_path: Any, returned: Any, automatic: bool = True) -> pl.Trainer:
    class Configured(BoringModel):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = automatic

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            if automatic:
                return super().training_step(batch, batch_idx)
            return None

        def configure_optimizers(self) -> Any:
            return returned(self)

    trainer = make_trainer(tmp_path, max_epochs=1, limit_val_batches=0)
    trainer.fit(Configured())
    return trainer


def test_configure_optimizers_single(tmp_path: Any) -> None:
    trainer = _configured(tmp_path, lambda m: torch.optim.Adam(m.parameters()))
    assert [type(o).__name__ for o in trainer.optimizers] == ["Adam"] and trainer.lr_scheduler_configs == []


def test_configure_optimizers_list(tmp_path: Any) -> None:
    trainer = _configured(tmp_path, lambda m: [torch.optim.Adam(m.parameters())])
    assert len(trainer.optimizers) == 1 and trainer.lr_scheduler_configs == []


def test_configure_optimizers_two_lists(tmp_path: Any) -> None:
    def returned(m: Any) -> Any:
        opt = torch.optim.SGD(m.parameters(), lr=1.0)
        return [opt], [torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)]

    trainer = _configured(tmp_path, returned)
    config = trainer.lr_scheduler_configs[0]
    assert (config.interval, config.frequency, config.name, config.monitor) == ("epoch", 1, None, None)
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.5  # stepped once, at the end of the epoch


def test_configure_optimizers_dict_with_scheduler_dict(tmp_path: Any) -> None:
    def returned(m: Any) -> Any:
        opt = torch.optim.SGD(m.parameters(), lr=1.0)
        scheduler = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 2,
                                                   "name": "my_lr"}}

    trainer = _configured(tmp_path, returned)
    config = trainer.lr_scheduler_configs[0]
    assert (config.interval, config.frequency, config.name) == ("step", 2, "my_lr")
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.25  # 4 steps, stepped every 2


def test_configure_optimizers_list_of_dicts_for_manual_optimization(tmp_path: Any) -> None:
    def returned(m: Any) -> Any:
        a, b = torch.optim.SGD(m.parameters(), lr=1.0), torch.optim.Adam(m.parameters())
        return [{"optimizer": a, "lr_scheduler": torch.optim.lr_scheduler.StepLR(a, 1)}, {"optimizer": b}]

    trainer = _configured(tmp_path, returned, automatic=False)
    assert [type(o).__name__ for o in trainer.optimizers] == ["SGD", "Adam"]
    assert len(trainer.lr_scheduler_configs) == 1
    assert trainer.lr_scheduler_configs[0].scheduler.optimizer is trainer.optimizers[0]


def test_scheduler_for_foreign_optimizer(tmp_path: Any) -> None:
    def returned(m: Any) -> Any:
        foreign = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
        return [torch.optim.SGD(m.parameters(), lr=1.0)], [torch.optim.lr_scheduler.StepLR(foreign, 1)]

    with pytest.raises(MisconfigurationException, match="wraps an optimizer that was not returned"):
        _configured(tmp_path, returned)


@pytest.mark.parametrize("kwargs, expected", [
    (dict(max_epochs=2, accumulate_grad_batches=3), 8),  # ceil(10 / 3) per epoch
    (dict(max_epochs=3, max_steps=5), 5),
    (dict(max_epochs=-1, max_steps=7), 7),
    (dict(max_epochs=2, limit_train_batches=3), 6),
    (dict(max_epochs=-1, callbacks=[StopAt(1)]), math.inf),
])
def test_estimated_stepping_batches(tmp_path: Any, kwargs: dict, expected: float) -> None:
    found: list[float] = []

    class Estimating(BoringModel):
        def configure_optimizers(self) -> Any:
            found.append(self.trainer.estimated_stepping_batches)
            return super().configure_optimizers()

    make_trainer(tmp_path, **kwargs).fit(Estimating(n_train=40))
    assert found == [expected]
