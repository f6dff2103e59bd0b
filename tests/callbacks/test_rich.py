"""RichProgressBar and RichModelSummary (the optional `rich` extra) on real fits."""

import io
import re

import pytest
import torch

import ember as pl
from ember.callbacks import RichModelSummary, RichProgressBar
from tests.helpers import BoringModel, HparamsModel, trainer_kwargs

pytest.importorskip("rich")


class ProgBarModel(BoringModel):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        self.log("loss", loss, prog_bar=True)
        return loss


def test_terminal_bars_show_epochs_batches_and_metrics(tmp_path):
    out = io.StringIO()
    bar = RichProgressBar(console_kwargs={"file": out, "force_terminal": True, "width": 160, "color_system": None})
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=2, callbacks=[bar], enable_progress_bar=None))
    trainer.fit(ProgBarModel())
    text = out.getvalue()
    assert "Epoch 0/1" in text and "Epoch 1/1" in text
    assert "Sanity Checking DataLoader 0" in text and "Validation DataLoader 0" in text
    assert re.search(r"Epoch 1/1 .*4/4", text)
    assert f"loss: {trainer.progress_bar_metrics['loss']:.3f}" in text
    assert bar.progress is None  # stopped when training ended


def test_test_and_predict_bars(tmp_path):
    out = io.StringIO()
    bar = RichProgressBar(console_kwargs={"file": out, "force_terminal": True, "width": 120})
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, callbacks=[bar], enable_progress_bar=None))
    trainer.test(BoringModel(), verbose=False)
    trainer.predict(BoringModel())
    assert "Testing DataLoader 0" in out.getvalue() and "Predicting DataLoader 0" in out.getvalue()


def test_non_terminal_console_prints_plain_lines(tmp_path):
    out = io.StringIO()
    bar = RichProgressBar(console_kwargs={"file": out})
    pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=2, callbacks=[bar], enable_progress_bar=None)).fit(ProgBarModel())
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in out.getvalue()
    assert re.fullmatch(r"Epoch 1/1: loss=[\d.e-]+ \(\d+\.\d s\)", lines[1])


def test_rich_model_summary_table(tmp_path, capsys):
    model = HparamsModel(hidden=5)
    model.example_input_array = torch.zeros(2, 4)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_steps=1, enable_model_summary=True,
                                          callbacks=[RichModelSummary(max_depth=2)]))
    trainer.fit(model)
    out = capsys.readouterr().out
    assert not any(type(cb).__name__ == "ModelSummary" for cb in trainer.callbacks)  # replaces the default
    for text in ("Name", "layer.0", "Linear", "In sizes", "[2, 4]", "Trainable params: 31", "Total FLOPs"):
        assert text in out, text
