"""TensorBoardLogger on real fits, read back with TensorBoard's own EventAccumulator."""

import csv
import glob
import os

import pytest
import torch
import yaml

import ember as pl
from ember.loggers import CSVLogger, TensorBoardLogger
from tests.helpers import BoringModel, HparamsModel, trainer_kwargs

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402


def events(log_dir):
    """An EventAccumulator, loaded, for every events file in ``log_dir``."""
    files = sorted(glob.glob(os.path.join(log_dir, "events.out.tfevents.*")))
    accumulators = []
    for path in files:
        acc = EventAccumulator(path, size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        accumulators.append(acc)
    return accumulators


def scalars(log_dir, tag):
    return [(e.step, e.value) for acc in events(log_dir) if tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)]


def hparams_session(log_dir):
    """The hyperparameters TensorBoard's HPARAMS tab shows, as {name: value}."""
    for acc in events(log_dir):
        content = acc.PluginTagToContent("hparams")
        if "_hparams_/session_start_info" in content:
            data = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
            out = {}
            for name, value in data.session_start_info.hparams.items():
                kind = value.WhichOneof("kind")
                out[name] = getattr(value, kind)
            return out
    return None


def test_fit_writes_scalars_at_the_trainers_steps_and_hparams(tmp_path):
    tb, csv_logger = TensorBoardLogger(tmp_path), CSVLogger(tmp_path, name="csv")
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=2, log_every_n_steps=1, logger=[tb, csv_logger]))
    trainer.fit(HparamsModel(lr=0.1, hidden=3))
    assert tb.log_dir == os.path.join(str(tmp_path), "lightning_logs", "version_0")
    # 16 samples / batch 4 = 4 steps per epoch; epoch-end metrics land on the epoch's last step
    train_loss = scalars(tb.log_dir, "train_loss")
    assert [s for s, _ in train_loss] == list(range(8))
    assert [s for s, _ in scalars(tb.log_dir, "val_loss")] == [3, 7]
    assert [s for s, _ in scalars(tb.log_dir, "hp_metric")] == [0]
    assert scalars(tb.log_dir, "hp_metric")[0][1] == -1
    # both loggers saw the same numbers at the same steps
    with open(os.path.join(csv_logger.log_dir, "metrics.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["train_loss"]]
    assert [int(r["step"]) for r in rows] == [s for s, _ in train_loss]
    assert [float(r["train_loss"]) for r in rows] == pytest.approx([v for _, v in train_loss], rel=1e-6)
    # hyperparameters: hparams.yaml and the HPARAMS tab
    with open(os.path.join(tb.log_dir, "hparams.yaml")) as f:
        assert yaml.safe_load(f) == {"lr": 0.1, "hidden": 3}
    assert hparams_session(tb.log_dir) == {"lr": 0.1, "hidden": 3.0}


def test_default_logger_is_tensorboard_with_versioned_dirs(tmp_path):
    first = pl.Trainer(**trainer_kwargs(tmp_path, logger=True, max_steps=2, log_every_n_steps=2))
    assert isinstance(first.logger, TensorBoardLogger)
    first.fit(BoringModel())
    assert first.log_dir == os.path.join(str(tmp_path), "lightning_logs", "version_0")
    assert [s for s, _ in scalars(first.log_dir, "train_loss")] == [1]  # every 2nd step
    second = pl.Trainer(**trainer_kwargs(tmp_path, logger=True))
    assert second.logger.version == 1


def test_default_logger_falls_back_to_csv_without_tensorboard(tmp_path, monkeypatch):
    import ember.loggers.tensorboard as tb_module

    monkeypatch.setattr(tb_module, "_tensorboard_available", lambda: False)
    assert isinstance(pl.Trainer(**trainer_kwargs(tmp_path, logger=True)).logger, CSVLogger)


def test_log_graph_traces_the_example_input(tmp_path):
    model = BoringModel()
    model.example_input_array = torch.zeros(2, 4)
    logger = TensorBoardLogger(tmp_path, log_graph=True)
    pl.Trainer(**trainer_kwargs(tmp_path, logger=logger, max_steps=1)).fit(model)
    (acc,) = events(logger.log_dir)
    assert acc.Tags()["graph"] is True
    assert any("layer" in node.name for node in acc.Graph().node)


def test_log_graph_without_example_input_warns(tmp_path):
    logger = TensorBoardLogger(tmp_path, log_graph=True)
    with pytest.warns(UserWarning, match="example_input_array"):
        logger.log_graph(BoringModel())


def test_log_hyperparams_nested_values_and_metrics(tmp_path):
    logger = TensorBoardLogger(tmp_path, name=None, version="run-a", prefix="pre", sub_dir="sub")
    assert logger.log_dir == os.path.join(str(tmp_path), "run-a", "sub")

    def schedule(epoch):
        return epoch

    logger.log_hyperparams({"opt": {"name": "sgd", "lr": 0.5}, "fn": schedule, "dims": [1, 2]},
                           metrics={"acc": 0.25})
    logger.log_metrics({"loss": torch.tensor(1.5), "pair": {"a": 1.0, "b": 2.0}}, step=3)
    logger.finalize("success")
    with open(os.path.join(logger.log_dir, "hparams.yaml")) as f:
        saved = yaml.safe_load(f)
    assert saved.pop("fn").endswith("schedule")  # a function is saved by name
    assert saved == {"opt": {"name": "sgd", "lr": 0.5}, "dims": [1, 2]}
    assert scalars(logger.log_dir, "pre-acc") == [(0, 0.25)]
    assert scalars(logger.log_dir, "pre-loss") == [(3, 1.5)]
    assert hparams_session(logger.log_dir) == {"opt/name": "sgd", "opt/lr": 0.5, "fn": "schedule",
                                               "dims": "[1, 2]"}
    # add_scalars writes one sub-run folder per key
    assert os.path.isdir(os.path.join(logger.log_dir, "pre-pair_a"))


def test_default_hp_metric_can_be_turned_off(tmp_path):
    logger = TensorBoardLogger(tmp_path, default_hp_metric=False)
    pl.Trainer(**trainer_kwargs(tmp_path, logger=logger, max_steps=1)).fit(HparamsModel())
    assert scalars(logger.log_dir, "hp_metric") == []
    assert os.path.isfile(os.path.join(logger.log_dir, "hparams.yaml"))


def test_logger_pickles_without_its_writer(tmp_path):
    import pickle

    logger = TensorBoardLogger(tmp_path)
    logger.log_metrics({"a": 1.0}, step=0)
    copy = pickle.loads(pickle.dumps(logger))
    assert copy._experiment is None and copy.log_dir == logger.log_dir
    logger.finalize("success")
