"""Unit tests for ``ModelCheckpoint`` driven by a stub trainer (the real Trainer is not needed).

The stub implements exactly the trainer contract the callback relies on; ``_Loop`` replays the hook
order of ``Trainer.fit`` (train batches -> validation -> train epoch end).
"""

from __future__ import annotations

import os
import warnings
import weakref
from datetime import timedelta
from types import SimpleNamespace
from uuid import uuid4

import fsspec
import pytest
import torch
import yaml

import ember.callbacks.model_checkpoint as mc_module
from ember.callbacks.model_checkpoint import ModelCheckpoint
from ember.utilities.exceptions import MisconfigurationException


# --------------------------------------------------------------------------------------------------
# stubs
# --------------------------------------------------------------------------------------------------
class StubStrategy:
    def __init__(self, reduce_result=None):
        self.broadcasts = []
        self.barriers = 0
        self.reduce_calls = []
        self._reduce_result = reduce_result

    def broadcast(self, obj, src=0):
        self.broadcasts.append(obj)
        return obj

    def barrier(self, name=None):
        self.barriers += 1

    def reduce_boolean_decision(self, decision, all=True):
        self.reduce_calls.append((decision, all))
        return decision if self._reduce_result is None else self._reduce_result


class StubLogger:
    def __init__(self, save_dir, name="lightning_logs", version=0):
        self.save_dir = save_dir
        self.name = name
        self.version = version
        self.notified = []

    def after_save_checkpoint(self, checkpoint_callback):
        # record what the callback looked like when the logger was told
        self.notified.append((type(checkpoint_callback), checkpoint_callback.best_model_path))


class StubTrainer(SimpleNamespace):
    """Implements the trainer contract; ``save_checkpoint`` writes a tiny torch file via fsspec."""

    def __init__(self, root, **overrides):
        defaults = dict(
            current_epoch=0,
            global_step=0,
            callback_metrics={},
            loggers=[],
            default_root_dir=str(root),
            is_global_zero=True,
            strategy=StubStrategy(),
            should_stop=False,
            fast_dev_run=False,
            sanity_checking=False,
            state=SimpleNamespace(fn="fit"),
            num_val_batches=[2],
            val_check_interval=1.0,
            check_val_every_n_epoch=1,
            lightning_module=None,
            ckpt_path=None,
        )
        defaults.update(overrides)
        super().__init__(**defaults)
        self.saves = []  # (filepath, weights_only, names present in the folder just before writing)

    def save_checkpoint(self, filepath, weights_only=False):
        fs, path = fsspec.core.url_to_fs(filepath)
        parent = os.path.dirname(path)
        fs.makedirs(parent, exist_ok=True)
        before = sorted(os.path.basename(p.rstrip("/")) for p in fs.ls(parent, detail=False))
        self.saves.append((filepath, weights_only, before))
        with fs.open(path, "wb") as f:
            torch.save({"global_step": self.global_step, "epoch": self.current_epoch}, f)


def load_step(path):
    with fsspec.open(path, "rb") as f:
        return torch.load(f, weights_only=True)["global_step"]


