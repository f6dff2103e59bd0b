"""LearningRateMonitor on real fits: the values the schedulers set, under Lightning's names and steps."""

import pytest
import torch

import ember as pl
from ember.callbacks import LearningRateMonitor
from ember.utilities.exceptions import MisconfigurationException
from tests.helpers import BoringModel, trainer_kwargs
from tests.memory_logger import MemoryLogger


class Scheduled(BoringModel):
    def __init__(self, interval="step", name=None, groups=1, optimizer="sgd"):
        super().__init__()
        self.interval, self.name, self.groups, self.optimizer_kind = interval, name, groups, optimizer

    def configure_optimizers(self):
        if self.groups == 2:
            params = [{"params": [self.layer.weight]}, {"params": [self.layer.bias], "lr": 0.2}]
        else:
            params = self.parameters()
        if self.optimizer_kind == "adam":
            optimizer = torch.optim.Adam(params, lr=self.lr, betas=(0.8, 0.99), weight_decay=0.01)
        else:
            optimizer = torch.optim.SGD(params, lr=self.lr, momentum=0.9, weight_decay=0.001)
        scheduler = {"scheduler": torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5),
                     "interval": self.interval}
        if self.name:
            scheduler["name"] = self.name
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


def fit(tmp_path, model, monitor, **kwargs):
    logger = MemoryLogger()
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, logger=logger, callbacks=[monitor], log_every_n_steps=1,
                                          **kwargs))
    trainer.fit(model)
    return trainer, logger


def test_step_scheduler_lr_logged_before_every_step(tmp_path):
    monitor = LearningRateMonitor()
    trainer, logger = fit(tmp_path, Scheduled("step"), monitor, max_epochs=2)
    expected = [0.1 * 0.5 ** i for i in range(8)]
    assert monitor.lrs["lr-SGD"] == pytest.approx(expected)
    assert logger.series("lr-SGD") == [(i, pytest.approx(lr)) for i, lr in enumerate(expected)]
    assert trainer.callback_metrics["lr-SGD"].item() == pytest.approx(expected[-1])


def test_epoch_scheduler_uses_its_name_and_epoch_starts(tmp_path):
    monitor = LearningRateMonitor()
    _, logger = fit(tmp_path, Scheduled("epoch", name="my_lr"), monitor, max_epochs=3)
    assert list(monitor.lrs) == ["my_lr"]
    assert logger.series("my_lr") == [(0, pytest.approx(0.1)), (4, pytest.approx(0.05)), (8, pytest.approx(0.025))]


def test_logging_interval_epoch_ignores_step_schedulers_interval(tmp_path):
    monitor = LearningRateMonitor(logging_interval="epoch")
    _, logger = fit(tmp_path, Scheduled("step"), monitor, max_epochs=2)
    assert logger.series("lr-SGD") == [(0, pytest.approx(0.1)), (4, pytest.approx(0.1 * 0.5 ** 4))]


def test_log_every_n_steps_applies_to_step_logging(tmp_path):
    monitor = LearningRateMonitor(logging_interval="step")
    logger = MemoryLogger()
    pl.Trainer(**trainer_kwargs(tmp_path, logger=logger, callbacks=[monitor], log_every_n_steps=2,
                                max_epochs=2)).fit(Scheduled("step"))
    assert [step for step, _ in logger.series("lr-SGD")] == [1, 3, 5, 7]


def test_param_groups_momentum_and_weight_decay(tmp_path):
    monitor = LearningRateMonitor(log_momentum=True, log_weight_decay=True)
    _, logger = fit(tmp_path, Scheduled("epoch", groups=2), monitor, max_epochs=1)
    (step, logged), = [call for call in logger.calls if "lr-SGD/pg1" in call[1]]
    assert step == 0
    assert logged == {"lr-SGD/pg1": pytest.approx(0.1), "lr-SGD/pg1-momentum": 0.9,
                      "lr-SGD/pg1-weight_decay": 0.001, "lr-SGD/pg2": pytest.approx(0.2),
                      "lr-SGD/pg2-momentum": 0.9, "lr-SGD/pg2-weight_decay": 0.001}


def test_adam_momentum_is_beta1(tmp_path):
    monitor = LearningRateMonitor(log_momentum=True)
    fit(tmp_path, Scheduled("epoch", optimizer="adam"), monitor, max_epochs=1)
    assert monitor.last_momentum_values == {"lr-Adam-momentum": 0.8}


def test_optimizers_without_scheduler_and_duplicate_classes(tmp_path):
    class TwoAdams(BoringModel):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False
            self.other = torch.nn.Linear(4, 1)

        def training_step(self, batch, batch_idx):
            for opt in self.optimizers():
                opt.zero_grad()
            loss = super().training_step(batch, batch_idx) + self.other(batch[0]).pow(2).mean()
            self.manual_backward(loss)
            for opt in self.optimizers():
                opt.step()

        def configure_optimizers(self):
            return [torch.optim.Adam(self.layer.parameters(), lr=0.01),
                    torch.optim.Adam(self.other.parameters(), lr=0.02)]

    monitor = LearningRateMonitor()
    fit(tmp_path, TwoAdams(), monitor, max_steps=4)  # two optimizer steps per batch
    # without schedulers they are logged at epoch start and at every logged step
    assert monitor.lrs == {"lr-Adam": [0.01] * 3, "lr-Adam-1": [0.02] * 3}


def test_needs_a_logger(tmp_path):
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, logger=False, callbacks=[LearningRateMonitor()]))
    with pytest.raises(MisconfigurationException, match="needs a logger"):
        trainer.fit(Scheduled())


def test_bad_interval():
    with pytest.raises(MisconfigurationException, match="logging_interval='batch'"):
        LearningRateMonitor(logging_interval="batch")
