"""GradientAccumulationScheduler: the accumulation factor changes per epoch, with the right gradients."""

import pytest
import torch
import torch.nn.functional as F

import ember as pl
from ember.callbacks import GradientAccumulationScheduler
from ember.utilities.exceptions import MisconfigurationException
from tests.helpers import BoringModel, loader, trainer_kwargs, weights


class StepCounter(pl.Callback):
    def __init__(self):
        self.per_epoch = {}

    def on_train_epoch_end(self, trainer, pl_module):
        self.per_epoch[trainer.current_epoch] = trainer.global_step - sum(self.per_epoch.values())


def manual_training(model, factors, lr=0.1):
    """What accumulating ``factors[epoch]`` batches per step means, written out by hand."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for factor in factors:
        batches = list(loader(32, 4))
        for i, (x, y) in enumerate(batches):
            loss = F.mse_loss(model(x), y) / factor
            loss.backward()
            if (i + 1) % factor == 0 or i == len(batches) - 1:
                optimizer.step()
                optimizer.zero_grad()
    return weights(model)


def test_factor_follows_the_schedule(tmp_path):
    counter = StepCounter()
    scheduler = GradientAccumulationScheduler(scheduling={1: 2, 2: 4})
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=3, callbacks=[scheduler, counter]))
    model = BoringModel(n_train=32)
    trainer.fit(model)
    assert counter.per_epoch == {0: 8, 1: 4, 2: 2}
    assert trainer.accumulate_grad_batches == 4
    expected = manual_training(BoringModel(n_train=32), [1, 2, 4])
    for name, value in weights(model).items():
        torch.testing.assert_close(value, expected[name])


def test_get_accumulate_grad_batches():
    scheduler = GradientAccumulationScheduler({2: 3, 5: 8})
    assert [scheduler.get_accumulate_grad_batches(e) for e in range(7)] == [1, 1, 3, 3, 3, 8, 8]
    assert scheduler.going_to_accumulate_grad_batches()
    assert not GradientAccumulationScheduler({0: 1}).going_to_accumulate_grad_batches()


def test_conflicts_with_trainer_argument(tmp_path):
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, accumulate_grad_batches=2,
                                          callbacks=[GradientAccumulationScheduler({0: 2})]))
    with pytest.raises(ValueError, match="accumulate_grad_batches"):
        trainer.fit(BoringModel())


def test_manual_optimization_is_refused(tmp_path):
    class Manual(BoringModel):
        def __init__(self):
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            self.manual_backward(super().training_step(batch, batch_idx))

    trainer = pl.Trainer(**trainer_kwargs(tmp_path, callbacks=[GradientAccumulationScheduler({0: 2})]))
    with pytest.raises(RuntimeError, match="automatic optimization"):
        trainer.fit(Manual())


@pytest.mark.parametrize("scheduling", [{-1: 2}, {0: 0}, {1: 1.5}, {"1": 2}])
def test_bad_scheduling(scheduling):
    with pytest.raises(MisconfigurationException):
        GradientAccumulationScheduler(scheduling)
