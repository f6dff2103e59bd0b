"""MLFlowLogger on real fits against a real tracking store (MLflow's folder store), read back with MlflowClient.
The database store is tested in test_mlflow_sqlite.py (creating its tables alone takes several seconds)."""

import csv
import os

import pytest
import torch

import ember as pl
from ember.callbacks import ModelCheckpoint
from ember.loggers import CSVLogger, MLFlowLogger
from tests.helpers import BoringModel, HparamsModel, trainer_kwargs

pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402


@pytest.fixture
def db_uri(tmp_path, monkeypatch):
    """A folder store (MLflow wants it asked for explicitly; MLFlowLogger does that for ``file:`` URIs)."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return f"file:{tmp_path / 'mlruns'}"


def history(client, run_id, key):
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_fit_logs_metrics_steps_params_tags_and_status(tmp_path, db_uri):
    logger = MLFlowLogger(experiment_name="fit", run_name="first", tracking_uri=db_uri, tags={"team": "ember"},
                          artifact_location=str(tmp_path / "artifacts"))
    memory = CSVLogger(tmp_path)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=2, log_every_n_steps=1, logger=[logger, memory]))
    trainer.fit(HparamsModel(lr=0.1, hidden=3))
    client = MlflowClient(db_uri)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "first" and run.data.tags["team"] == "ember"
    assert run.data.params == {"lr": "0.1", "hidden": "3"}
    assert logger.name == run.info.experiment_id and logger.version == run.info.run_id
    assert client.get_experiment(run.info.experiment_id).name == "fit"
    train_loss = history(client, logger.run_id, "train_loss")
    assert [s for s, _ in train_loss] == list(range(8))
    assert [s for s, _ in history(client, logger.run_id, "val_loss")] == [3, 7]
    assert [(s, v) for s, v in history(client, logger.run_id, "epoch")][-1] == (7, 1.0)
    # the same numbers the CSV logger got
    with open(os.path.join(memory.log_dir, "metrics.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["train_loss"]]
    assert [float(r["train_loss"]) for r in rows] == pytest.approx([v for _, v in train_loss], rel=1e-6)


def test_same_experiment_gets_a_new_run_and_run_id_resumes(tmp_path, db_uri):
    first = MLFlowLogger(experiment_name="shared", tracking_uri=db_uri)
    second = MLFlowLogger(experiment_name="shared", tracking_uri=db_uri)
    assert first.experiment_id == second.experiment_id and first.run_id != second.run_id
    first.log_metrics({"a": 1.0}, step=1)
    again = MLFlowLogger(tracking_uri=db_uri, run_id=first.run_id)
    again.log_metrics({"a": 2.0}, step=2)
    assert again.experiment_id == first.experiment_id
    assert history(MlflowClient(db_uri), first.run_id, "a") == [(1, 1.0), (2, 2.0)]


def test_log_hyperparams_flattens_and_log_metrics_cleans_names(db_uri):
    logger = MLFlowLogger(experiment_name="params", tracking_uri=db_uri, prefix="p")
    logger.log_hyperparams({"optimizer": {"name": "adam", "betas": (0.9, 0.99)}, "layers": 2})
    with pytest.warns(RuntimeWarning, match="val loss@1"):
        logger.log_metrics({"val loss@1": torch.tensor(0.5), "note": "text?"}, step=4)
    run = MlflowClient(db_uri).get_run(logger.run_id)
    assert run.data.params == {"optimizer/name": "adam", "optimizer/betas": "(0.9, 0.99)", "layers": "2"}
    assert run.data.metrics == {"p-val loss1": 0.5}  # the string value is dropped
    logger.finalize("success")


def test_failed_fit_marks_the_run_failed(tmp_path, db_uri):
    class Broken(BoringModel):
        def training_step(self, batch, batch_idx):
            if batch_idx == 1:
                raise RuntimeError("boom")
            return super().training_step(batch, batch_idx)

    logger = MLFlowLogger(experiment_name="failing", tracking_uri=db_uri)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, logger=logger, log_every_n_steps=1))
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(Broken())
    run = MlflowClient(db_uri).get_run(logger.run_id)
    assert run.info.status == "FAILED"
    assert [s for s, _ in history(MlflowClient(db_uri), logger.run_id, "train_loss")] == [0]


def test_log_model_uploads_checkpoints_at_the_end(tmp_path, db_uri):
    logger = MLFlowLogger(experiment_name="models", tracking_uri=db_uri, log_model=True,
                          artifact_location=str(tmp_path / "artifacts"))
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpts", monitor="val_loss", save_top_k=1)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, logger=logger, max_epochs=2, enable_checkpointing=True,
                                          callbacks=[checkpoint]))
    trainer.fit(BoringModel())
    client = MlflowClient(db_uri)
    stem = os.path.splitext(os.path.basename(checkpoint.best_model_path))[0]
    listed = {a.path for a in client.list_artifacts(logger.run_id, stem)}
    assert {f"{stem}/{os.path.basename(checkpoint.best_model_path)}", f"{stem}/metadata.yaml",
            f"{stem}/aliases.txt"} <= listed
    local = client.download_artifacts(logger.run_id, f"{stem}/aliases.txt", str(tmp_path / "dl"))
    with open(local) as f:
        assert f.read() == "['latest', 'best']"


def test_default_store_is_a_folder_under_save_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    save_dir = tmp_path / "mlruns"
    logger = MLFlowLogger(save_dir=str(save_dir))
    assert logger.save_dir == str(save_dir)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, logger=logger, max_steps=2, log_every_n_steps=1))
    trainer.fit(HparamsModel())
    client = MlflowClient(f"file:{save_dir}")
    assert [s for s, _ in history(client, logger.run_id, "train_loss")] == [0, 1]
    assert client.get_run(logger.run_id).data.params == {"lr": "0.1", "hidden": "3"}
    assert os.path.isdir(save_dir / logger.experiment_id / logger.run_id)
