"""Checkpoints: where the default callback writes, what is inside, loading, resuming and refusing bad files."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import ember as pl
from ember.callbacks import EarlyStopping, ModelCheckpoint
from ember.utilities.exceptions import MisconfigurationException
from tests.helpers import BoringModel, HparamsModel, make_trainer, weights

LIGHTNING_KEYS = {"epoch", "global_step", "pytorch-lightning_version", "state_dict", "loops", "callbacks",
                  "optimizer_states", "lr_schedulers", "hparams_name", "hyper_parameters"}


def _val_loss(model: pl.LightningModule) -> float:
    x, y = model.val_dataloader().dataset.tensors
    with torch.no_grad():
        return F.mse_loss(model(x), y).item()


def test_default_checkpoint_location_and_name(tmp_path: Any) -> None:
    trainer = pl.Trainer(default_root_dir=tmp_path, max_epochs=2, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(BoringModel())
    folder = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["epoch=1-step=8.ckpt"]  # save_top_k=1: the latest
    assert trainer.checkpoint_callback.best_model_path == str(folder / "epoch=1-step=8.ckpt")


def test_checkpoint_location_without_logger(tmp_path: Any) -> None:
    trainer = make_trainer(tmp_path, enable_checkpointing=True, max_epochs=1)
    trainer.fit(BoringModel())
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["epoch=0-step=4.ckpt"]


@pytest.fixture
def checkpoint_file(tmp_path: Any) -> tuple[Path, HparamsModel]:
    class Scheduled(HparamsModel):
        def configure_optimizers(self) -> Any:
            opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
            return [opt], [torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)]

    model = Scheduled(lr=0.01, hidden=5)
    trainer = make_trainer(tmp_path, max_epochs=2, enable_checkpointing=True,
                           callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpts", save_last=True)])
    trainer.fit(model)
    return tmp_path / "ckpts" / "last.ckpt", model


def test_checkpoint_contents_load_with_weights_only(checkpoint_file: tuple[Path, HparamsModel]) -> None:
    path, model = checkpoint_file
    checkpoint = torch.load(path, weights_only=True)
    assert LIGHTNING_KEYS <= set(checkpoint)
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (1, 8)
    assert checkpoint["hyper_parameters"] == {"lr": 0.01, "hidden": 5}
    assert checkpoint["hparams_name"] == "kwargs"
    assert checkpoint["pytorch-lightning_version"].startswith("2.")
    assert set(checkpoint["state_dict"]) == set(model.state_dict())
    for name, value in model.state_dict().items():
        assert torch.equal(checkpoint["state_dict"][name], value)
    assert checkpoint["optimizer_states"][0]["state"]  # Adam moments
    assert checkpoint["lr_schedulers"][0]["last_epoch"] == 2
    assert any(key.startswith("ModelCheckpoint") for key in checkpoint["callbacks"])
    assert "fit_loop" in checkpoint["loops"]


def test_load_from_checkpoint_rebuilds_the_module(checkpoint_file: tuple[Path, HparamsModel]) -> None:
    path, model = checkpoint_file
    loaded = type(model).load_from_checkpoint(path)
    assert type(loaded) is type(model)
    assert loaded.hparams == {"lr": 0.01, "hidden": 5}
    assert loaded.layer[0].out_features == 5
    for name, value in weights(model).items():
        assert torch.equal(weights(loaded)[name], value)


def test_load_from_checkpoint_kwargs_override_hparams(checkpoint_file: tuple[Path, HparamsModel]) -> None:
    path, model = checkpoint_file
    loaded = type(model).load_from_checkpoint(path, lr=0.5)
    assert loaded.hparams.lr == 0.5 and loaded.hparams.hidden == 5
    with pytest.raises(RuntimeError, match=r"missing keys.*unexpected keys|size mismatch"):
        type(model).load_from_checkpoint(path, hidden=7)  # a different shape cannot take these weights


def test_load_from_checkpoint_map_location(checkpoint_file: tuple[Path, HparamsModel]) -> None:
    path, model = checkpoint_file
    loaded = type(model).load_from_checkpoint(path, map_location="cpu")
    assert loaded.device == torch.device("cpu")


def test_save_checkpoint_weights_only(tmp_path: Any) -> None:
    model = BoringModel()
    trainer = make_trainer(tmp_path, max_epochs=1)
    trainer.fit(model)
    full, light = tmp_path / "full.ckpt", tmp_path / "light.ckpt"
    trainer.save_checkpoint(full)
    trainer.save_checkpoint(light, weights_only=True)
    full_ckpt = torch.load(full, weights_only=True)
    light_ckpt = torch.load(light, weights_only=True)
    assert "optimizer_states" in full_ckpt and "lr_schedulers" in full_ckpt
    assert "optimizer_states" not in light_ckpt and "lr_schedulers" not in light_ckpt
    assert "callbacks" not in light_ckpt
    assert torch.equal(light_ckpt["state_dict"]["layer.weight"], model.layer.weight)
    with pytest.raises(MisconfigurationException, match=r"weights_only=True.*fit cannot resume.*load_from_checkpoint"):
        make_trainer(tmp_path, max_epochs=2).fit(BoringModel(), ckpt_path=light)


def test_save_checkpoint_needs_a_model(tmp_path: Any) -> None:
    with pytest.raises(MisconfigurationException, match=r"save_checkpoint\(\) needs a model"):
        make_trainer(tmp_path).save_checkpoint(tmp_path / "x.ckpt")


class _Scored(BoringModel):
    """val_loss is scripted per epoch, so "best" is known: epoch 1 is best."""

    SCORES = [3.0, 1.0, 2.0]

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        epoch = min(self.current_epoch, 2)
        self.log("val_loss", self.SCORES[epoch] if not self.trainer.sanity_checking else 9.0)


@pytest.fixture
def best_and_last(tmp_path: Any) -> tuple[pl.Trainer, _Scored, dict[int, dict[str, torch.Tensor]]]:
    per_epoch: dict[int, dict[str, torch.Tensor]] = {}

    class Snapshot(pl.Callback):
        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            per_epoch[trainer.current_epoch] = weights(pl_module)

    model = _Scored()
    # save_top_k=2 so that last.ckpt (refreshed with each top-k save, as in Lightning 2.6) holds epoch 2
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpts", monitor="val_loss", save_last=True, save_top_k=2)
    trainer = make_trainer(tmp_path, max_epochs=3, enable_checkpointing=True, callbacks=[Snapshot(), checkpoint])
    trainer.fit(model)
    return trainer, model, per_epoch


def test_best_model_path_follows_the_monitor(best_and_last: Any) -> None:
    trainer, _, _ = best_and_last
    assert Path(trainer.checkpoint_callback.best_model_path).name == "epoch=1-step=8.ckpt"
    assert trainer.checkpoint_callback.best_model_score.item() == 1.0


@pytest.mark.parametrize("fn", ["validate", "test", "predict"])
def test_evaluate_with_best_last_and_path(best_and_last: Any, fn: str) -> None:
    trainer, model, per_epoch = best_and_last
    for ckpt_path, epoch in (("best", 1), ("last", 2), (trainer.checkpoint_callback.best_model_path, 1)):
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()  # the checkpoint must bring the weights back
        getattr(trainer, fn)(model, ckpt_path=ckpt_path, **({} if fn == "predict" else {"verbose": False}))
        expected_path = {"best": trainer.checkpoint_callback.best_model_path,
                         "last": trainer.checkpoint_callback.last_model_path}.get(ckpt_path, ckpt_path)
        assert trainer.ckpt_path == expected_path
        for name, value in per_epoch[epoch].items():
            assert torch.equal(weights(model)[name], value), (ckpt_path, name)


def test_validate_result_uses_checkpoint_weights(best_and_last: Any) -> None:
    trainer, model, per_epoch = best_and_last
    expected = BoringModel()
    expected.load_state_dict({k: v for k, v in per_epoch[1].items()}, strict=False)
    result = trainer.test(model, ckpt_path="best", verbose=False)
    x, y = model.test_dataloader().dataset.tensors
    assert result[0]["test_loss"] == pytest.approx(F.mse_loss(expected(x), y).item())


def test_resume_after_epoch_end_equals_uninterrupted_run(tmp_path: Any) -> None:
    class Momentum(BoringModel):
        def configure_optimizers(self) -> Any:
            opt = torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)
            return [opt], [torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)]

    full = Momentum()
    make_trainer(tmp_path, max_epochs=3).fit(full)

    first = Momentum()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpts", save_top_k=-1)
    make_trainer(tmp_path, max_epochs=1, enable_checkpointing=True, callbacks=[checkpoint]).fit(first)
    path = tmp_path / "ckpts" / "epoch=0-step=4.ckpt"
    assert path.exists()

    epochs: list[int] = []

    class Epochs(pl.Callback):
        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            epochs.append(trainer.current_epoch)

    resumed = Momentum()
    trainer = make_trainer(tmp_path, max_epochs=3, callbacks=[Epochs()])
    trainer.fit(resumed, ckpt_path=path)
    assert epochs == [1, 2]  # continues at the next epoch
    assert trainer.global_step == 12
    for name, value in weights(full).items():
        torch.testing.assert_close(weights(resumed)[name], value, rtol=0, atol=0)


def test_mismatched_weights_list_missing_and_unexpected_keys(tmp_path: Any) -> None:
    model = BoringModel()
    trainer = make_trainer(tmp_path)
    trainer.fit(model)
    path = tmp_path / "boring.ckpt"
    trainer.save_checkpoint(path)
    with pytest.raises(RuntimeError, match=r"missing keys \['layer\.0\.weight'.*unexpected keys \['layer\.weight'"):
        make_trainer(tmp_path).validate(HparamsModel(), ckpt_path=path)
    with pytest.raises(RuntimeError, match=r"missing keys.*layer\.0\.weight.*unexpected keys.*layer\.weight"):
        HparamsModel.load_from_checkpoint(path)
    loose = HparamsModel.load_from_checkpoint(path, strict=False)  # strict=False skips what does not match
    assert isinstance(loose, HparamsModel)


def test_truncated_checkpoint(tmp_path: Any) -> None:
    model = BoringModel()
    trainer = make_trainer(tmp_path)
    trainer.fit(model)
    path = tmp_path / "full.ckpt"
    trainer.save_checkpoint(path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"truncated.ckpt.*not a valid checkpoint.*(corrupt|truncated)"):
        make_trainer(tmp_path).validate(model, ckpt_path=truncated)
    with pytest.raises(ValueError, match="not a valid checkpoint"):
        BoringModel.load_from_checkpoint(truncated)


def test_not_a_checkpoint(tmp_path: Any) -> None:
    text = tmp_path / "notes.ckpt"
    text.write_text("hello, this is not a checkpoint")
    with pytest.raises(ValueError, match=r"notes.ckpt.*not a valid checkpoint"):
        BoringModel.load_from_checkpoint(text)
    weights_file = tmp_path / "weights.pt"
    torch.save(BoringModel().state_dict(), weights_file)  # a bare state_dict is not a checkpoint
    with pytest.raises(ValueError, match=r"weights.pt.*not a Lightning/ember checkpoint.*'state_dict'"):
        BoringModel.load_from_checkpoint(weights_file)


class _Payload:
    """An arbitrary object: unpickling it could run code."""

    def __init__(self) -> None:
        self.value = 42


def test_arbitrary_pickled_object_is_refused(tmp_path: Any) -> None:
    model = BoringModel()
    trainer = make_trainer(tmp_path)
    trainer.fit(model)
    path = tmp_path / "unsafe.ckpt"
    checkpoint = torch.load(_save(trainer, tmp_path / "safe.ckpt"), weights_only=True)
    checkpoint["payload"] = _Payload()
    torch.save(checkpoint, path)
    with pytest.raises(pickle.UnpicklingError, match=r"unsafe.ckpt.*weights_only=False"):
        BoringModel.load_from_checkpoint(path)
    with pytest.raises(pickle.UnpicklingError, match="weights_only=False"):
        make_trainer(tmp_path).validate(model, ckpt_path=path)
    loaded = BoringModel.load_from_checkpoint(path, weights_only=False)  # the user vouches for the file
    assert torch.equal(loaded.layer.weight, model.layer.weight)


def _save(trainer: pl.Trainer, path: Path) -> Path:
    trainer.save_checkpoint(path)
    return path


def test_module_checkpoint_hooks(tmp_path: Any) -> None:
    class Hooks(BoringModel):
        loaded: dict[str, Any] | None = None

        def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
            checkpoint["extra"] = {"answer": 42}

        def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
            self.loaded = checkpoint.get("extra")

    trainer = make_trainer(tmp_path)
    trainer.fit(Hooks())
    path = _save(trainer, tmp_path / "hooks.ckpt")
    assert torch.load(path, weights_only=True)["extra"] == {"answer": 42}
    assert Hooks.load_from_checkpoint(path).loaded == {"answer": 42}


def test_early_stopping_end_to_end(tmp_path: Any) -> None:
    class Plateau(BoringModel):
        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("val_loss", 1.0)  # never improves

    stopper = EarlyStopping(monitor="val_loss", patience=2)
    trainer = make_trainer(tmp_path, max_epochs=20, callbacks=[stopper])
    trainer.fit(Plateau())
    assert trainer.should_stop
    assert trainer.current_epoch == 3  # the first check sets the best, then two checks without improvement
    assert stopper.stopped_epoch == 2 and stopper.wait_count == 2


def test_early_stopping_missing_metric(tmp_path: Any) -> None:
    trainer = make_trainer(tmp_path, max_epochs=2, callbacks=[EarlyStopping(monitor="nope")])
    with pytest.raises(RuntimeError, match=r"monitor='nope'.*not among the logged metrics.*val_loss"):
        trainer.fit(BoringModel())


def test_early_stopping_respects_min_epochs(tmp_path: Any) -> None:
    class Plateau(BoringModel):
        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("val_loss", 1.0)

    trainer = make_trainer(tmp_path, max_epochs=20, min_epochs=6,
                           callbacks=[EarlyStopping(monitor="val_loss", patience=1)])
    trainer.fit(Plateau())
    assert trainer.should_stop and trainer.current_epoch == 6
