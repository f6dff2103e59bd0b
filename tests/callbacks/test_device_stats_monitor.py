"""DeviceStatsMonitor on a CPU fit: CPU statistics logged around the batches due for logging."""

import pytest
import torch

import ember as pl
from ember.callbacks import DeviceStatsMonitor
from ember.callbacks.device_stats_monitor import get_device_stats
from ember.utilities.exceptions import MisconfigurationException
from tests.helpers import BoringModel, trainer_kwargs
from tests.memory_logger import MemoryLogger

pytest.importorskip("psutil")


def test_cpu_stats_around_logged_train_and_validation_batches(tmp_path):
    logger = MemoryLogger()
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, logger=logger, max_epochs=1, log_every_n_steps=2,
                                          callbacks=[DeviceStatsMonitor()]))
    trainer.fit(BoringModel())
    key = "DeviceStatsMonitor.on_train_batch_start/cpu_percent"
    assert [step for step, _ in logger.series(key)] == [1, 3]  # steps 1 and 3 are due (every 2nd)
    assert all(0.0 <= value <= 100.0 * torch.get_num_threads() for _, value in logger.series(key))
    (step, stats), = [c for c in logger.calls if "DeviceStatsMonitor.on_train_batch_end/cpu_vm_percent" in c[1]][:1]
    assert set(stats) == {f"DeviceStatsMonitor.on_train_batch_end/{k}"
                          for k in ("cpu_percent", "cpu_vm_percent", "cpu_swap_percent")}
    # validation: 2 batches, the 2nd is due; in the sanity check (step 0) and after the epoch (step 3)
    assert [s for s, _ in logger.series("DeviceStatsMonitor.on_validation_batch_end/cpu_percent")] == [0, 3]


def test_cpu_stats_false_logs_nothing_on_cpu(tmp_path):
    logger = MemoryLogger()
    pl.Trainer(**trainer_kwargs(tmp_path, logger=logger, max_steps=2, log_every_n_steps=1,
                                callbacks=[DeviceStatsMonitor(cpu_stats=False)])).fit(BoringModel())
    assert not [c for c in logger.calls if any(k.startswith("DeviceStatsMonitor") for k in c[1])]


def test_needs_a_logger(tmp_path):
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, logger=False, callbacks=[DeviceStatsMonitor()]))
    with pytest.raises(MisconfigurationException, match="needs a logger"):
        trainer.fit(BoringModel())


def test_get_device_stats_on_cpu():
    assert set(get_device_stats(torch.device("cpu"))) == {"cpu_percent", "cpu_vm_percent", "cpu_swap_percent"}
