"""LambdaCallback: plain functions run as the hooks they are named after."""

import pytest

import ember as pl
from ember.callbacks import LambdaCallback
from tests.helpers import BoringModel, trainer_kwargs


def test_functions_run_as_hooks_with_the_hook_arguments(tmp_path):
    calls = []
    callback = LambdaCallback(
        on_fit_start=lambda trainer, pl_module: calls.append(("fit_start", trainer.current_epoch)),
        on_train_batch_end=lambda trainer, pl_module, outputs, batch, batch_idx: calls.append(
            ("batch_end", batch_idx, float(outputs["loss"]) > 0)),
        on_train_epoch_end=lambda trainer, pl_module: calls.append(("epoch_end", trainer.current_epoch)),
    )
    pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=2, limit_train_batches=2, callbacks=[callback])).fit(
        BoringModel())
    assert calls == [("fit_start", 0), ("batch_end", 0, True), ("batch_end", 1, True), ("epoch_end", 0),
                     ("batch_end", 0, True), ("batch_end", 1, True), ("epoch_end", 1)]


def test_unknown_hook_names_are_refused():
    with pytest.raises(TypeError, match="on_trian_start"):
        LambdaCallback(on_trian_start=lambda trainer, pl_module: None)
    with pytest.raises(TypeError, match="callable"):
        LambdaCallback(on_train_start=3)
