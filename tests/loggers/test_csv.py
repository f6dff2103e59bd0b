import csv
import os
import uuid
from argparse import Namespace
from pathlib import Path

import fsspec
import pytest
import torch
import yaml

from ember.loggers import CSVLogger, DummyLogger, Logger
from ember.loggers.logger import _DummyExperiment, rank_zero_experiment
from ember.utilities.rank_zero import rank_zero_only


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


# ---- versions and directories -------------------------------------------------------------


def test_versions_auto_increment(tmp_path):
    first = CSVLogger(tmp_path)
    assert first.version == 0
    assert first.name == "lightning_logs"
    assert first.save_dir == str(tmp_path)
    assert first.root_dir == os.path.join(str(tmp_path), "lightning_logs")
    assert first.log_dir == os.path.join(str(tmp_path), "lightning_logs", "version_0")
    first.log_metrics({"a": 1.0}, step=0)
    first.save()
    assert os.path.isdir(first.log_dir)

    assert CSVLogger(tmp_path).version == 1

    # gaps are fine: the next version is one past the largest; files and odd names are ignored
    (tmp_path / "lightning_logs" / "version_7").mkdir()
    (tmp_path / "lightning_logs" / "version_x").mkdir()
    (tmp_path / "lightning_logs" / "version_20").write_text("not a dir")
    assert CSVLogger(tmp_path).version == 8


def test_version_is_fixed_once_read(tmp_path):
    logger = CSVLogger(tmp_path)
    assert logger.version == 0
    (tmp_path / "lightning_logs" / "version_0").mkdir(parents=True)
    assert logger.version == 0  # not re-scanned


def test_name_empty_or_none_drops_the_level(tmp_path):
    for name in ("", None):
        logger = CSVLogger(tmp_path, name=name)
        assert logger.name == ""
        assert logger.root_dir == str(tmp_path)
        assert logger.log_dir == os.path.join(str(tmp_path), "version_0")


def test_explicit_versions(tmp_path):
    assert CSVLogger(tmp_path, version=3).log_dir.endswith(os.path.join("lightning_logs", "version_3"))
    logger = CSVLogger(tmp_path, name="exp", version="my_run")
    assert logger.version == "my_run"
    assert logger.log_dir == os.path.join(str(tmp_path), "exp", "my_run")


def test_nothing_is_created_until_something_is_logged(tmp_path):
    logger = CSVLogger(tmp_path)
    logger.save()
    logger.finalize("success")
    assert not (tmp_path / "lightning_logs").exists()


def test_pathlib_and_relative_save_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    logger = CSVLogger("logs")
    assert logger.log_dir == os.path.join("logs", "lightning_logs", "version_0")
    logger.log_metrics({"x": 1.0}, step=0)
    logger.finalize("success")
    assert (tmp_path / "logs" / "lightning_logs" / "version_0" / "metrics.csv").exists()
    assert CSVLogger(Path("logs")).version == 1


# ---- metrics.csv ---------------------------------------------------------------------------


def test_metrics_csv_columns_and_rows(tmp_path):
    logger = CSVLogger(tmp_path)
    logger.log_metrics({"train_loss": torch.tensor(1.5), "epoch": 0}, step=0)
    logger.log_metrics({"train_loss": 1.25, "epoch": 0}, step=1)
    logger.log_metrics({"val_loss": 2.0, "epoch": 0}, step=1)
    logger.finalize("success")
    path = Path(logger.log_dir) / "metrics.csv"
    # sorted columns, "step" among them; empty cells for metrics absent from a row
    assert path.read_text() == (
        "epoch,step,train_loss,val_loss\n"
        "0,0,1.5,\n"
        "0,1,1.25,\n"
        "0,1,,2.0\n"
    )


