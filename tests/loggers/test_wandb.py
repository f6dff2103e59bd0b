"""WandbLogger on real offline runs: the run files wandb writes are read back record by record."""

import glob
import json
import os
import struct
import time

import pytest

import ember as pl
from ember.loggers import WandbLogger
from ember.utilities.exceptions import MisconfigurationException
from tests.helpers import HparamsModel, trainer_kwargs
from tests.memory_logger import MemoryLogger

wandb = pytest.importorskip("wandb")
from wandb.proto import wandb_internal_pb2  # noqa: E402

_BLOCK = 32 * 1024
_HEADER = 7  # ":W&B" + magic (2 bytes) + version (1 byte)


def read_records(path):
    """The protobuf Records of a ``.wandb`` file (a LevelDB-style log: 32 KiB blocks of chunked records)."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b":W&B", "not a wandb run file"
    pos, pending, records = _HEADER, b"", []
    while pos + 7 <= len(data):
        if _BLOCK - pos % _BLOCK < 7:  # block trailer too small for a header: zero padding
            pos += _BLOCK - pos % _BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if (kind == 0 and length == 0) or pos + 7 + length > len(data):
            break  # the end, or a record still being written
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        pending += chunk
        if kind in (1, 4):  # FULL or LAST chunk: a whole record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
        elif kind == 2:  # FIRST chunk
            pending = chunk
    return records


def finished_records(run_dir, timeout=20.0):
    """The run's records once its ``exit`` record is on disk (wandb's service may still be writing the file
    when ``wandb.finish()`` returns)."""
    (path,) = glob.glob(os.path.join(run_dir, "run-*.wandb"))
    deadline = time.monotonic() + timeout
    while True:
        records = read_records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def history_and_config(run_dir):
    rows, config = [], {}
    for record in finished_records(run_dir):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
        elif kind == "config":
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif kind == "run":
            config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
    return rows, config


@pytest.fixture(autouse=True)
def offline_wandb(monkeypatch, tmp_path):
    for key, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONSOLE": "off",
                       "WANDB_DISABLE_GIT": "true", "WANDB_DISABLE_CODE": "true", "WANDB_DIR": str(tmp_path),
                       "WANDB_CACHE_DIR": str(tmp_path / "cache"), "WANDB_CONFIG_DIR": str(tmp_path / "config"),
                       "WANDB_DATA_DIR": str(tmp_path / "data")}.items():
        monkeypatch.setenv(key, value)
    yield
    if wandb.run is not None:
        wandb.finish()


def test_offline_fit_writes_history_and_config(tmp_path):
    logger = WandbLogger(name="first", project="ember-tests", save_dir=tmp_path, offline=True, prefix="p")
    memory = MemoryLogger()
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=2, log_every_n_steps=1, logger=[logger, memory]))
    trainer.fit(HparamsModel(lr=0.1, hidden=3))
    run = logger.experiment
    assert logger.name == "ember-tests" and logger.version == run.id and run.name == "first"
    wandb.finish()
    (run_dir,) = glob.glob(os.path.join(str(tmp_path), "wandb", f"offline-run-*-{run.id}"))
    rows, config = history_and_config(run_dir)
    assert config["lr"] == 0.1 and config["hidden"] == 3
    train = [r for r in rows if "p-train_loss" in r]
    assert [r["trainer/global_step"] for r in train] == list(range(8))
    assert [r["trainer/global_step"] for r in rows if "p-val_loss" in r] == [3, 7]
    assert [r["p-train_loss"] for r in train] == pytest.approx([v for _, v in memory.series("train_loss")])


def test_log_hyperparams_and_metrics_without_a_trainer(tmp_path):
    def warmup(step):
        return step

    logger = WandbLogger(project="direct", dir=str(tmp_path / "runs"), offline=True)
    assert logger.save_dir == str(tmp_path / "runs")  # `dir` counts when save_dir is left at "."
    logger.log_hyperparams({"schedule": warmup, "layers": [4, 2], "opt": {"lr": 0.5}})
    logger.log_metrics({"loss": 2.0})
    logger.log_metrics({"loss": 1.0}, step=5)
    run_id = logger.version
    wandb.finish()
    (run_dir,) = glob.glob(os.path.join(str(tmp_path / "runs"), "wandb", f"offline-run-*-{run_id}"))
    rows, config = history_and_config(run_dir)
    assert config["schedule"] == "warmup" and config["layers"] == [4, 2] and config["opt"] == {"lr": 0.5}
    # wandb fills the step of a row logged without one from the step metric's last value
    assert [(r.get("trainer/global_step"), r["loss"]) for r in rows if "loss" in r] == [(0, 2.0), (5, 1.0)]


def test_offline_with_log_model_is_refused():
    with pytest.raises(MisconfigurationException, match="offline"):
        WandbLogger(offline=True, log_model=True)