def files_in(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


class _Loop:
    """Replays Lightning's hook order for ``fit`` against one callback."""

    def __init__(self, cb, trainer, batches_per_epoch=3, validate=True):
        self.cb, self.t = cb, trainer
        self.batches = batches_per_epoch
        self.validate = validate
        if not validate:
            trainer.num_val_batches = [0]
        cb.setup(trainer, None, "fit")
        cb.on_train_start(trainer, None)

    def epoch(self, val_metrics=None, train_epoch_metrics=None):
        t, cb = self.t, self.cb
        for i in range(self.batches):
            t.global_step += 1
            cb.on_train_batch_end(t, None, None, None, i)
        if self.validate:
            if val_metrics:
                t.callback_metrics = {**t.callback_metrics, **{k: torch.tensor(float(v)) for k, v in val_metrics.items()}}
            cb.on_validation_end(t, None)
        if train_epoch_metrics:
            t.callback_metrics = {**t.callback_metrics, **{k: torch.tensor(float(v)) for k, v in train_epoch_metrics.items()}}
        cb.on_train_epoch_end(t, None)
        t.current_epoch += 1

    def end(self):
        self.cb.on_train_end(self.t, None)

    def run(self, epochs=None, vals=None, key="val_loss"):
        if vals is not None:
            for v in vals:
                self.epoch({key: v})
        else:
            for _ in range(epochs):
                self.epoch()
        self.end()


# --------------------------------------------------------------------------------------------------
# construction & argument checks
# --------------------------------------------------------------------------------------------------
def test_class_constants_and_defaults():
    cb = ModelCheckpoint()
    assert (cb.CHECKPOINT_JOIN_CHAR, cb.CHECKPOINT_EQUALS_CHAR, cb.CHECKPOINT_NAME_LAST) == ("-", "=", "last")
    assert (cb.FILE_EXTENSION, cb.STARTING_VERSION) == (".ckpt", 1)
    assert cb.dirpath is None and cb.filename is None and cb.monitor is None
    assert cb.save_top_k == 1 and cb.mode == "min" and cb.save_last is None
    assert cb.best_model_path == "" and cb.best_model_score is None and cb.best_k_models == {}
    assert cb.kth_best_model_path == "" and cb.last_model_path == "" and cb.current_score is None
    assert torch.isinf(cb.kth_value) and cb.kth_value > 0
    assert torch.isinf(ModelCheckpoint(mode="max").kth_value) and ModelCheckpoint(mode="max").kth_value < 0
    # every_n_epochs defaults to 1 only when no trigger is given
    assert (cb._every_n_epochs, cb._every_n_train_steps, cb.every_n_epochs) == (1, 0, 1)
    steps = ModelCheckpoint(every_n_train_steps=5)
    assert (steps._every_n_epochs, steps._every_n_train_steps) == (0, 5)
    timed = ModelCheckpoint(train_time_interval=timedelta(minutes=1))
    assert (timed._every_n_epochs, timed._every_n_train_steps) == (0, 0)
    assert ModelCheckpoint(every_n_epochs=0)._every_n_epochs == 0


def test_state_key():
    assert ModelCheckpoint().state_key == (
        "ModelCheckpoint{'monitor': None, 'mode': 'min', 'every_n_train_steps': 0, 'every_n_epochs': 1, "
        "'train_time_interval': None}"
    )
    assert ModelCheckpoint(monitor="val_acc", mode="max", every_n_train_steps=7).state_key == (
        "ModelCheckpoint{'monitor': 'val_acc', 'mode': 'max', 'every_n_train_steps': 7, 'every_n_epochs': 0, "
        "'train_time_interval': None}"
    )


def test_local_dirpath_is_expanded_and_resolved(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert ModelCheckpoint(dirpath="~/ck").dirpath == os.path.realpath(str(tmp_path / "ck"))
    monkeypatch.chdir(tmp_path)
    assert ModelCheckpoint(dirpath="rel").dirpath == os.path.realpath(str(tmp_path / "rel"))
    assert ModelCheckpoint(dirpath=tmp_path / "p").dirpath == os.path.realpath(str(tmp_path / "p"))
    assert ModelCheckpoint(dirpath="memory://bucket/ck").dirpath == "memory://bucket/ck"


@pytest.mark.parametrize(
    ("kwargs", "needles"),
    [
        (dict(mode="maximum"), ["mode='maximum'", "'min'", "'max'"]),
        (dict(save_top_k=-2), ["save_top_k=-2", "-1"]),
        (dict(save_top_k=1.5), ["save_top_k=1.5"]),
        (dict(save_top_k=3), ["save_top_k=3", "monitor=None", "monitor="]),
        (dict(every_n_train_steps=-1), ["every_n_train_steps=-1", ">= 0"]),
        (dict(every_n_epochs=-3), ["every_n_epochs=-3", ">= 0"]),
        (dict(every_n_epochs=2.0), ["every_n_epochs=2.0", "int"]),
        (dict(every_n_epochs=2, every_n_train_steps=3), ["every_n_train_steps=3", "every_n_epochs=2", "mutually exclusive"]),
        (dict(every_n_train_steps=3, train_time_interval=timedelta(seconds=5)), ["mutually exclusive"]),
        (dict(train_time_interval=30), ["train_time_interval=30", "timedelta"]),
        (dict(save_last="sometimes"), ["save_last='sometimes'", "'link'"]),
    ],
)
def test_invalid_arguments_raise_clear_errors(kwargs, needles):
    with pytest.raises(MisconfigurationException) as err:
        ModelCheckpoint(**kwargs)
    for needle in needles:
        assert needle in str(err.value)


@pytest.mark.parametrize("top_k", [-1, 0, 1])
def test_monitor_none_allows_top_k_minus_one_zero_one(top_k):
    assert ModelCheckpoint(save_top_k=top_k).save_top_k == top_k


def test_triggers_with_zero_are_not_exclusive_conflicts():
    cb = ModelCheckpoint(every_n_epochs=0, every_n_train_steps=4)
    assert (cb._every_n_epochs, cb._every_n_train_steps) == (0, 4)


# --------------------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------------------
def test_format_checkpoint_name_templates(tmp_path):
    metrics = {"epoch": torch.tensor(3), "step": torch.tensor(120), "val_loss": torch.tensor(0.1234)}
    assert ModelCheckpoint().format_checkpoint_name(metrics) == "epoch=3-step=120.ckpt"
    cb = ModelCheckpoint(filename="{epoch}-{val_loss:.2f}")
    assert cb.format_checkpoint_name(metrics) == "epoch=3-val_loss=0.12.ckpt"
    assert cb.format_checkpoint_name(metrics, ver=2) == "epoch=3-val_loss=0.12-v2.ckpt"
    assert cb.format_checkpoint_name(metrics, prefix="pre") == "pre-epoch=3-val_loss=0.12.ckpt"
    assert cb.format_checkpoint_name(metrics, filename="last") == "last.ckpt"
    assert cb.format_checkpoint_name(metrics, filename="{step}-last") == "step=120-last.ckpt"
    no_names = ModelCheckpoint(filename="{epoch:03d}_{val_loss:.3f}", auto_insert_metric_name=False)
    assert no_names.format_checkpoint_name(metrics) == "003_0.123.ckpt"
    # a name that is a prefix of another must not be confused with it
    prefixed = ModelCheckpoint(filename="{epoch}-{epoch_x}")
    assert prefixed.format_checkpoint_name({"epoch": 3, "epoch_x": 0.5}) == "epoch=3-epoch_x=0.5.ckpt"
    # missing metrics read as 0; literal text is kept
    missing = ModelCheckpoint(filename="run-{missing}-{epoch}")
    assert missing.format_checkpoint_name({"epoch": 1}) == "run-missing=0-epoch=1.ckpt"
    with_dir = ModelCheckpoint(dirpath=tmp_path, filename="{epoch}")
    assert with_dir.format_checkpoint_name(metrics) == os.path.join(os.path.realpath(tmp_path), "epoch=3.ckpt")


def test_metric_names_with_dots_and_slashes():
    metrics = {"epoch": torch.tensor(3), "val/loss": torch.tensor(0.1234), "val.acc": torch.tensor(0.9)}
    cb = ModelCheckpoint(filename="{epoch}-{val/loss:.2f}-{val.acc:.1f}")
    # auto-inserted names keep the slash, which makes a sub-folder (Lightning does the same)
    assert cb.format_checkpoint_name(metrics) == "epoch=3-val/loss=0.12-val.acc=0.9.ckpt"
    cb = ModelCheckpoint(filename="epoch={epoch}-val_loss={val/loss:.2f}", auto_insert_metric_name=False)
    assert cb.format_checkpoint_name(metrics) == "epoch=3-val_loss=0.12.ckpt"


def test_class_level_name_overrides_are_respected():
    class Custom(ModelCheckpoint):
        CHECKPOINT_JOIN_CHAR = "_"
        CHECKPOINT_EQUALS_CHAR = ":"
        FILE_EXTENSION = ".pt"

    assert Custom().format_checkpoint_name({"epoch": 1, "step": 2}, ver=1) == "epoch:1_step:2_v1.pt"


# --------------------------------------------------------------------------------------------------
# default folder resolution
# --------------------------------------------------------------------------------------------------
def test_default_dirpath_without_loggers(tmp_path):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint()
    cb.setup(t, None, "fit")
    assert cb.dirpath == os.path.join(str(tmp_path), "checkpoints")
    assert t.strategy.broadcasts[0] == cb.dirpath  # the folder is broadcast from rank 0


@pytest.mark.parametrize(
    ("save_dir", "name", "version", "expected"),
    [
        ("logs", "exp", 3, ("logs", "exp", "version_3", "checkpoints")),
        ("logs", "exp", "run_a", ("logs", "exp", "run_a", "checkpoints")),
        (None, "lightning_logs", 0, ("ROOT", "lightning_logs", "version_0", "checkpoints")),
    ],
)
def test_default_dirpath_from_first_logger(tmp_path, save_dir, name, version, expected):
    save_dir = str(tmp_path / save_dir) if save_dir else None
    t = StubTrainer(tmp_path / "root", loggers=[StubLogger(save_dir, name, version), StubLogger("other", "x", 9)])
    cb = ModelCheckpoint()
    cb.setup(t, None, "fit")
    base = str(tmp_path / "root") if expected[0] == "ROOT" else str(tmp_path / expected[0])
    assert cb.dirpath == os.path.join(base, *expected[1:])


def test_explicit_dirpath_is_kept(tmp_path):
    t = StubTrainer(tmp_path / "root", loggers=[StubLogger(str(tmp_path), "n", 1)])
    cb = ModelCheckpoint(dirpath=tmp_path / "mine")
    cb.setup(t, None, "fit")
    assert cb.dirpath == os.path.realpath(str(tmp_path / "mine"))


def test_warns_when_dir_not_empty_at_fit_start(tmp_path):
    (tmp_path / "ck").mkdir()
    t = StubTrainer(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ModelCheckpoint(dirpath=tmp_path / "ck").setup(t, None, "fit")  # empty: no warning
    assert not [w for w in caught if "not empty" in str(w.message)]
    (tmp_path / "ck" / "old.ckpt").write_bytes(b"x")
    with pytest.warns(UserWarning, match="exists and is not empty"):
        ModelCheckpoint(dirpath=tmp_path / "ck").setup(t, None, "fit")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ModelCheckpoint(dirpath=tmp_path / "ck").setup(t, None, "validate")  # not at fit start
        ModelCheckpoint(dirpath=tmp_path / "ck", save_top_k=0).setup(t, None, "fit")  # saves no top-k
        StubTrainer(tmp_path, is_global_zero=False)  # (non-zero ranks never warn)
        ModelCheckpoint(dirpath=tmp_path / "ck").setup(StubTrainer(tmp_path, is_global_zero=False), None, "fit")
    assert not [w for w in caught if "not empty" in str(w.message)]


# --------------------------------------------------------------------------------------------------
# saving without a monitor
# --------------------------------------------------------------------------------------------------
def test_default_keeps_only_newest_epoch_checkpoint(tmp_path):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint()
    loop = _Loop(cb, t, batches_per_epoch=6)
    loop.epoch()
    ck = tmp_path / "checkpoints"
    assert files_in(ck) == ["epoch=0-step=6.ckpt"]
    loop.epoch()
    assert files_in(ck) == ["epoch=1-step=12.ckpt"]
    assert cb.best_model_path == str(ck / "epoch=1-step=12.ckpt")
    assert cb.best_model_score is None and cb.best_k_models == {}
    assert load_step(cb.best_model_path) == 12
    # the newer file was written before the older one was deleted
    assert t.saves[-1][2] == ["epoch=0-step=6.ckpt"]


def test_save_top_k_minus_one_keeps_all(tmp_path):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", save_top_k=-1)
    _Loop(cb, t).run(epochs=3)
    assert files_in(tmp_path / "ck") == ["epoch=0-step=3.ckpt", "epoch=1-step=6.ckpt", "epoch=2-step=9.ckpt"]


def test_save_top_k_zero_saves_nothing_but_last(tmp_path):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", save_top_k=0)
    _Loop(cb, t).run(epochs=2)
    assert files_in(tmp_path / "ck") == [] and t.saves == []
    t2 = StubTrainer(tmp_path)
    cb2 = ModelCheckpoint(dirpath=tmp_path / "ck2", save_top_k=0, save_last=True)
    _Loop(cb2, t2).run(epochs=2)
    assert files_in(tmp_path / "ck2") == ["last.ckpt"]
    assert load_step(tmp_path / "ck2" / "last.ckpt") == 6
    # with no regular checkpoint, `last` is written once, when training ends
    assert [os.path.basename(p) for p, _, _ in t2.saves] == ["last.ckpt"]
    assert cb2.best_model_path == "" and cb2.last_model_path == str(tmp_path / "ck2" / "last.ckpt")


def test_save_last_writes_a_full_copy(tmp_path):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True)
    _Loop(cb, t).run(epochs=3)
    ck = tmp_path / "ck"
    assert files_in(ck) == ["epoch=2-step=9.ckpt", "last.ckpt"]
    assert not os.path.islink(ck / "last.ckpt")
    assert load_step(ck / "last.ckpt") == 9
    assert cb.last_model_path == str(ck / "last.ckpt")


def test_save_last_link_points_at_newest_checkpoint(tmp_path):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", save_last="link", save_top_k=-1)
    loop = _Loop(cb, t)
    loop.epoch()
    ck = tmp_path / "ck"
    assert os.path.islink(ck / "last.ckpt") and os.readlink(ck / "last.ckpt") == "epoch=0-step=3.ckpt"
    loop.epoch()
    assert os.readlink(ck / "last.ckpt") == "epoch=1-step=6.ckpt"  # relative link, replaced
    assert load_step(ck / "last.ckpt") == 6
    assert files_in(ck) == ["epoch=0-step=3.ckpt", "epoch=1-step=6.ckpt", "last.ckpt"]
    assert t.strategy.barriers == 2
    # only the real checkpoints went through trainer.save_checkpoint
    assert [os.path.basename(s[0]) for s in t.saves] == ["epoch=0-step=3.ckpt", "epoch=1-step=6.ckpt"]


def test_save_last_link_keeps_pointing_at_newest_when_not_improving(tmp_path):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", monitor="val_loss", save_last="link")
    _Loop(cb, t).run(vals=[1, 2, 3])
    assert files_in(tmp_path / "ck") == ["epoch=0-step=3.ckpt", "last.ckpt"]
    assert os.readlink(tmp_path / "ck" / "last.ckpt") == "epoch=0-step=3.ckpt"


def test_save_last_link_without_top_k_writes_a_file(tmp_path):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", save_last="link", save_top_k=0)
    _Loop(cb, t).run(epochs=2)
    assert files_in(tmp_path / "ck") == ["last.ckpt"]
    assert not os.path.islink(tmp_path / "ck" / "last.ckpt")


def test_version_counter_when_name_exists(tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "epoch=0-step=3.ckpt").write_bytes(b"someone else's")
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=ck, save_top_k=-1)
    with pytest.warns(UserWarning, match="not empty"):
        loop = _Loop(cb, t)
    loop.epoch()
    assert files_in(ck) == ["epoch=0-step=3-v1.ckpt", "epoch=0-step=3.ckpt"]
    assert (ck / "epoch=0-step=3.ckpt").read_bytes() == b"someone else's"
    assert cb.best_model_path == str(ck / "epoch=0-step=3-v1.ckpt")


def test_constant_filename_versions_with_top_k_all(tmp_path):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", monitor="val_loss", save_top_k=-1, filename="const")
    _Loop(cb, t).run(vals=[3, 1, 2, 0.5])
    assert files_in(tmp_path / "ck") == ["const-v1.ckpt", "const-v2.ckpt", "const-v3.ckpt", "const.ckpt"]
    assert os.path.basename(cb.best_model_path) == "const-v3.ckpt"
    assert os.path.basename(cb.kth_best_model_path) == "const.ckpt" and cb.kth_value == 3


def test_constant_filename_overwrites_replaced_file(tmp_path):
    # the file being displaced may be overwritten in place instead of getting a -v1 sibling
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", monitor="val_loss", save_top_k=1, filename="const")
    _Loop(cb, t).run(vals=[3, 1, 2, 0.5])
    assert files_in(tmp_path / "ck") == ["const.ckpt"]
    assert load_step(tmp_path / "ck" / "const.ckpt") == 12 and cb.best_model_score == 0.5
    t2 = StubTrainer(tmp_path)
    cb2 = ModelCheckpoint(dirpath=tmp_path / "ck2", save_top_k=-1, filename="const")
    _Loop(cb2, t2).run(epochs=3)
    assert files_in(tmp_path / "ck2") == ["const.ckpt"]
    assert load_step(tmp_path / "ck2" / "const.ckpt") == 9


def test_version_counter_disabled_overwrites(tmp_path):
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "fixed.ckpt").write_bytes(b"old")
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=ck, filename="fixed", enable_version_counter=False)
    with pytest.warns(UserWarning, match="not empty"):
        _Loop(cb, t).run(epochs=1)
    assert files_in(ck) == ["fixed.ckpt"] and load_step(ck / "fixed.ckpt") == 3


