"""TQDMProgressBar when stdout is not a terminal: one readable line per epoch, no carriage-return redraws."""

import re

import torch.nn.functional as F

import ember as pl
from ember.callbacks import TQDMProgressBar
from tests.helpers import BoringModel, trainer_kwargs


class ProgBarModel(BoringModel):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.mse_loss(self(x), y), prog_bar=True)


def test_fit_prints_one_line_per_epoch(tmp_path, capsys):
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=3, enable_progress_bar=True, logger=True))
    trainer.fit(ProgBarModel())
    out = capsys.readouterr().out
    assert "\r" not in out
    lines = [line for line in out.splitlines() if line.startswith("Epoch")]
    assert len(lines) == 3
    for epoch, line in enumerate(lines):
        assert re.fullmatch(rf"Epoch {epoch}/2: loss=[-\d.e]+ val_loss=[-\d.e]+ \(\d+\.\d s\)", line), line
    loss = trainer.progress_bar_metrics["loss"]
    assert lines[-1].startswith(f"Epoch 2/2: loss={loss:.4g} ")


def test_validate_test_and_predict_print_a_summary_line(tmp_path, capsys):
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, enable_progress_bar=True))
    model = BoringModel()
    trainer.validate(model, verbose=False)
    trainer.test(model, verbose=False)
    trainer.predict(model)
    lines = capsys.readouterr().out.splitlines()
    assert [re.sub(r"\(\d+\.\d s\)", "(T)", line) for line in lines] == [
        "Validation: 2 batches (T)", "Testing: 2 batches (T)", "Predicting: 2 batches (T)"]


def test_disabled_bar_stays_silent(tmp_path, capsys):
    bar = TQDMProgressBar()
    bar.disable()
    pl.Trainer(**trainer_kwargs(tmp_path, callbacks=[bar], enable_progress_bar=None)).fit(BoringModel())
    assert capsys.readouterr().out == ""


def test_unknown_max_epochs(tmp_path, capsys):
    pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=-1, max_steps=4, enable_progress_bar=True)).fit(BoringModel())
    assert re.fullmatch(r"Epoch 0 \(\d+\.\d s\)", capsys.readouterr().out.strip())
