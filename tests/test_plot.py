"""``plot_metrics`` / ``ember plot``: CSVLogger runs drawn to PNG and HTML."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from ember.loggers import CSVLogger
from tests.helpers import BoringModel, make_trainer

pytest.importorskip("matplotlib")

from ember.cli import main  # noqa: E402
from ember.plot import plot_metrics  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class LoggingLr(BoringModel):
    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=self.lr)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)]

    def on_train_epoch_start(self) -> None:
        self.log("lr-SGD", self.trainer.optimizers[0].param_groups[0]["lr"])


def _run(root: Path, version: int, lr: float) -> Path:
    logger = CSVLogger(root, name="logs", version=version)
    make_trainer(root, logger=logger, max_epochs=3, log_every_n_steps=1).fit(LoggingLr(lr=lr))
    return Path(logger.log_dir)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: Any) -> list[Path]:
    root = tmp_path_factory.mktemp("runs")
    return [_run(root, 0, 0.1), _run(root, 1, 0.02)]


def test_png_of_two_runs(runs: list[Path], tmp_path: Path) -> None:
    out = plot_metrics(runs, tmp_path / "runs.png")
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 20_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 1000 and height > 700  # 2 x 2 subplots: lr-SGD, train_loss, val_loss (+ hidden fourth)


def test_html_is_self_contained(runs: list[Path], tmp_path: Path) -> None:
    out = plot_metrics(runs, tmp_path / "runs.html", metrics=["train_loss", "val_loss"])
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "</html>" in page
    assert "version_0" in page and "version_1" in page and "train_loss" in page
    assert "src=\"http" not in page and "<script" not in page


def test_parent_directory_expands_to_its_runs(runs: list[Path], tmp_path: Path) -> None:
    figure_path = plot_metrics(runs[0].parent, tmp_path / "all.svg", metrics=["val_loss"])
    svg = figure_path.read_text()
    assert svg.count("version_") >= 2  # both runs in the legend


def test_errors(runs: list[Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown metrics.*train_loss"):
        plot_metrics(runs[0], tmp_path / "x.png", metrics=["accuracy"])
    with pytest.raises(FileNotFoundError, match="no metrics.csv"):
        plot_metrics(tmp_path / "empty", tmp_path / "x.png")


def test_console_command(runs: list[Path], tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "cli.png"
    assert main(["plot", str(runs[0]), str(runs[1]), "-o", str(out), "--metrics", "train_loss,lr-SGD"]) == 0
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    assert f"wrote {out}" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["plot", str(tmp_path / "nothing-here")])


def test_python_dash_m_ember(runs: list[Path], tmp_path: Path, monkeypatch: Any) -> None:
    out = tmp_path / "m.html"
    monkeypatch.setattr(sys, "argv", ["ember", "plot", str(runs[0]), "-o", str(out)])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("ember", run_name="__main__")  # what `python -m ember plot ...` runs
    assert exit_info.value.code == 0 and "<svg" in out.read_text()