def test_last_name_collision_gets_version(tmp_path):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", filename="last", save_top_k=-1, save_last=True)
    _Loop(cb, t).run(epochs=2)
    assert files_in(tmp_path / "ck") == ["last-v1.ckpt", "last.ckpt"]
    assert os.path.basename(cb.last_model_path) == "last-v1.ckpt"
    assert os.path.basename(cb.best_model_path) == "last.ckpt"
    assert load_step(cb.last_model_path) == 6


def test_templated_last_name_removes_previous_last(tmp_path):
    class StepLast(ModelCheckpoint):
        CHECKPOINT_NAME_LAST = "{epoch}-last"

    t = StubTrainer(tmp_path)
    cb = StepLast(dirpath=tmp_path / "ck", save_top_k=-1, save_last=True)
    _Loop(cb, t).run(epochs=2)
    assert files_in(tmp_path / "ck") == ["epoch=0-step=3.ckpt", "epoch=1-last.ckpt", "epoch=1-step=6.ckpt"]
    assert cb._find_last_checkpoints(t) == {str(tmp_path / "ck" / "epoch=1-last.ckpt")}


def test_save_weights_only_and_logger_notification(tmp_path):
    logger = StubLogger(str(tmp_path / "logs"), "exp", 2)
    t = StubTrainer(tmp_path, loggers=[logger])
    cb = ModelCheckpoint(save_weights_only=True, save_last=True)
    _Loop(cb, t).run(epochs=1)
    assert all(weights_only is True for _, weights_only, _ in t.saves)
    expected_dir = os.path.join(str(tmp_path / "logs"), "exp", "version_2", "checkpoints")
    assert files_in(expected_dir) == ["epoch=0-step=3.ckpt", "last.ckpt"]
    # one notification per written file, with a weak proxy of the callback
    assert len(logger.notified) == 2
    assert all(kind in (weakref.ProxyType, weakref.CallableProxyType) for kind, _ in logger.notified)
    assert logger.notified[0][1] == os.path.join(expected_dir, "epoch=0-step=3.ckpt")


