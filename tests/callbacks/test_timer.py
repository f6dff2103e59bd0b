"""Timer: it measures the stages and stops fit once the duration is spent."""

import time
from datetime import timedelta

import pytest

import ember as pl
from ember.callbacks import Timer
from ember.utilities.exceptions import MisconfigurationException
from tests.helpers import BoringModel, trainer_kwargs


class Slow(BoringModel):
    def training_step(self, batch, batch_idx):
        time.sleep(0.03)
        return super().training_step(batch, batch_idx)


def test_duration_stops_training_after_the_step_that_crossed_it(tmp_path):
    timer = Timer(duration=timedelta(seconds=0.25))
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=100, callbacks=[timer]))
    start = time.monotonic()
    trainer.fit(Slow())
    assert time.monotonic() - start < 5
    assert 0.25 <= timer.time_elapsed("train") < 2.0
    assert trainer.global_step < 100 * 4  # stopped long before max_epochs
    # the check runs after every step: at most one step past the point the limit was reached
    assert trainer.global_step <= int(timer.time_elapsed("train") / 0.03) + 2
    assert timer.time_remaining() <= 0


def test_epoch_interval_stops_at_an_epoch_boundary(tmp_path):
    timer = Timer(duration={"seconds": 0.15}, interval="epoch")
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=100, callbacks=[timer]))
    trainer.fit(Slow())
    assert trainer.global_step % 4 == 0 and 4 <= trainer.global_step < 400


def test_measures_validation_and_test(tmp_path):
    timer = Timer()
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=1, callbacks=[timer]))
    trainer.fit(BoringModel())
    assert timer.start_time("train") is not None and timer.end_time("train") is not None
    assert timer.time_elapsed("train") > 0 and timer.time_elapsed("validate") > 0
    assert timer.time_elapsed("test") == 0 and timer.time_remaining() is None
    trainer.test(BoringModel())
    assert timer.time_elapsed("test") > 0


def test_restored_clock_stops_a_run_that_is_already_over(tmp_path):
    timer = Timer(duration="00:00:00:30")
    state = timer.state_dict()
    assert set(state["time_elapsed"]) == {"train", "sanity_check", "validate", "test", "predict"}
    timer.load_state_dict({"time_elapsed": {"train": 31.0}})
    assert timer.time_elapsed() == 31.0 and timer.time_remaining() == -1.0
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=3, callbacks=[timer]))
    trainer.fit(BoringModel())
    assert trainer.global_step == 0


def test_resumed_clock_continues(tmp_path):
    timer = Timer(duration={"hours": 1})
    timer.load_state_dict({"time_elapsed": {"train": 10.0}})
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=1, callbacks=[timer]))
    trainer.fit(BoringModel())
    assert 10.0 < timer.time_elapsed("train") < 15.0
    assert trainer.global_step == 4


@pytest.mark.parametrize("duration", ["1:00:00", "00:00:00:1x", {"hourz": 1}, 5])
def test_bad_durations(duration):
    with pytest.raises(MisconfigurationException, match="Timer"):
        Timer(duration=duration)


def test_bad_interval():
    with pytest.raises(MisconfigurationException, match="interval"):
        Timer(interval="batch")