def test_new_keys_mid_run_rewrite_header_and_keep_old_rows(tmp_path):
    logger = CSVLogger(tmp_path, flush_logs_every_n_steps=1)
    logger.log_metrics({"b": 1.0}, step=0)  # flushed right away
    path = Path(logger.log_dir) / "metrics.csv"
    assert read_csv(path) == [["b", "step"], ["1.0", "0"]]
    logger.log_metrics({"b": 2.0}, step=1)
    assert read_csv(path) == [["b", "step"], ["1.0", "0"], ["2.0", "1"]]
    logger.log_metrics({"a": 3.0, "zz": 4}, step=2)  # new columns
    assert read_csv(path) == [
        ["a", "b", "step", "zz"],
        ["", "1.0", "0", ""],
        ["", "2.0", "1", ""],
        ["3.0", "", "2", "4"],
    ]
    logger.log_metrics({"b": 5.0}, step=3)  # appended under the wide header
    assert read_csv(path)[-1] == ["", "5.0", "3", ""]
    leftovers = [p for p in os.listdir(logger.log_dir) if p.endswith(".tmp")]
    assert leftovers == []


def test_flush_every_n_steps(tmp_path):
    logger = CSVLogger(tmp_path, flush_logs_every_n_steps=3)
    path = Path(logger.log_dir) / "metrics.csv"
    logger.log_metrics({"x": 0.0}, step=0)
    logger.log_metrics({"x": 1.0}, step=1)
    assert not path.exists()
    logger.log_metrics({"x": 2.0}, step=2)  # (step + 1) % 3 == 0
    assert len(read_csv(path)) == 4
    logger.log_metrics({"x": 3.0}, step=3)
    assert len(read_csv(path)) == 4
    logger.save()
    assert len(read_csv(path)) == 5


def test_step_none_counts_rows_and_prefix(tmp_path):
    logger = CSVLogger(tmp_path, prefix="fold1")
    logger.log_metrics({"x": 1.0})
    logger.log_metrics({"x": 2.0})
    logger.finalize("success")
    assert read_csv(Path(logger.log_dir) / "metrics.csv") == [["fold1-x", "step"], ["1.0", "0"], ["2.0", "1"]]


def test_reused_version_dir_is_overwritten_with_warning(tmp_path):
    first = CSVLogger(tmp_path, version=0)
    first.log_metrics({"old": 1.0}, step=0)
    first.finalize("success")
    second = CSVLogger(tmp_path, version=0)
    with pytest.warns(UserWarning, match="exists and is not empty"):
        second.log_metrics({"new": 2.0}, step=5)
    second.finalize("success")
    assert read_csv(Path(second.log_dir) / "metrics.csv") == [["new", "step"], ["2.0", "5"]]


def test_failed_write_leaves_previous_file_intact(tmp_path, monkeypatch):
    logger = CSVLogger(tmp_path, flush_logs_every_n_steps=1)
    logger.log_metrics({"a": 1.0}, step=0)
    path = Path(logger.log_dir) / "metrics.csv"
    before = path.read_text()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        logger.log_metrics({"b": 2.0}, step=1)  # new key -> full rewrite -> fails
    assert path.read_text() == before
    assert [p for p in os.listdir(logger.log_dir) if p.endswith(".tmp")] == []
    monkeypatch.undo()
    logger.save()  # the row that failed is still buffered and gets written now
    assert read_csv(path) == [["a", "b", "step"], ["1.0", "", "0"], ["", "2.0", "1"]]


# ---- hparams.yaml --------------------------------------------------------------------------


def test_hparams_yaml_round_trip(tmp_path):
    logger = CSVLogger(tmp_path)
    logger.log_hyperparams(
        {
            "lr": 0.1,
            "layers": (32, 16),
            "scale": torch.tensor(2.5),
            "weights": torch.tensor([1, 2]),
            "opt": Namespace(name="adam", betas=[0.9, 0.99]),
            "nested": {"a": {"b": None}},
            "path": Path("/data/x"),
            "act": torch.nn.ReLU,
        }
    )
    logger.log_hyperparams(Namespace(batch_size=8))  # merged with the earlier ones
    text = (Path(logger.log_dir) / "hparams.yaml").read_text()
    assert "!!python" not in text  # plain YAML only
    loaded = yaml.safe_load(text)
    assert loaded == {
        "lr": 0.1,
        "layers": [32, 16],
        "scale": 2.5,
        "weights": [1, 2],
        "opt": {"name": "adam", "betas": [0.9, 0.99]},
        "nested": {"a": {"b": None}},
        "path": "/data/x",
        "act": "ReLU",
        "batch_size": 8,
    }