def test_non_zero_rank_does_not_notify_loggers_or_delete(tmp_path):
    logger = StubLogger(str(tmp_path), "n", 0)
    t = StubTrainer(tmp_path, loggers=[logger], is_global_zero=False)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck")
    _Loop(cb, t).run(epochs=2)
    assert logger.notified == []
    # deletions are rank 0's job: this rank leaves the older file alone
    assert files_in(tmp_path / "ck") == ["epoch=0-step=3.ckpt", "epoch=1-step=6.ckpt"]


# --------------------------------------------------------------------------------------------------
# saving with a monitor
# --------------------------------------------------------------------------------------------------
def test_top_k_min_keeps_best_two(tmp_path):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", monitor="val_loss", save_top_k=2)
    _Loop(cb, t).run(vals=[3, 1, 2, 0.5])
    ck = tmp_path / "ck"
    assert files_in(ck) == ["epoch=1-step=6.ckpt", "epoch=3-step=12.ckpt"]
    assert cb.best_model_path == str(ck / "epoch=3-step=12.ckpt") and cb.best_model_score == 0.5
    assert cb.kth_best_model_path == str(ck / "epoch=1-step=6.ckpt") and cb.kth_value == 1
    assert {os.path.basename(k): float(v) for k, v in cb.best_k_models.items()} == {
        "epoch=1-step=6.ckpt": 1.0, "epoch=3-step=12.ckpt": 0.5,
    }
    assert cb.current_score == 0.5
    # epoch 2 (2.0) displaced epoch 0 (3.0): its file was still there while epoch 2's was written
    saves = {os.path.basename(p): before for p, _, before in t.saves}
    assert "epoch=0-step=3.ckpt" in saves["epoch=2-step=9.ckpt"]
    assert "epoch=2-step=9.ckpt" in saves["epoch=3-step=12.ckpt"]
    # the top-k comparison is agreed across ranks
    assert t.strategy.reduce_calls and all(all_ is True for _, all_ in t.strategy.reduce_calls)


