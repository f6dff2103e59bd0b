"""StochasticWeightAveraging: the final weights are the average of the snapshots, the LR follows SWALR."""

import pytest
import torch
from torch import nn

import ember as pl
from ember.callbacks import ModelCheckpoint, StochasticWeightAveraging
from ember.utilities.exceptions import MisconfigurationException
from tests.helpers import BoringModel, trainer_kwargs, weights


class Snapshots(pl.Callback):
    """Weights and learning rate at the start of every epoch (before SWA folds them in)."""

    def __init__(self):
        self.weights, self.lrs = [], []

    def on_train_epoch_start(self, trainer, pl_module):
        self.weights.append(weights(pl_module))

    def on_train_epoch_end(self, trainer, pl_module):
        self.lrs.append(trainer.optimizers[0].param_groups[0]["lr"])


def test_final_weights_are_the_average_of_the_swa_epochs(tmp_path):
    snapshots = Snapshots()
    swa = StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=2, annealing_epochs=2)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=4, callbacks=[snapshots, swa]))
    model = BoringModel()
    trainer.fit(model)
    # swa_epoch_start=2 is the second epoch (0-based 1): snapshots taken at the start of epochs 1, 2 and 3
    assert (swa.swa_start, swa.swa_end) == (1, 3)
    assert swa.n_averaged.item() == 3
    for name, value in weights(model).items():
        expected = torch.stack([snap[name] for snap in snapshots.weights[1:4]]).mean(0)
        torch.testing.assert_close(value, expected)
    # SWALR took over the optimizer's learning rate from the first SWA epoch
    assert type(trainer.lr_scheduler_configs[0].scheduler).__name__ == "SWALR"
    assert snapshots.lrs[0] == pytest.approx(0.1)
    assert snapshots.lrs[-1] == pytest.approx(0.05)


def test_fraction_start_and_custom_average(tmp_path):
    snapshots = Snapshots()

    def keep_latest(averaged, current, n):
        return current

    swa = StochasticWeightAveraging(swa_lrs=[0.02], swa_epoch_start=0.5, avg_fn=keep_latest)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=4, callbacks=[snapshots, swa]))
    model = BoringModel()
    trainer.fit(model)
    assert swa.swa_start == 1  # int(4 * 0.5) = 2, 1-based
    for name, value in weights(model).items():
        torch.testing.assert_close(value, snapshots.weights[3][name])  # the last snapshot


class WithBatchNorm(BoringModel):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layer = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 1))


def test_batch_norm_statistics_are_recomputed_for_the_averaged_weights(tmp_path):
    swa = StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=1)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=3, callbacks=[swa]))
    model = WithBatchNorm()
    trainer.fit(model)
    assert trainer.current_epoch == 3  # no extra epoch
    linear, bn = model.layer[0], model.layer[1]
    with torch.no_grad():
        batches = [linear(x) for x, _ in model.train_dataloader()]
    expected_mean = torch.stack([b.mean(0) for b in batches]).mean(0)
    torch.testing.assert_close(bn.running_mean, expected_mean)
    assert bn.momentum == 0.1  # restored after the statistics pass


def test_state_dict_round_trip_and_checkpoint(tmp_path):
    swa = StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=1)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=2, callbacks=[swa, checkpoint],
                                          enable_checkpointing=True))
    trainer.fit(BoringModel())
    saved = torch.load(checkpoint.last_model_path, weights_only=False)["callbacks"]["StochasticWeightAveraging"]
    assert saved["n_averaged"] == 2 and saved["latest_update_epoch"] == 1
    assert set(saved["average_model_state"]) == {"layer.weight", "layer.bias"}  # Lightning's layout
    # resuming restores the average and continues it
    resumed = StochasticWeightAveraging(swa_lrs=0.05, swa_epoch_start=1)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=3, callbacks=[resumed]))
    trainer.fit(BoringModel(), ckpt_path=checkpoint.last_model_path)
    assert resumed.n_averaged.item() == 3


@pytest.mark.parametrize("kwargs", [dict(swa_lrs=0.0), dict(swa_lrs=[0.1, -1.0]), dict(swa_lrs=0.1, swa_epoch_start=0),
                                    dict(swa_lrs=0.1, swa_epoch_start=1.5),
                                    dict(swa_lrs=0.1, annealing_strategy="exp"), dict(swa_lrs=0.1, avg_fn=3)])
def test_bad_arguments(kwargs):
    with pytest.raises(MisconfigurationException):
        StochasticWeightAveraging(**kwargs)
