"""EMAWeightAveraging: the average follows ema = decay * ema + (1 - decay) * weights, validation and
checkpoints see it, the model ends with it."""

import pytest
import torch

import ember as pl
from ember.callbacks import EMAWeightAveraging, ModelCheckpoint, WeightAveraging
from tests.helpers import BoringModel, trainer_kwargs, weights


class Record(pl.Callback):
    """Weights after every optimizer step and at the start of every validation epoch."""

    def __init__(self):
        self.after_step, self.in_validation = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.after_step.append(weights(pl_module))

    def on_validation_epoch_start(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.in_validation.append(weights(pl_module))


def ema(snapshots, decay, every=1, start=0):
    average = None
    for step, snap in enumerate(snapshots):
        if step < start or step % every:
            continue
        average = dict(snap) if average is None else {k: decay * average[k] + (1 - decay) * v
                                                      for k, v in snap.items()}
    return average


def test_ema_follows_the_formula_and_is_swapped_in(tmp_path):
    record = Record()
    averaging = EMAWeightAveraging(decay=0.9)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=2, callbacks=[averaging, record]))
    model = BoringModel()
    trainer.fit(model)
    # validation of epoch 0 ran on the EMA of its 4 steps; the live weights came back afterwards
    torch.testing.assert_close(record.in_validation[0]["layer.weight"],
                               ema(record.after_step[:4], 0.9)["layer.weight"])
    assert not torch.equal(record.after_step[4]["layer.weight"], record.in_validation[0]["layer.weight"])
    # after fit the model holds the EMA of all 8 steps
    for name, value in weights(model).items():
        torch.testing.assert_close(value, ema(record.after_step, 0.9)[name])


def test_every_n_steps_and_start_step(tmp_path):
    record = Record()
    averaging = EMAWeightAveraging(decay=0.5, update_every_n_steps=2, update_starting_at_step=2)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=2, limit_val_batches=0,
                                          callbacks=[averaging, record]))
    model = BoringModel()
    trainer.fit(model)
    for name, value in weights(model).items():
        torch.testing.assert_close(value, ema(record.after_step, 0.5, every=2, start=2)[name])


def test_checkpoint_holds_the_average_and_the_live_weights(tmp_path):
    record = Record()
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=1, enable_checkpointing=True, limit_val_batches=0,
                                          callbacks=[EMAWeightAveraging(decay=0.8), record, checkpoint]))
    trainer.fit(BoringModel())
    saved = torch.load(checkpoint.last_model_path, weights_only=False)
    expected = ema(record.after_step, 0.8)
    torch.testing.assert_close(saved["state_dict"]["layer.weight"], expected["layer.weight"])
    torch.testing.assert_close(saved["current_model_state"]["layer.weight"], record.after_step[-1]["layer.weight"])
    assert saved["averaging_state"]["n_averaged"].item() == 4
    # resuming puts the live weights back in the model and the average in the callback
    resumed = EMAWeightAveraging(decay=0.8)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=1, limit_val_batches=0, callbacks=[resumed]))
    model = BoringModel()
    trainer.fit(model, ckpt_path=checkpoint.last_model_path)  # already at max_epochs: restores, trains nothing
    torch.testing.assert_close(resumed.average_model.layer.weight, expected["layer.weight"])


def test_plain_weight_averaging_is_the_mean(tmp_path):
    record = Record()
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=1, limit_val_batches=0,
                                          callbacks=[WeightAveraging(), record]))
    model = BoringModel()
    trainer.fit(model)
    mean = torch.stack([s["layer.weight"] for s in record.after_step]).mean(0)
    torch.testing.assert_close(model.layer.weight.detach(), mean)


def test_bad_decay():
    with pytest.raises(ValueError, match="decay"):
        EMAWeightAveraging(decay=1.5)