def test_top_k_max_mode(tmp_path):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", monitor="val_acc", save_top_k=2, mode="max")
    _Loop(cb, t).run(vals=[3, 1, 2, 0.5], key="val_acc")
    assert files_in(tmp_path / "ck") == ["epoch=0-step=3.ckpt", "epoch=2-step=9.ckpt"]
    assert cb.best_model_score == 3 and cb.kth_value == 2


def test_top_k_all_with_metric_in_name(tmp_path):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", monitor="val_loss", save_top_k=-1, filename="{epoch}-{val_loss:.2f}")
    _Loop(cb, t).run(vals=[3, 1, 2, 0.5])
    assert files_in(tmp_path / "ck") == [
        "epoch=0-val_loss=3.00.ckpt", "epoch=1-val_loss=1.00.ckpt",
        "epoch=2-val_loss=2.00.ckpt", "epoch=3-val_loss=0.50.ckpt",
    ]
    assert os.path.basename(cb.best_model_path) == "epoch=3-val_loss=0.50.ckpt"
    assert os.path.basename(cb.kth_best_model_path) == "epoch=0-val_loss=3.00.ckpt"


def test_slash_metric_name_makes_subfolder(tmp_path):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", monitor="val/loss", filename="{epoch}-{val/loss:.1f}")
    _Loop(cb, t).run(vals=[2, 1], key="val/loss")
    assert files_in(tmp_path / "ck" / "epoch=1-val") == ["loss=1.0.ckpt"]
    assert files_in(tmp_path / "ck" / "epoch=0-val") == []  # the worse one was removed


def test_nan_score_ranks_worst(tmp_path):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", monitor="val_loss", save_top_k=2)
    _Loop(cb, t).run(vals=[3, float("nan"), 2, 0.5])
    assert files_in(tmp_path / "ck") == ["epoch=2-step=9.ckpt", "epoch=3-step=12.ckpt"]
    assert cb.kth_value == 2


def test_save_last_with_monitor(tmp_path):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", monitor="val_loss", save_last=True, filename="{epoch}-{val_loss:.1f}")
    _Loop(cb, t).run(vals=[1, 2, 0.5, 4])
    assert files_in(tmp_path / "ck") == ["epoch=2-val_loss=0.5.ckpt", "last.ckpt"]
    # `last` was refreshed with the saves of epochs 0 and 2, not when epochs 1 and 3 did not make the top k
    assert load_step(tmp_path / "ck" / "last.ckpt") == 9
    assert [os.path.basename(s[0]) for s in t.saves] == [
        "epoch=0-val_loss=1.0.ckpt", "last.ckpt", "epoch=2-val_loss=0.5.ckpt", "last.ckpt",
    ]


