"""BasePredictionWriter: files written per batch / per epoch, with the dataset indices of each prediction."""

import os

import pytest
import torch
from torch.utils.data import DataLoader

import ember as pl
from ember.callbacks import BasePredictionWriter
from ember.utilities.exceptions import MisconfigurationException
from tests.helpers import BoringModel, reg_data, trainer_kwargs


class FileWriter(BasePredictionWriter):
    def __init__(self, out_dir, write_interval):
        super().__init__(write_interval)
        self.out_dir = out_dir

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        torch.save({"prediction": prediction, "indices": batch_indices},
                   os.path.join(self.out_dir, f"batch-{dataloader_idx}-{batch_idx}.pt"))

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices):
        torch.save({"predictions": predictions, "indices": batch_indices}, os.path.join(self.out_dir, "epoch.pt"))


def test_batch_files_match_their_samples_even_when_shuffled(tmp_path):
    data = reg_data(10, seed=5)
    loader = DataLoader(data, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(1))
    model = BoringModel()
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, callbacks=[FileWriter(tmp_path, "batch")]))
    assert trainer.predict(model, loader, return_predictions=False) is None
    seen = []
    for batch_idx in range(3):
        saved = torch.load(tmp_path / f"batch-0-{batch_idx}.pt")
        indices = saved["indices"]
        with torch.no_grad():
            torch.testing.assert_close(saved["prediction"], model(data.tensors[0][indices]))
        seen += indices
    assert sorted(seen) == list(range(10)) and seen != list(range(10))  # shuffled, all samples once
    assert not (tmp_path / "epoch.pt").exists()


def test_epoch_file_with_two_dataloaders(tmp_path):
    loaders = [DataLoader(reg_data(8, seed=1), batch_size=4), DataLoader(reg_data(6, seed=2), batch_size=4)]
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, callbacks=[FileWriter(tmp_path, "epoch")]))
    trainer.predict(BoringModel(), loaders, return_predictions=False)
    saved = torch.load(tmp_path / "epoch.pt")
    assert saved["indices"] == [[[0, 1, 2, 3], [4, 5, 6, 7]], [[0, 1, 2, 3], [4, 5]]]
    assert [[p.shape[0] for p in per_loader] for per_loader in saved["predictions"]] == [[4, 4], [4, 2]]
    assert not list(tmp_path.glob("batch-*.pt"))


def test_batch_and_epoch(tmp_path):
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, callbacks=[FileWriter(tmp_path, "batch_and_epoch")]))
    predictions = trainer.predict(BoringModel())
    saved = torch.load(tmp_path / "epoch.pt")
    assert saved["indices"] == [[[0, 1, 2, 3], [4, 5, 6, 7]]]
    for ours, returned in zip(saved["predictions"], predictions):
        torch.testing.assert_close(ours, returned)
    assert len(list(tmp_path.glob("batch-0-*.pt"))) == 2


def test_unimplemented_writer_and_bad_interval(tmp_path):
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, callbacks=[BasePredictionWriter("batch")]))
    with pytest.raises(NotImplementedError, match="write_on_batch_end"):
        trainer.predict(BoringModel())
    with pytest.raises(MisconfigurationException, match="write_interval"):
        BasePredictionWriter("step")
