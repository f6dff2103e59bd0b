"""SpikeDetection: a designed loss curve with one spike; warn records it and goes on, error stops the fit."""

import json

import pytest

import ember as pl
from ember.callbacks import SpikeDetection
from ember.callbacks.spike import TrainingSpikeException
from tests.helpers import BoringModel, trainer_kwargs

LOSSES = [1.0, 0.9, 0.8, 0.85, 0.7, 5.0, 0.6, 0.5]  # batch 5 spikes


class Scripted(BoringModel):
    def __init__(self, losses=LOSSES):
        super().__init__(n_train=4 * len(losses))
        self.losses = losses

    def training_step(self, batch, batch_idx):
        return (self.layer.weight * 0).sum() + self.losses[batch_idx]


def test_warn_records_the_spike_and_keeps_training(tmp_path):
    detector = SpikeDetection(action="warn", window=4, exclude_batches_path=tmp_path / "skip.json")
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, callbacks=[detector], limit_val_batches=0))
    with pytest.warns(UserWarning, match="spike in batch 5"):
        trainer.fit(Scripted())
    assert trainer.global_step == len(LOSSES)
    assert detector.bad_batches == [4, 5]
    assert detector.spikes[0]["batch_idx"] == 5 and detector.spikes[0]["loss"] == 5.0
    assert detector.spikes[0]["running_mean"] == pytest.approx(sum(LOSSES[1:5]) / 4)  # window of 4
    with open(tmp_path / "skip.json") as f:
        assert json.load(f) == [4, 5]
    # the spike did not enter the statistics: the window holds the last 4 other losses
    assert list(detector._values) == pytest.approx([0.85, 0.7, 0.6, 0.5])
    assert detector.running_std is not None


def test_error_stops_training_at_the_spike(tmp_path):
    detector = SpikeDetection()
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, callbacks=[detector], limit_val_batches=0))
    with pytest.raises(TrainingSpikeException, match="batch 5"):
        trainer.fit(Scripted())
    assert trainer.global_step == 6
    with open(tmp_path / "skip_batches.json") as f:
        assert json.load(f) == [4, 5]


def test_tolerances_and_non_finite(tmp_path):
    tolerant = SpikeDetection(action="warn", rtol=None, atol=10.0)  # a jump of 4.3 is below atol
    pl.Trainer(**trainer_kwargs(tmp_path, callbacks=[tolerant], limit_val_batches=0)).fit(Scripted())
    assert tolerant.bad_batches == []
    with_std = SpikeDetection(action="warn", rtol=0.1, n_std=100.0)  # more than 100 stds away is needed
    pl.Trainer(**trainer_kwargs(tmp_path, callbacks=[with_std], limit_val_batches=0)).fit(Scripted())
    assert with_std.bad_batches == []
    nan = SpikeDetection(action="warn", warmup=0)
    with pytest.warns(UserWarning, match="batch 2"):
        pl.Trainer(**trainer_kwargs(tmp_path, callbacks=[nan], limit_val_batches=0)).fit(
            Scripted([1.0, 1.0, float("nan"), 1.0]))
    assert nan.bad_batches == [1, 2]


def test_state_dict_round_trip():
    detector = SpikeDetection(window=3)
    for value in (1.0, 2.0, 3.0, 4.0):
        detector._values.append(value)
    detector.bad_batches = [1, 2]
    restored = SpikeDetection(window=3)
    restored.load_state_dict(detector.state_dict())
    assert list(restored._values) == [2.0, 3.0, 4.0] and restored.bad_batches == [1, 2]
    assert restored.running_mean == 3.0 and restored.running_std == pytest.approx(1.0)


def test_training_step_must_return_the_loss(tmp_path):
    class NoLoss(BoringModel):
        def training_step(self, batch, batch_idx):
            super().training_step(batch, batch_idx).backward()

        def configure_optimizers(self):
            return None

    trainer = pl.Trainer(**trainer_kwargs(tmp_path, callbacks=[SpikeDetection()], limit_val_batches=0))
    with pytest.raises(TypeError, match="return the loss"):
        trainer.fit(NoLoss())