def test_missing_monitor_raises_after_validation(tmp_path):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", monitor="val_acc")
    loop = _Loop(cb, t)
    with pytest.raises(MisconfigurationException) as err:
        loop.epoch({"val_loss": 1.0})
    message = str(err.value)
    assert "val_acc" in message and "'val_loss'" in message and "'epoch'" in message and "'step'" in message
    assert files_in(tmp_path / "ck") == []


def test_step_save_before_metric_exists_is_skipped(tmp_path):
    # step-based saves can come before validation has produced the metric: nothing is saved, no error
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", monitor="val_loss", every_n_train_steps=2, save_top_k=-1)
    loop = _Loop(cb, t)
    loop.epoch({"val_loss": 3.0})
    loop.epoch({"val_loss": 1.0})
    # step 2 skipped (no metric yet); step 4 and 6 use epoch 0's value
    assert files_in(tmp_path / "ck") == ["epoch=1-step=4.ckpt", "epoch=1-step=6.ckpt"]
    assert {os.path.basename(k): float(v) for k, v in cb.best_k_models.items()} == {
        "epoch=1-step=4.ckpt": 3.0, "epoch=1-step=6.ckpt": 3.0,
    }


def test_step_save_deferred_to_next_validation(tmp_path):
    # validation mid-epoch (this callback saves after validation): a step save that found no metric is
    # made after the next validation, with its fresh metric
    t = StubTrainer(tmp_path, val_check_interval=4)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", monitor="val_loss", every_n_train_steps=2, save_top_k=-1, save_last=True)
    cb.setup(t, None, "fit")
    for step in range(1, 9):
        t.global_step = step
        cb.on_train_batch_end(t, None, None, None, step - 1)
        if step % 4 == 0:
            t.callback_metrics = {"val_loss": torch.tensor(float(step))}
            cb.on_validation_end(t, None)
    names = [os.path.basename(p) for p, _, _ in t.saves]
    # step 2: deferred; step 4: deferred too, then saved after validation; 6 and 8 saved normally
    # (step 8's validation adds nothing: already saved at this step)
    assert names == [
        "epoch=0-step=4.ckpt", "last.ckpt", "epoch=0-step=6.ckpt", "last.ckpt", "epoch=0-step=8.ckpt", "last.ckpt",
    ]
    assert float(cb.best_k_models[str(tmp_path / "ck" / "epoch=0-step=4.ckpt")]) == 4.0


def test_missing_monitor_without_validation_only_warns(tmp_path):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", monitor="val_loss")
    with pytest.warns(UserWarning, match="could not find 'val_loss'"):
        _Loop(cb, t, validate=False).run(epochs=2)
    assert files_in(tmp_path / "ck") == []


def test_train_metric_monitor_without_validation(tmp_path):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", monitor="train_loss", save_top_k=1)
    loop = _Loop(cb, t, validate=False)
    for v in [2.0, 1.0, 1.5]:
        loop.epoch(train_epoch_metrics={"train_loss": v})
    assert files_in(tmp_path / "ck") == ["epoch=1-step=6.ckpt"]


def test_verbose_logs_decisions(tmp_path, caplog):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", monitor="val_loss", verbose=True)
    with caplog.at_level("INFO"):
        _Loop(cb, t).run(vals=[1.0, 2.0])
    text = caplog.text
    assert "'val_loss' reached 1.00000" in text and "not among the best 1" in text


# --------------------------------------------------------------------------------------------------
# triggers
# --------------------------------------------------------------------------------------------------
def test_every_n_train_steps(tmp_path):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=2, save_top_k=-1, save_last=True)
    _Loop(cb, t).run(epochs=2)
    assert files_in(tmp_path / "ck") == ["epoch=0-step=2.ckpt", "epoch=1-step=4.ckpt", "epoch=1-step=6.ckpt", "last.ckpt"]
    # `last` is written with each step checkpoint; the epoch-end hooks add nothing (step 3: no regular
    # checkpoint due; step 6: already saved by the batch hook)
    assert [(os.path.basename(s[0])) for s in t.saves] == [
        "epoch=0-step=2.ckpt", "last.ckpt", "epoch=1-step=4.ckpt", "last.ckpt", "epoch=1-step=6.ckpt", "last.ckpt",
    ]
    assert load_step(tmp_path / "ck" / "last.ckpt") == 6


def test_last_only_follows_regular_checkpoints(tmp_path):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=4, save_top_k=-1, save_last=True)
    _Loop(cb, t).run(epochs=2)
    # step 4 writes the regular checkpoint and `last`; the epoch ends (steps 3 and 6) write nothing
    assert files_in(tmp_path / "ck") == ["epoch=1-step=4.ckpt", "last.ckpt"]
    assert load_step(tmp_path / "ck" / "last.ckpt") == 4
    assert [os.path.basename(s[0]) for s in t.saves] == ["epoch=1-step=4.ckpt", "last.ckpt"]


def test_every_n_epochs(tmp_path):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", every_n_epochs=2, save_top_k=-1, save_last=True)
    _Loop(cb, t).run(epochs=5)
    assert files_in(tmp_path / "ck") == ["epoch=1-step=6.ckpt", "epoch=3-step=12.ckpt", "last.ckpt"]
    # epoch 4 was not due, so `last` still holds epoch 3's state (Lightning 2.6 behaviour)
    assert load_step(tmp_path / "ck" / "last.ckpt") == 12


