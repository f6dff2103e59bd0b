"""``ThroughputMonitor``: log batches/samples/items (tokens) per second, FLOP/s and MFU while running.

Keys are ``<stage>/<metric>``: ``train/device/samples_per_sec``, ``train/device/items_per_sec`` (with
``length_fn``), ``train/device/flops_per_sec`` and ``train/device/mfu`` (when the LightningModule has a
``flops_per_batch`` attribute, e.g. from :func:`ember.utilities.measure_flops`, and the GPU's peak is
known), plus the totals ``train/time``, ``train/batches``, ``train/samples``. Rates appear once
``window_size`` batches have been seen. Time spent validating is not counted as training time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from ember.callbacks._logging import _should_update_logs
from ember.callbacks.callback import Callback
from ember.trainer.states import RunningStage
from ember.utilities.rank_zero import rank_zero_only, rank_zero_warn
from ember.utilities.throughput import Throughput, get_available_flops

if TYPE_CHECKING:
    from ember.module import LightningModule
    from ember.trainer.trainer import Trainer


def _compute_dtype(precision: str) -> torch.dtype:
    if "bf16" in precision:
        return torch.bfloat16
    if "16" in precision:
        return torch.float16
    return torch.float64 if "64" in precision else torch.float32


class ThroughputMonitor(Callback):
    """Measure and log throughput.

    Args:
        batch_size_fn: ``batch -> number of samples`` in it.
        length_fn: ``batch -> number of items`` (e.g. tokens) in it, for ``items_per_sec``.
        window_size: how many batches the rates average over (at least 2).
        separator: joins the parts of the metric names.

    Example::

        class LM(pl.LightningModule):
            def setup(self, stage):
                with torch.device("meta"):
                    model, x = Net(), torch.randint(0, 100, (8, 128))
                self.flops_per_batch = measure_flops(model, lambda: model(x), lambda y: y.sum())

        trainer = pl.Trainer(callbacks=ThroughputMonitor(batch_size_fn=lambda b: b[0].size(0),
                                                         length_fn=lambda b: b[0].numel()))
    """

    def __init__(self, batch_size_fn: Callable[[Any], int], length_fn: Callable[[Any], int] | None = None,
                 **kwargs: Any) -> None:
        self.batch_size_fn = batch_size_fn
        self.length_fn = length_fn
        self.kwargs = kwargs
        self.available_flops: float | None = None
        self._throughputs: dict[RunningStage, Throughput] = {}
        self._t0s: dict[RunningStage, float] = {}
        self._totals: dict[RunningStage, list[int]] = {}  # batches, samples, lengths
        self._steps: dict[RunningStage, int] = {}  # logging step for evaluation stages
        self._module_has_flops: bool | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        device = trainer.strategy.root_device
        self.available_flops = get_available_flops(device, _compute_dtype(str(trainer.precision)))
        stages = {"fit": [RunningStage.TRAINING, RunningStage.VALIDATING], "validate": [RunningStage.VALIDATING],
                  "test": [RunningStage.TESTING], "predict": [RunningStage.PREDICTING]}[stage]
        for running in stages:
            self._throughputs[running] = Throughput(available_flops=self.available_flops,
                                                    world_size=trainer.world_size, **self.kwargs)

    # ---- measuring -------------------------------------------------------------------------

    def _start(self, trainer: Trainer, stage: RunningStage) -> None:
        if trainer.state.fn == "fit" or stage not in self._totals:
            self._throughputs[stage].reset()
            self._totals[stage] = [0, 0, 0]
        self._steps.setdefault(stage, 0)
        self._t0s[stage] = time.perf_counter()

    @torch.inference_mode()
    def _update(self, trainer: Trainer, pl_module: LightningModule, batch: Any, stage: RunningStage) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize(trainer.strategy.root_device)  # time the work, not its queueing
        elapsed = time.perf_counter() - self._t0s[stage]
        totals = self._totals[stage]
        totals[0] += 1
        totals[1] += int(self.batch_size_fn(batch))
        if self.length_fn is not None:
            totals[2] += int(self.length_fn(batch))
        if self._module_has_flops is None:
            self._module_has_flops = hasattr(pl_module, "flops_per_batch")
            if not self._module_has_flops:
                rank_zero_warn(f"ThroughputMonitor: set `flops_per_batch` on {type(pl_module).__name__} (see "
                               "ember.utilities.measure_flops) to log FLOP/s and MFU.")
        self._throughputs[stage].update(
            time=elapsed, batches=totals[0], samples=totals[1],
            lengths=totals[2] if self.length_fn is not None else None,
            flops=getattr(pl_module, "flops_per_batch", None) if self._module_has_flops else None)

    def _compute(self, trainer: Trainer, stage: RunningStage, step: int | None = None,
                 batch_idx: int | None = None) -> None:
        if not trainer.loggers or not _should_update_logs(trainer, batch_idx):
            return
        throughput = self._throughputs[stage]
        metrics = {f"{stage.value}{throughput.separator}{k}": v for k, v in throughput.compute().items()}
        trainer._log_metrics(metrics, step=step)

    # ---- hooks -----------------------------------------------------------------------------

    @rank_zero_only
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(trainer, RunningStage.TRAINING)

    @rank_zero_only
    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._update(trainer, pl_module, batch, RunningStage.TRAINING)
        accumulating = (batch_idx + 1) % trainer.accumulate_grad_batches != 0 and not trainer.is_last_batch
        if not accumulating:
            self._compute(trainer, RunningStage.TRAINING)

    @rank_zero_only
    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._start(trainer, RunningStage.VALIDATING)

    @rank_zero_only
    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if not trainer.sanity_checking:
            self._eval_batch(trainer, pl_module, batch, RunningStage.VALIDATING, batch_idx)

    @rank_zero_only
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or RunningStage.TRAINING not in self._t0s:
            return
        # validation inside fit: move the training clock forward by the time validation took
        self._t0s[RunningStage.TRAINING] += time.perf_counter() - self._t0s[RunningStage.VALIDATING]

    @rank_zero_only
    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(trainer, RunningStage.TESTING)

    @rank_zero_only
    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_batch(trainer, pl_module, batch, RunningStage.TESTING, batch_idx)

    @rank_zero_only
    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(trainer, RunningStage.PREDICTING)

    @rank_zero_only
    def on_predict_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                             batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_batch(trainer, pl_module, batch, RunningStage.PREDICTING, batch_idx)

    def _eval_batch(self, trainer: Trainer, pl_module: LightningModule, batch: Any, stage: RunningStage,
                    batch_idx: int) -> None:
        self._update(trainer, pl_module, batch, stage)
        self._steps[stage] += 1
        self._compute(trainer, stage, step=self._steps[stage], batch_idx=batch_idx)
