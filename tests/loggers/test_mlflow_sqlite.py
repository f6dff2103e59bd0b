"""MLFlowLogger against MLflow's database store (``sqlite:///...``), read back with MlflowClient."""

import pytest

import ember as pl
from ember.loggers import MLFlowLogger
from tests.helpers import HparamsModel, trainer_kwargs

pytest.importorskip("mlflow")
pytest.importorskip("sqlalchemy")
pytest.importorskip("alembic")
from mlflow.tracking import MlflowClient  # noqa: E402


def test_fit_into_a_sqlite_store(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    logger = MLFlowLogger(experiment_name="db", run_name="sql", tracking_uri=uri,
                          artifact_location=str(tmp_path / "artifacts"))
    assert logger.save_dir is None  # not a folder store
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=2, log_every_n_steps=2, logger=logger))
    trainer.fit(HparamsModel(lr=0.05, hidden=2))
    client = MlflowClient(uri)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "sql"
    assert run.data.params == {"lr": "0.05", "hidden": "2"}
    assert [m.step for m in client.get_metric_history(logger.run_id, "train_loss")] == [1, 3, 5, 7]
    assert [m.step for m in client.get_metric_history(logger.run_id, "val_loss")] == [3, 7]
    assert run.data.metrics["val_loss"] == pytest.approx(trainer.callback_metrics["val_loss"].item())