def test_train_time_interval(tmp_path, monkeypatch):
    clock = {"now": 100.0}
    monkeypatch.setattr(mc_module.time, "monotonic", lambda: clock["now"])
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", train_time_interval=timedelta(seconds=10), save_top_k=-1)
    loop = _Loop(cb, t, batches_per_epoch=1)
    clock["now"] = 105.0
    loop.epoch()  # step 1 at t=105: too early
    clock["now"] = 111.0
    loop.epoch()  # step 2 at t=111: due
    clock["now"] = 115.0
    loop.epoch()  # step 3 at t=115: only 4 s since the last save
    clock["now"] = 121.5
    loop.epoch()  # step 4: due again
    assert files_in(tmp_path / "ck") == ["epoch=1-step=2.ckpt", "epoch=3-step=4.ckpt"]


def test_mid_epoch_validation_saves_on_validation_end(tmp_path):
    t = StubTrainer(tmp_path, val_check_interval=0.5)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", save_top_k=-1)
    cb.setup(t, None, "fit")
    for step in (1, 2, 3, 4):
        t.global_step = step
        cb.on_train_batch_end(t, None, None, None, step - 1)
        if step % 2 == 0:
            cb.on_validation_end(t, None)
    cb.on_train_epoch_end(t, None)
    assert files_in(tmp_path / "ck") == ["epoch=0-step=2.ckpt", "epoch=0-step=4.ckpt"]


def test_check_val_every_n_epoch_saves_after_validation_only(tmp_path):
    t = StubTrainer(tmp_path, check_val_every_n_epoch=2)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", save_top_k=-1)
    cb.setup(t, None, "fit")
    for epoch in range(4):
        t.current_epoch, t.global_step = epoch, 3 * (epoch + 1)
        if epoch % 2 == 1:
            cb.on_validation_end(t, None)
        cb.on_train_epoch_end(t, None)
    assert files_in(tmp_path / "ck") == ["epoch=1-step=6.ckpt", "epoch=3-step=12.ckpt"]


@pytest.mark.parametrize(
    ("explicit", "cve", "nvb", "vci", "expected"),
    [
        (True, 2, [5], 0.5, True),
        (False, 1, [0], 1.0, False),
        (None, 2, [5], 1.0, False),
        (None, 1, [0], 0.25, True),
        (None, 1, [], 0.25, True),
        (None, 1, [3, 2], 1.0, True),
        (None, 1, [3], 0.5, False),
        (None, 1, [3], 100, False),
    ],
)
def test_should_save_on_train_epoch_end(tmp_path, explicit, cve, nvb, vci, expected):
    t = StubTrainer(tmp_path, check_val_every_n_epoch=cve, num_val_batches=nvb, val_check_interval=vci)
    assert ModelCheckpoint(save_on_train_epoch_end=explicit)._should_save_on_train_epoch_end(t) is expected


@pytest.mark.parametrize(
    "overrides",
    [dict(fast_dev_run=1), dict(fast_dev_run=True), dict(sanity_checking=True), dict(state=SimpleNamespace(fn="validate"))],
)
def test_skips_saving(tmp_path, overrides):
    t = StubTrainer(tmp_path, **overrides)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=1, save_last=True)
    t.global_step = 5
    cb.setup(t, None, "fit")
    cb.on_train_batch_end(t, None, None, None, 0)
    cb.on_validation_end(t, None)
    cb.on_train_epoch_end(t, None)
    assert t.saves == [] and files_in(tmp_path / "ck") == []


def test_no_save_twice_at_same_global_step(tmp_path):
    t = StubTrainer(tmp_path, num_val_batches=[0])
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", save_top_k=-1)
    cb.setup(t, None, "fit")
    t.global_step = 3
    cb.on_train_epoch_end(t, None)
    cb.on_train_epoch_end(t, None)
    assert len(t.saves) == 1
    assert not cb._should_skip_saving_checkpoint(StubTrainer(tmp_path, global_step=4))


# --------------------------------------------------------------------------------------------------
# deletion safety
# --------------------------------------------------------------------------------------------------
def test_does_not_delete_outside_dirpath_or_resume_checkpoint(tmp_path):
    cb = ModelCheckpoint(dirpath=tmp_path / "ck")
    t = StubTrainer(tmp_path)
    cb.setup(t, None, "fit")
    inside = str(tmp_path / "ck" / "a.ckpt")
    assert cb._should_remove_checkpoint(t, inside, str(tmp_path / "ck" / "b.ckpt"))
    assert not cb._should_remove_checkpoint(t, inside, inside)
    assert not cb._should_remove_checkpoint(t, str(tmp_path / "elsewhere" / "a.ckpt"), inside)
    t.ckpt_path = inside
    assert not cb._should_remove_checkpoint(t, inside, str(tmp_path / "ck" / "b.ckpt"))
    assert cb._should_remove_checkpoint(t, "memory://x/a.ckpt", inside)


def test_restored_best_from_other_run_is_not_deleted(tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "old.ckpt").write_bytes(b"keep me")
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck")
    cb.best_model_path = str(other / "old.ckpt")
    _Loop(cb, t).run(epochs=1)
    assert (other / "old.ckpt").read_bytes() == b"keep me"
    assert files_in(tmp_path / "ck") == ["epoch=0-step=3.ckpt"]