# ---- remote (fsspec) paths -----------------------------------------------------------------


def test_memory_filesystem():
    root = f"memory://ember-test-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    try:
        logger = CSVLogger(root, flush_logs_every_n_steps=2)
        assert logger.version == 0
        assert logger.log_dir == f"{root}/lightning_logs/version_0"
        logger.log_hyperparams({"lr": 0.5})
        logger.log_metrics({"loss": 1.0}, step=0)
        logger.log_metrics({"loss": 0.5}, step=1)  # flush
        logger.log_metrics({"loss": 0.25, "acc": 0.9}, step=2)
        logger.finalize("success")
        text = fs.cat_file(f"{logger.log_dir}/metrics.csv").decode()
        assert text == "acc,loss,step\n,1.0,0\n,0.5,1\n0.9,0.25,2\n"
        assert yaml.safe_load(fs.cat_file(f"{logger.log_dir}/hparams.yaml")) == {"lr": 0.5}

        second = CSVLogger(root)
        assert second.version == 1
    finally:
        if fs.exists(root):
            fs.rm(root, recursive=True)


# ---- rank zero -----------------------------------------------------------------------------


def test_other_ranks_write_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    logger = CSVLogger(tmp_path)
    assert isinstance(logger.experiment, _DummyExperiment)
    logger.log_hyperparams({"a": 1})
    logger.log_metrics({"x": 1.0}, step=0)
    logger.finalize("success")
    assert list(tmp_path.iterdir()) == []


# ---- base class / dummy --------------------------------------------------------------------


def test_logger_subclass_with_only_the_required_members():
    class MyLogger(Logger):
        def __init__(self):
            self.seen = []

        @property
        def name(self):
            return "mine"

        @property
        def version(self):
            return "v1"

        def log_metrics(self, metrics, step=None):
            self.seen.append((step, dict(metrics)))

        def log_hyperparams(self, params, *args, **kwargs):
            self.seen.append(("hp", params))

    logger = MyLogger()
    logger.log_metrics({"a": 1.0}, step=3)
    logger.log_graph(torch.nn.Linear(1, 1))
    logger.after_save_checkpoint(object())
    logger.finalize("success")
    assert logger.seen == [(3, {"a": 1.0})]
    assert logger.save_dir is None and logger.root_dir is None and logger.log_dir is None
    assert logger.group_separator == "/"

    with pytest.raises(TypeError):
        Logger()  # abstract


def test_rank_zero_experiment(monkeypatch):
    class Exp(Logger):
        name = "n"
        version = 0

        def log_metrics(self, metrics, step=None):
            pass

        def log_hyperparams(self, params, *args, **kwargs):
            pass

        @property
        @rank_zero_experiment
        def experiment(self):
            return "real"

    assert Exp().experiment == "real"
    monkeypatch.setattr(rank_zero_only, "rank", 2)
    exp = Exp().experiment
    assert isinstance(exp, _DummyExperiment)
    exp.add_scalar("x", 1)  # anything goes
    exp[0].log("y")


def test_dummy_logger_accepts_everything():
    logger = DummyLogger()
    assert logger.name == "" and logger.version == ""
    logger.log_metrics({"a": 1}, step=0)
    logger.log_hyperparams({"b": 2})
    logger.some_custom_method(1, key=2)
    logger.experiment.whatever(3)
    assert logger[0] is logger
    logger.finalize("success")


def test_not_yet_available_loggers_raise_clear_error():
    import ember.loggers as loggers

    with pytest.raises(ImportError, match="not available"):
        from ember.loggers import CometLogger  # noqa: F401
    with pytest.raises(ImportError, match="not available"):
        loggers.NeptuneLogger  # noqa: B018
    with pytest.raises(AttributeError):
        loggers.NoSuchLogger  # noqa: B018


def test_empty_hparams_write_no_file(tmp_path):
    logger = CSVLogger(tmp_path)
    logger.log_hyperparams({})
    logger.log_hyperparams(None)
    logger.save()
    assert os.path.isdir(logger.log_dir)  # the run directory exists from the first call on
    assert os.listdir(logger.log_dir) == []
