"""LightningCLI: flags and YAML configs build the same run; --print_config; config.yaml; subcommands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch.utils.data import DataLoader

import ember as pl
from tests.helpers import BoringModel, loader, weights

pytest.importorskip("jsonargparse")

from ember.cli import LightningCLI, SaveConfigCallback  # noqa: E402
from ember.loggers import CSVLogger  # noqa: E402


class Model(BoringModel):
    """A LightningModule with typed __init__ arguments, as the CLI needs."""

    def __init__(self, lr: float = 0.1, hidden: int = 3) -> None:
        super().__init__(lr=lr)
        self.save_hyperparameters()
        self.layer = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.Linear(hidden, 1))


class Data(pl.LightningDataModule):
    def __init__(self, batch_size: int = 4) -> None:
        super().__init__()
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        return loader(16, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return loader(8, self.batch_size, seed=1)

    def test_dataloader(self) -> DataLoader:
        return loader(8, self.batch_size, seed=2)


@pytest.fixture(autouse=True)
def _no_pytest_argv(monkeypatch: Any) -> None:
    monkeypatch.setattr(sys, "argv", ["train.py"])  # the CLI parses `args`, not pytest's command line


QUIET = {"enable_progress_bar": False, "enable_model_summary": False, "logger": False}  # log_dir: default_root_dir


def _cli(*args: str, **kwargs: Any) -> LightningCLI:
    kwargs.setdefault("trainer_defaults", QUIET)
    return LightningCLI(Model, Data, args=list(args), **kwargs)


def test_flags_and_yaml_config_give_the_same_run(tmp_path: Path) -> None:
    flags = ["--trainer.max_epochs=2", "--model.lr=0.05", "--model.hidden=5", "--data.batch_size=8",
             "--seed_everything=3"]
    from_flags = _cli("fit", f"--trainer.default_root_dir={tmp_path / 'a'}", *flags)
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"seed_everything": 3, "trainer": {"max_epochs": 2},
                                      "model": {"lr": 0.5, "hidden": 5}, "data": {"batch_size": 8}}))
    # a flag after --config overrides the file: lr 0.5 -> 0.05, as in the run from flags
    from_yaml = _cli("fit", "--config", str(config), "--model.lr=0.05", f"--trainer.default_root_dir={tmp_path / 'b'}")
    for cli in (from_flags, from_yaml):
        assert cli.subcommand == "fit" and cli.trainer.current_epoch == 2 and cli.trainer.global_step == 4
        assert isinstance(cli.model, Model) and cli.model.hparams.hidden == 5 and cli.datamodule.batch_size == 8
        assert cli.model.lr == 0.05 and cli.config.fit.model.lr == 0.05
    a, b = weights(from_flags.model), weights(from_yaml.model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_config_yaml_is_written_and_replays_the_run(tmp_path: Path) -> None:
    first = _cli("fit", "--trainer.max_epochs=1", "--model.lr=0.07", f"--trainer.default_root_dir={tmp_path}")
    saved = tmp_path / "config.yaml"
    assert first.trainer.log_dir == str(tmp_path)
    config = yaml.safe_load(saved.read_text())
    assert config["model"] == {"lr": 0.07, "hidden": 3} and config["trainer"]["max_epochs"] == 1
    assert isinstance(config["seed_everything"], int)  # the random seed is recorded, so the run can be repeated
    assert saved.read_text().startswith("# ember==")
    replay = _cli("fit", "--config", str(saved), f"--trainer.default_root_dir={tmp_path / 'replay'}")
    a, b = weights(first.model), weights(replay.model)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_print_config(capsys: Any) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _cli("fit", "--model.lr=0.3", "--trainer.max_epochs=4", "--print_config")
    assert exit_info.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["lr"] == 0.3 and config["trainer"]["max_epochs"] == 4
    assert {"accelerator", "callbacks", "logger", "precision"} <= set(config["trainer"])
    assert "ckpt_path" in config and "data" in config


@pytest.mark.filterwarnings("ignore:.*exists and is not empty")
def test_save_config_refuses_to_overwrite(tmp_path: Path) -> None:
    logger = {"class_path": "ember.loggers.CSVLogger", "init_args": {"save_dir": str(tmp_path), "version": 0}}
    args = ["fit", "--trainer.max_epochs=1", f"--trainer.logger={yaml.safe_dump(logger, default_flow_style=True)}"]
    cli = _cli(*args)
    assert isinstance(cli.trainer.logger, CSVLogger) and (tmp_path / "lightning_logs/version_0/config.yaml").exists()
    with pytest.raises(RuntimeError, match="config.yaml exists"):
        _cli(*args)
    _cli(*args, save_config_kwargs={"overwrite": True})


def test_other_subcommands_and_ckpt_path(tmp_path: Path, capsys: Any) -> None:
    fit = _cli("fit", "--trainer.max_epochs=1", "--model.hidden=6", f"--trainer.default_root_dir={tmp_path}")
    ckpt = fit.trainer.checkpoint_callback.best_model_path
    # the checkpoint's hyperparameters (hidden=6) override the config, so the weights load
    test = _cli("test", f"--ckpt_path={ckpt}", f"--trainer.default_root_dir={tmp_path / 't'}")
    assert test.subcommand == "test" and test.model.hparams.hidden == 6
    assert "test_loss" in capsys.readouterr().out
    validate = _cli("validate", f"--trainer.default_root_dir={tmp_path / 'v'}", "--model.hidden=2")
    assert validate.trainer.state.fn == "validate" and validate.trainer.global_step == 0


@pytest.mark.filterwarnings("ignore:Model.configure_optimizers is replaced")
def test_optimizer_and_scheduler_from_the_command_line(tmp_path: Path) -> None:
    cli = _cli("fit", "--trainer.max_epochs=2", f"--trainer.default_root_dir={tmp_path}", "--optimizer=Adam",
               "--optimizer.lr=0.01", "--lr_scheduler=StepLR", "--lr_scheduler.step_size=1",
               "--lr_scheduler.gamma=0.5")
    optimizer = cli.trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.Adam)
    assert isinstance(cli.trainer.lr_scheduler_configs[0].scheduler, torch.optim.lr_scheduler.StepLR)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5 ** 2)


def test_run_false_subclass_mode_and_callbacks(tmp_path: Path) -> None:
    cli = LightningCLI(args=[f"--model={__name__}.Model", "--model.hidden=4", f"--data={__name__}.Data",
                             "--trainer.callbacks+=ember.callbacks.EarlyStopping",
                             "--trainer.callbacks.monitor=val_loss", "--seed_everything=false",
                             f"--trainer.default_root_dir={tmp_path}"], run=False,
                       trainer_defaults={**QUIET, "max_epochs": 3}, save_config_callback=None)
    assert not any(isinstance(cb, SaveConfigCallback) for cb in cli.trainer.callbacks)
    assert cli.subcommand is None and isinstance(cli.model, Model) and cli.model.hparams.hidden == 4
    assert isinstance(cli.datamodule, Data) and cli.trainer.max_epochs == 3
    stoppers = [cb for cb in cli.trainer.callbacks if type(cb).__name__ == "EarlyStopping"]
    assert len(stoppers) == 1 and stoppers[0].monitor == "val_loss"
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.current_epoch == 3


def test_hooks_around_the_subcommand(tmp_path: Path) -> None:
    class MyCLI(LightningCLI):
        events: list[str] = []

        def add_arguments_to_parser(self, parser: Any) -> None:
            parser.add_argument("--note", default="none")

        def before_fit(self) -> None:
            self.events.append(f"before {self.config.fit.note}")

        def after_fit(self) -> None:
            self.events.append(f"after {self.trainer.global_step}")

    MyCLI(Model, args=["fit", "--note=hi", "--trainer.max_steps=2", f"--trainer.default_root_dir={tmp_path}"],
          trainer_defaults=QUIET)
    assert MyCLI.events == ["before hi", "after 2"]
