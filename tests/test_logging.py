"""``self.log``: defaults per hook, suffixes, reductions, weighting, torchmetrics, loggers and host syncs."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import DataLoader

import ember
import ember as pl
from ember.loggers import CSVLogger
from tests.helpers import BoringModel, HparamsModel, cls_data, loader, make_trainer


def _values(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: round(float(v), 5) for k, v in metrics.items()}


def _rows(trainer: pl.Trainer) -> list[dict[str, str]]:
    with open(os.path.join(trainer.logger.log_dir, "metrics.csv")) as f:
        return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


class Logs(BoringModel):
    """Logs the batch index with several options; 6 train batches of 4, 2 val batches."""

    def __init__(self) -> None:
        super().__init__(n_train=24)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        i = float(batch_idx)
        self.log("default", i)
        self.log("both", i, on_step=True, on_epoch=True)
        self.log("epoch_only", i, on_step=False, on_epoch=True)
        self.log("mx", i, reduce_fx="max", on_step=False, on_epoch=True)
        self.log("mn", i + 1, reduce_fx=torch.min, on_step=False, on_epoch=True)
        self.log("sm", i, reduce_fx="sum", on_step=False, on_epoch=True)
        self.log("weighted", i, on_step=False, on_epoch=True, batch_size=batch_idx + 1)
        self.log("bar", i, prog_bar=True, logger=False)
        self.log("t_default", torch.tensor(i))  # a scalar tensor: the fast path after the key's first log
        self.log("t_bar", torch.tensor(i), prog_bar=True, logger=False)
        self.log_dict({"d1": i, "d2": 2 * i})
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.log("val_default", float(batch_idx))
        self.log("val_step_only", float(batch_idx), on_step=True, on_epoch=False)

    def on_train_epoch_end(self) -> None:
        self.log("from_epoch_end", 7.0)


@pytest.fixture(scope="module")
def logged(tmp_path_factory: Any) -> pl.Trainer:
    tmp_path = tmp_path_factory.mktemp("logs")
    trainer = make_trainer(tmp_path, max_epochs=2, num_sanity_val_steps=0, log_every_n_steps=1,
                           logger=CSVLogger(tmp_path))
    trainer.fit(Logs())
    return trainer


def test_defaults_per_hook(logged: pl.Trainer) -> None:
    values = _values(logged.logged_metrics)
    assert values["default"] == 5.0  # training_step: on_step only -> the last step's value
    assert "default_step" not in values and "default_epoch" not in values
    assert values["val_default"] == 0.5  # validation_step: on_epoch only -> mean over the epoch
    assert values["from_epoch_end"] == 7.0  # epoch hooks: on_epoch only


def test_step_and_epoch_suffixes(logged: pl.Trainer) -> None:
    values = _values(logged.logged_metrics)
    assert values["both_step"] == 5.0 and values["both_epoch"] == 2.5 and "both" not in values
    callback = _values(logged.callback_metrics)
    assert callback["both"] == 2.5 and callback["both_epoch"] == 2.5 and callback["both_step"] == 5.0
    assert values["epoch_only"] == 2.5 and "epoch_only_epoch" not in values


def test_reduce_fx(logged: pl.Trainer) -> None:
    values = _values(logged.logged_metrics)
    assert (values["mx"], values["mn"], values["sm"]) == (5.0, 1.0, 15.0)


def test_batch_size_weighting(logged: pl.Trainer) -> None:
    # sum(i * (i + 1)) / sum(i + 1) for i in 0..5
    assert _values(logged.logged_metrics)["weighted"] == round(70 / 21, 5)


def test_log_dict_and_logger_and_prog_bar_flags(logged: pl.Trainer) -> None:
    values = _values(logged.logged_metrics)
    assert (values["d1"], values["d2"]) == (5.0, 10.0)
    assert "bar" not in values  # logger=False
    assert logged.progress_bar_metrics == {"bar": 5.0, "t_bar": 5.0}
    assert isinstance(logged.progress_bar_metrics["bar"], float)
    assert _values(logged.callback_metrics)["bar"] == 5.0


def test_eval_step_values_reach_loggers_not_callback_metrics(logged: pl.Trainer) -> None:
    assert "val_step_only" not in logged.callback_metrics
    assert _values(logged.logged_metrics)["val_step_only"] == 1.0


def test_metrics_are_tensors(logged: pl.Trainer) -> None:
    assert all(isinstance(v, torch.Tensor) for v in logged.callback_metrics.values())
    assert all(isinstance(v, torch.Tensor) for v in logged.logged_metrics.values())


def test_metrics_csv_rows_and_epoch_column(logged: pl.Trainer) -> None:
    rows = _rows(logged)
    train_rows = [r for r in rows if "default" in r]
    assert [int(r["step"]) for r in train_rows] == list(range(12))
    assert [int(r["epoch"]) for r in train_rows] == [0] * 6 + [1] * 6
    assert [float(r["t_default"]) for r in train_rows] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0] * 2
    assert all("epoch" in r for r in rows if "val_step_only" not in r)
    # evaluation step values: the step counts that dataloader's logged batches across the whole fit, no epoch
    step_rows = [r for r in rows if "val_step_only" in r]
    assert [(r["step"], r["val_step_only"], "epoch" in r) for r in step_rows] == [
        ("0", "0.0", False), ("1", "1.0", False), ("2", "0.0", False), ("3", "1.0", False)]
    epoch_rows = [r for r in rows if "both_epoch" in r]
    assert [(r["step"], r["epoch"]) for r in epoch_rows] == [("5", "0"), ("11", "1")]
    val_rows = [r for r in rows if "val_default" in r]
    assert [(r["step"], r["epoch"], float(r["val_default"])) for r in val_rows] == [("5", "0", 0.5),
                                                                                    ("11", "1", 0.5)]
    assert not any("bar" in r for r in rows)


@pytest.mark.parametrize("every, train_rows", [(1, 12), (3, 4), (4, 3), (50, 0), (0, 0)])
def test_log_every_n_steps(tmp_path: Any, every: int, train_rows: int) -> None:
    trainer = make_trainer(tmp_path, max_epochs=2, limit_val_batches=0, log_every_n_steps=every,
                           logger=CSVLogger(tmp_path))
    trainer.fit(Logs())
    rows = _rows(trainer) if os.path.exists(os.path.join(trainer.logger.log_dir, "metrics.csv")) else []
    assert len([r for r in rows if "default" in r]) == train_rows
    assert len([r for r in rows if "both_epoch" in r]) == 2  # epoch-end values are always sent


def test_torchmetrics_metric_object(tmp_path: Any) -> None:
    torchmetrics = pytest.importorskip("torchmetrics")
    correct: list[torch.Tensor] = []
    step_acc: list[float] = []

    class Classifier(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.layer = nn.Linear(4, 3)
            self.acc = torchmetrics.classification.MulticlassAccuracy(num_classes=3, average="micro")

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            logits = self.layer(x)
            hits = logits.argmax(-1) == y
            correct.append(hits)
            step_acc.append(hits.float().mean().item())
            self.acc(logits, y)
            self.log("acc", self.acc, on_step=True, on_epoch=True)
            return F.cross_entropy(logits, y)

        def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
            assert self.trainer.logged_metrics["acc_step"].item() == pytest.approx(step_acc[-1])

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.5)

    trainer = make_trainer(tmp_path, max_epochs=2)
    trainer.fit(Classifier(), DataLoader(cls_data(24), batch_size=5))  # uneven last batch
    last_epoch = torch.cat(correct[5:]).float().mean().item()
    assert trainer.callback_metrics["acc_epoch"].item() == pytest.approx(last_epoch)
    assert trainer.callback_metrics["acc"].item() == pytest.approx(last_epoch)
    assert last_epoch != pytest.approx(sum(step_acc[5:]) / 5)  # not a mean of the step values


def test_torchmetrics_in_validation(tmp_path: Any) -> None:
    torchmetrics = pytest.importorskip("torchmetrics")

    class Classifier(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.layer = nn.Linear(4, 3)
            self.acc = torchmetrics.classification.MulticlassAccuracy(num_classes=3, average="micro")

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.acc(self.layer(batch[0]), batch[1])
            self.log("val_acc", self.acc)

    model = Classifier()
    data = cls_data(30)
    result = make_trainer(tmp_path).validate(model, DataLoader(data, batch_size=7), verbose=False)
    expected = (model.layer(data.tensors[0]).argmax(-1) == data.tensors[1]).float().mean().item()
    assert result[0]["val_acc"] == pytest.approx(expected)


def test_validate_returns_epoch_metrics(tmp_path: Any) -> None:
    model = BoringModel()
    result = make_trainer(tmp_path).validate(model, verbose=False)
    x, y = model.val_dataloader().dataset.tensors
    assert result == [{"val_loss": pytest.approx(F.mse_loss(model(x), y).item())}]


def test_hparams_yaml_written(tmp_path: Any) -> None:
    trainer = make_trainer(tmp_path, logger=CSVLogger(tmp_path), limit_train_batches=1, limit_val_batches=0)
    trainer.fit(HparamsModel(lr=0.05, hidden=5))
    with open(os.path.join(trainer.logger.log_dir, "hparams.yaml")) as f:
        assert yaml.safe_load(f) == {"lr": 0.05, "hidden": 5}


def test_no_hparams_yaml_content_without_save_hyperparameters(tmp_path: Any) -> None:
    trainer = make_trainer(tmp_path, logger=CSVLogger(tmp_path), limit_train_batches=1, limit_val_batches=0)
    trainer.fit(BoringModel())
    path = Path(trainer.logger.log_dir) / "hparams.yaml"
    assert not path.exists() or not yaml.safe_load(path.read_text())


def test_default_logger_layout(tmp_path: Any) -> None:
    def run(**kwargs: Any) -> pl.Trainer:
        trainer = pl.Trainer(default_root_dir=tmp_path, max_epochs=1, enable_progress_bar=False,
                             enable_model_summary=False, enable_checkpointing=False, limit_val_batches=0,
                             log_every_n_steps=1, **kwargs)
        trainer.fit(BoringModel())
        return trainer

    trainer = run()  # the default logger
    assert trainer.logger.log_dir == str(tmp_path / "lightning_logs" / "version_0")
    assert trainer.log_dir == trainer.logger.log_dir and os.path.isdir(trainer.log_dir)
    trainer = run(logger=CSVLogger(tmp_path))
    assert trainer.logger.log_dir == str(tmp_path / "lightning_logs" / "version_1")
    assert (tmp_path / "lightning_logs" / "version_1" / "metrics.csv").exists()


class _Counter:
    """Counts Tensor host-sync methods (``item``, ``tolist``, ``float()``, ``bool()``...) called from ember."""

    METHODS = ("item", "tolist", "__float__", "__int__", "__bool__")

    def __init__(self, monkeypatch: Any) -> None:
        self.calls: list[str] = []
        root = os.path.dirname(ember.__file__) + os.sep
        for name in self.METHODS:
            original = getattr(torch.Tensor, name)

            def counted(*args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
                caller = sys._getframe(1).f_code.co_filename
                if caller.startswith(root):
                    self.calls.append(f"{_name} from {caller}:{sys._getframe(1).f_lineno}")
                return _original(*args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, counted)


class _TensorLogs(BoringModel):
    def training_step(self, batch: Any, batch_idx: int) -> Any:
        loss = super().training_step(batch, batch_idx)
        self.log("double", loss * 2, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        super().validation_step(batch, batch_idx)
        self.log("val_double", F.mse_loss(self(batch[0]), batch[1]) * 2)


def test_no_host_sync_per_step_without_logger_and_progress_bar(tmp_path: Any, monkeypatch: Any) -> None:
    counter = _Counter(monkeypatch)
    trainer = make_trainer(tmp_path, max_epochs=2)
    trainer.fit(_TensorLogs())
    assert counter.calls == []
    assert trainer.callback_metrics["double_epoch"] > 0  # the values were still recorded


def test_sync_counter_sees_logger_syncs(tmp_path: Any, monkeypatch: Any) -> None:
    """The counter above can fail: with a logger ember converts metrics to floats (one sync per row)."""
    counter = _Counter(monkeypatch)
    make_trainer(tmp_path, max_epochs=1, logger=CSVLogger(tmp_path), log_every_n_steps=1,
                 limit_val_batches=0).fit(_TensorLogs())
    assert len(counter.calls) >= 4


def test_metric_on_other_device_dtype_is_float(tmp_path: Any) -> None:
    class IntLogs(BoringModel):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            self.log("count", torch.tensor(batch_idx), on_epoch=True)
            self.log("half", torch.tensor(0.5, dtype=torch.float16))
            return super().training_step(batch, batch_idx)

    trainer = make_trainer(tmp_path, limit_val_batches=0)
    trainer.fit(IntLogs())
    assert trainer.callback_metrics["count_epoch"].item() == pytest.approx(1.5)
    assert trainer.callback_metrics["half"].dtype == torch.float32


def test_logging_in_test_and_multiple_dataloaders(tmp_path: Any) -> None:
    class Multi(BoringModel):
        def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
            self.log("idx", float(dataloader_idx))

    results = make_trainer(tmp_path).test(Multi(), [loader(8), loader(8)], verbose=False)
    assert results == [{"idx/dataloader_idx_0": 0.0}, {"idx/dataloader_idx_1": 1.0}]