# --------------------------------------------------------------------------------------------------
# state
# --------------------------------------------------------------------------------------------------
def test_state_dict_round_trip(tmp_path):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", monitor="val_loss", save_top_k=2, save_last=True)
    _Loop(cb, t).run(vals=[3, 1, 2])
    state = cb.state_dict()
    assert set(state) == {
        "monitor", "best_model_score", "best_model_path", "current_score", "dirpath", "best_k_models",
        "kth_best_model_path", "kth_value", "last_model_path",
    }
    assert state["monitor"] == "val_loss" and state["dirpath"] == cb.dirpath
    # survives a real torch.save/torch.load (weights_only) like the trainer's checkpoint would do
    path = tmp_path / "state.pt"
    torch.save(state, path)
    loaded = torch.load(path, weights_only=True)
    fresh = ModelCheckpoint(dirpath=tmp_path / "ck", monitor="val_loss", save_top_k=2, save_last=True)
    fresh.load_state_dict(loaded)
    assert fresh.best_model_path == cb.best_model_path and fresh.best_model_score == cb.best_model_score
    assert fresh.kth_best_model_path == cb.kth_best_model_path and fresh.kth_value == cb.kth_value
    assert fresh.last_model_path == cb.last_model_path
    assert {k: float(v) for k, v in fresh.best_k_models.items()} == {k: float(v) for k, v in cb.best_k_models.items()}
    # resuming continues the ranking: 0.5 displaces the 2.0 checkpoint
    t2 = StubTrainer(tmp_path, current_epoch=3, global_step=9)
    with pytest.warns(UserWarning, match="not empty"):
        loop = _Loop(fresh, t2)
    loop.epoch({"val_loss": 0.5})
    assert files_in(tmp_path / "ck") == ["epoch=1-step=6.ckpt", "epoch=3-step=12.ckpt", "last.ckpt"]


def test_load_state_dict_from_other_dirpath_keeps_only_best_path(tmp_path):
    src = ModelCheckpoint(dirpath=tmp_path / "a", monitor="val_loss")
    src.best_model_path = str(tmp_path / "a" / "best.ckpt")
    src.best_model_score = torch.tensor(0.3)
    src.best_k_models = {src.best_model_path: torch.tensor(0.3)}
    src.last_model_path = str(tmp_path / "a" / "last.ckpt")
    dst = ModelCheckpoint(dirpath=tmp_path / "b", monitor="val_loss")
    with pytest.warns(UserWarning, match="changed from"):
        dst.load_state_dict(src.state_dict())
    assert dst.best_model_path == src.best_model_path
    assert dst.best_model_score is None and dst.best_k_models == {} and dst.last_model_path == ""


def test_to_yaml(tmp_path):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", monitor="val_loss", save_top_k=2)
    _Loop(cb, t).run(vals=[3, 1, 2])
    cb.to_yaml()
    data = yaml.safe_load((tmp_path / "ck" / "best_k_models.yaml").read_text())
    assert data == {
        str(tmp_path / "ck" / "epoch=1-step=6.ckpt"): 1.0,
        str(tmp_path / "ck" / "epoch=2-step=9.ckpt"): 2.0,
    }
    cb.to_yaml(tmp_path / "elsewhere" / "scores.yaml")
    assert yaml.safe_load((tmp_path / "elsewhere" / "scores.yaml").read_text()) == data


def test_find_last_checkpoints(tmp_path):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=tmp_path / "ck", filename="last", save_top_k=-1, save_last=True)
    assert cb._find_last_checkpoints(t) == set()
    _Loop(cb, t).run(epochs=1)
    assert cb._find_last_checkpoints(t) == {
        str(tmp_path / "ck" / "last.ckpt"), str(tmp_path / "ck" / "last-v1.ckpt"),
    }


# --------------------------------------------------------------------------------------------------
# remote (fsspec) folders
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def memdir():
    root = f"memory://ember-tests/{uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


def _mem_names(url):
    fs = fsspec.filesystem("memory")
    return sorted(os.path.basename(p) for p in fs.ls(url, detail=False)) if fs.exists(url) else []


def test_memory_filesystem_top_k_and_last(tmp_path, memdir):
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=memdir, monitor="val_loss", save_top_k=2, save_last=True)
    _Loop(cb, t).run(vals=[3, 1, 2, 0.5])
    assert cb.dirpath == memdir
    assert _mem_names(memdir) == ["epoch=1-step=6.ckpt", "epoch=3-step=12.ckpt", "last.ckpt"]
    assert cb.best_model_path == f"{memdir}/epoch=3-step=12.ckpt"
    assert load_step(f"{memdir}/last.ckpt") == 12
    cb.to_yaml()
    with fsspec.open(f"{memdir}/best_k_models.yaml", "r") as f:
        assert yaml.safe_load(f) == {f"{memdir}/epoch=1-step=6.ckpt": 1.0, f"{memdir}/epoch=3-step=12.ckpt": 0.5}


def test_memory_filesystem_versions_and_pruning(tmp_path, memdir):
    fsspec.filesystem("memory").pipe(f"{memdir}/epoch=0-step=3.ckpt", b"taken")
    fsspec.filesystem("memory").pipe(f"{memdir}/last.ckpt", b"taken too")
    t = StubTrainer(tmp_path)
    cb = ModelCheckpoint(dirpath=memdir, save_last=True)
    with pytest.warns(UserWarning, match="not empty"):
        loop = _Loop(cb, t)
    loop.epoch()
    assert _mem_names(memdir) == ["epoch=0-step=3-v1.ckpt", "epoch=0-step=3.ckpt", "last-v1.ckpt", "last.ckpt"]
    loop.epoch()
    # remote paths are not checked against `dirpath`: the previous newest is pruned, the foreign files stay
    assert _mem_names(memdir) == ["epoch=0-step=3.ckpt", "epoch=1-step=6.ckpt", "last-v1.ckpt", "last.ckpt"]
    assert load_step(f"{memdir}/last-v1.ckpt") == 6
    assert fsspec.filesystem("memory").cat(f"{memdir}/last.ckpt") == b"taken too"


def test_memory_filesystem_rejects_link(tmp_path, memdir):
    with pytest.raises(ValueError, match="save_last='link'"):
        ModelCheckpoint(dirpath=memdir, save_last="link").setup(StubTrainer(tmp_path), None, "fit")
