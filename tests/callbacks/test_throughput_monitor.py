"""ThroughputMonitor: samples/s, items/s and FLOP/s from a real fit; the Throughput arithmetic; MFU."""

import pytest
import torch

import ember as pl
from ember.callbacks import ThroughputMonitor
from ember.utilities.throughput import Throughput, get_available_flops, measure_flops
from tests.helpers import BoringModel, trainer_kwargs
from tests.memory_logger import MemoryLogger


class Counted(BoringModel):
    def __init__(self):
        super().__init__()
        with torch.device("meta"):
            net, x = torch.nn.Linear(4, 1), torch.randn(4, 4)
        self.flops_per_batch = measure_flops(net, lambda: net(x), lambda y: y.sum())


def test_measure_flops_counts_forward_and_backward():
    with torch.device("meta"):
        net, x = torch.nn.Linear(8, 2), torch.randn(3, 8)
    assert measure_flops(net, lambda: net(x)) == 2 * 3 * 8 * 2  # one matmul: 2 * m * k * n
    # backward: the weight's gradient is one more matmul of the same size (x needs no gradient)
    assert measure_flops(net, lambda: net(x), lambda y: y.sum()) == 2 * (2 * 3 * 8 * 2)


def test_fit_logs_totals_and_rates(tmp_path):
    logger = MemoryLogger()
    monitor = ThroughputMonitor(batch_size_fn=lambda batch: batch[0].shape[0],
                                length_fn=lambda batch: batch[0].numel(), window_size=2)
    model = Counted()
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, logger=logger, max_epochs=2, log_every_n_steps=1,
                                          callbacks=[monitor]))
    trainer.fit(model)
    assert logger.series("train/samples") == [(i, 4 * (i + 1)) for i in range(8)]
    assert logger.series("train/lengths") == [(i, 16 * (i + 1)) for i in range(8)]
    assert [s for s, _ in logger.series("train/device/samples_per_sec")] == list(range(1, 8))  # window full
    for step, metrics in logger.calls:
        if "train/device/samples_per_sec" in metrics:
            rate = metrics["train/device/samples_per_sec"]
            assert rate > 0
            assert metrics["train/device/batches_per_sec"] == pytest.approx(rate / 4)
            assert metrics["train/device/items_per_sec"] == pytest.approx(rate * 4)  # 4 features per sample
            assert metrics["train/device/flops_per_sec"] == pytest.approx(rate / 4 * model.flops_per_batch)
            assert "train/device/mfu" not in metrics  # no known peak for a CPU
    # validation is measured on its own; its time is not counted as training time
    assert [s for s, _ in logger.series("validate/samples")] == [1, 2, 3, 4]
    assert logger.series("validate/samples")[-1][1] == 8


def test_throughput_window_world_size_and_mfu():
    throughput = Throughput(available_flops=100.0, world_size=2, window_size=3)
    for i in range(1, 5):
        throughput.update(time=float(i), batches=i, samples=8 * i, lengths=80 * i, flops=10)
    metrics = throughput.compute()
    assert metrics["time"] == 4.0 and metrics["batches"] == 4 and metrics["samples"] == 32
    assert metrics["device/batches_per_sec"] == 1.0 and metrics["batches_per_sec"] == 2.0
    assert metrics["device/samples_per_sec"] == 8.0 and metrics["samples_per_sec"] == 16.0
    assert metrics["device/items_per_sec"] == 80.0 and metrics["items_per_sec"] == 160.0
    assert metrics["flops_per_sec"] == 20.0 and metrics["device/flops_per_sec"] == 10.0
    assert metrics["device/mfu"] == 0.1
    with pytest.raises(ValueError, match="samples"):
        throughput.update(time=5.0, batches=5, samples=3)


def test_available_flops_table(monkeypatch):
    assert get_available_flops(torch.device("cpu"), torch.float32) is None
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert get_available_flops(torch.device("cuda", 0), torch.bfloat16) == 989e12
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 PCIe")
    assert get_available_flops(torch.device("cuda", 0), torch.bfloat16) == 756e12
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some Future GPU")
    assert get_available_flops(torch.device("cuda", 0), torch.bfloat16) is None


def test_warns_without_flops_per_batch(tmp_path):
    monitor = ThroughputMonitor(batch_size_fn=lambda batch: batch[0].shape[0])
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, logger=MemoryLogger(), max_steps=1, callbacks=[monitor]))
    with pytest.warns(UserWarning, match="flops_per_batch"):
        trainer.fit(BoringModel())
