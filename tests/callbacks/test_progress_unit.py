"""TQDMProgressBar driven through the Callback hooks by a stub trainer (no real Trainer needed)."""

import copy
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from ember.callbacks.progress import ProgressBar, TQDMProgressBar

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _terminal(monkeypatch):
    """These tests read the drawn bars, which are drawn only on a terminal (pytest captures stdout)."""
    monkeypatch.setattr("ember.callbacks.progress.tqdm_progress._plain_output", lambda: False)
    # draw every refresh (the 0.1 s redraw throttle is tested on its own below)
    monkeypatch.setattr("ember.callbacks.progress.tqdm_progress.TQDMProgressBar._min_redraw_interval", 0.0)


class StubTrainer:
    def __init__(self, **kwargs):
        self.current_epoch = 0
        self.global_step = 0
        self.max_epochs = 2
        self.num_training_batches = 3
        self.num_val_batches = [2]
        self.num_sanity_val_batches = [2]
        self.num_test_batches = [4]
        self.num_predict_batches = [2]
        self.sanity_checking = False
        self.training = False
        self.validating = False
        self.testing = False
        self.predicting = False
        self.state = SimpleNamespace(fn="fit")
        self.progress_bar_metrics = {}
        self.loggers = []
        self.is_global_zero = True
        self.lightning_module = None
        self.val_check_batch = 3
        self.check_val_every_n_epoch = 1
        self.__dict__.update(kwargs)


def run_validation(bar, trainer, module, sanity=False, val_loss=None):
    trainer.sanity_checking = sanity
    trainer.validating = not sanity
    bar.on_validation_start(trainer, module)
    batches = trainer.num_sanity_val_batches if sanity else trainer.num_val_batches
    for dl_idx, n in enumerate(batches):
        for i in range(n):
            bar.on_validation_batch_start(trainer, module, None, i, dl_idx)
            bar.on_validation_batch_end(trainer, module, None, None, i, dl_idx)
    if val_loss is not None:
        trainer.progress_bar_metrics["val_loss"] = val_loss
    bar.on_validation_end(trainer, module)
    trainer.sanity_checking = False
    trainer.validating = False


def run_fit(bar, trainer, epochs=2, sanity=True, losses=None):
    module = object()
    bar.setup(trainer, module, "fit")
    bar.on_fit_start(trainer, module)
    if sanity:
        bar.on_sanity_check_start(trainer, module)
        run_validation(bar, trainer, module, sanity=True)
        bar.on_sanity_check_end(trainer, module)
    bar.on_train_start(trainer, module)
    n_train = trainer.num_training_batches
    for epoch in range(epochs):
        trainer.current_epoch = epoch
        trainer.training = True
        bar.on_train_epoch_start(trainer, module)
        for i in range(n_train if n_train != float("inf") else 3):
            bar.on_train_batch_start(trainer, module, None, i)
            if losses:
                trainer.progress_bar_metrics["train_loss"] = losses[epoch * n_train + i]
            trainer.global_step += 1
            bar.on_train_batch_end(trainer, module, None, None, i)
        trainer.training = False
        if trainer.num_val_batches:
            run_validation(bar, trainer, module, val_loss=0.5 / (epoch + 1))
        bar.on_train_epoch_end(trainer, module)
    bar.on_train_end(trainer, module)
    bar.on_fit_end(trainer, module)
    bar.teardown(trainer, module, "fit")


def shown(out):
    """Every state the bars drew (tqdm separates redraws with carriage returns)."""
    return re.split(r"[\r\n]", out)


def test_fit_shows_epochs_batches_and_metrics(capsys):
    trainer = StubTrainer(loggers=[SimpleNamespace(version=0)])
    bar = TQDMProgressBar()
    run_fit(bar, trainer, losses=[1.5, 1.25, 1.0, 0.75, 0.5, 0.25])
    out = capsys.readouterr().out
    states = shown(out)

    assert any(s.startswith("Sanity Checking DataLoader 0") and "2/2" in s for s in states)
    assert any(s.startswith("Epoch 0") and "3/3" in s for s in states)
    assert any(s.startswith("Epoch 1") and "3/3" in s for s in states)
    assert any(s.startswith("Validation DataLoader 0") and "2/2" in s for s in states)
    # postfix: logger version first, then prog-bar metrics padded to 5 characters
    assert any("Epoch 0" in s and "1/3" in s and "v_num=0, train_loss=1.500" in s for s in states)
    assert any("Epoch 1" in s and "3/3" in s and "train_loss=0.250, val_loss=0.500" in s for s in states)
    assert any("Epoch 1" in s and "val_loss=0.250" in s for s in states)  # updated after validation
    # the main bar counts training batches only
    assert not any(s.startswith("Epoch") and "/5" in s for s in states)
    assert bar.train_batch_idx == 3 and bar.val_batch_idx == 2


def test_refresh_rate_skips_intermediate_batches(capsys):
    trainer = StubTrainer(num_training_batches=5, num_val_batches=[])
    bar = TQDMProgressBar(refresh_rate=2)
    run_fit(bar, trainer, epochs=1, sanity=False)
    states = [s for s in shown(capsys.readouterr().out) if s.startswith("Epoch 0")]
    counts = {m.group(1) for s in states for m in [re.search(r"(\d+)/5", s)] if m}
    assert counts == {"0", "2", "4", "5"}  # 5 is drawn because it is the last batch


def test_unknown_length_shows_question_mark(capsys):
    trainer = StubTrainer(num_training_batches=float("inf"), num_val_batches=[])
    bar = TQDMProgressBar()
    run_fit(bar, trainer, epochs=1, sanity=False)
    states = shown(capsys.readouterr().out)
    assert any(s.startswith("Epoch 0") and "3/?" in s for s in states)


def test_multiple_val_dataloaders_get_their_own_totals(capsys):
    trainer = StubTrainer(num_val_batches=[2, 4], num_sanity_val_batches=[1, 1])
    bar = TQDMProgressBar()
    run_fit(bar, trainer, epochs=1)
    states = shown(capsys.readouterr().out)
    assert any(s.startswith("Validation DataLoader 0") and "2/2" in s for s in states)
    assert any(s.startswith("Validation DataLoader 1") and "4/4" in s for s in states)
    assert any(s.startswith("Sanity Checking DataLoader 1") and "1/1" in s for s in states)


def test_leave_keeps_one_line_per_epoch(capsys):
    trainer = StubTrainer(num_val_batches=[])
    run_fit(TQDMProgressBar(leave=True), trainer, epochs=3, sanity=False)
    lines = capsys.readouterr().out.split("\n")
    finished = [ln.rsplit("\r", 1)[-1] for ln in lines if "3/3" in ln]
    assert [ln.split(":")[0] for ln in finished] == ["Epoch 0", "Epoch 1", "Epoch 2"]


def test_test_and_predict_bars(capsys):
    trainer = StubTrainer(state=SimpleNamespace(fn="test"))
    bar = TQDMProgressBar()
    module = object()
    bar.setup(trainer, module, "test")
    bar.on_test_start(trainer, module)
    for i in range(4):
        bar.on_test_batch_start(trainer, module, None, i, 0)
        bar.on_test_batch_end(trainer, module, None, None, i, 0)
    bar.on_test_end(trainer, module)

    trainer.state.fn = "predict"
    bar.on_predict_start(trainer, module)
    for i in range(2):
        bar.on_predict_batch_start(trainer, module, None, i, 0)
        bar.on_predict_batch_end(trainer, module, None, None, i, 0)
    bar.on_predict_end(trainer, module)

    states = shown(capsys.readouterr().out)
    assert any(s.startswith("Testing DataLoader 0") and "4/4" in s for s in states)
    assert any(s.startswith("Predicting DataLoader 0") and "2/2" in s for s in states)
    assert bar.test_batch_idx == 4 and bar.predict_batch_idx == 2


def test_standalone_validate_bar(capsys):
    trainer = StubTrainer(state=SimpleNamespace(fn="validate"), num_val_batches=[3])
    bar = TQDMProgressBar()
    bar.setup(trainer, None, "validate")
    run_validation(bar, trainer, None)
    states = shown(capsys.readouterr().out)
    assert any(s.startswith("Validation DataLoader 0") and "3/3" in s for s in states)


def test_disabled_bar_prints_nothing(capsys):
    for bar in (TQDMProgressBar(), TQDMProgressBar(refresh_rate=0)):
        if bar.refresh_rate:
            bar.disable()
        assert bar.is_disabled and not bar.is_enabled
        run_fit(bar, StubTrainer(progress_bar_metrics={"loss": 1.0}), epochs=1)
    assert capsys.readouterr().out == ""
    bar = TQDMProgressBar()
    bar.disable()
    bar.enable()
    assert bar.is_enabled


def test_get_metrics_version_and_duplicates():
    bar = TQDMProgressBar()
    trainer = StubTrainer(progress_bar_metrics={"loss": 0.1})
    assert bar.get_metrics(trainer, None) == {"loss": 0.1}
    trainer.loggers = [SimpleNamespace(version=3)]
    assert bar.get_metrics(trainer, None) == {"v_num": 3, "loss": 0.1}
    trainer.loggers = [SimpleNamespace(version="2024_06_01_run")]
    assert bar.get_metrics(trainer, None)["v_num"] == "_run"
    trainer.loggers = [SimpleNamespace(version=1), SimpleNamespace(version=2)]
    assert bar.get_metrics(trainer, None)["v_num"] == "1_2"
    trainer.progress_bar_metrics = {"v_num": 9}
    with pytest.warns(UserWarning, match="v_num"):
        assert bar.get_metrics(trainer, None) == {"v_num": 9}


def test_base_progress_bar_totals_and_counters():
    trainer = StubTrainer(num_val_batches=[2, 3], check_val_every_n_epoch=2)
    bar = ProgressBar()
    bar.setup(trainer, None, "fit")
    assert bar.total_train_batches == 3
    trainer.current_epoch = 0
    assert bar.total_val_batches == 0  # epoch 0 does not validate with every=2
    trainer.current_epoch = 1
    assert bar.total_val_batches == 5
    bar.on_train_epoch_start(trainer, None)
    bar.on_train_batch_end(trainer, None, None, None, 1)
    assert bar.train_batch_idx == 2
    assert bar.has_dataloader_changed(0) and not bar.has_dataloader_changed(0)
    assert bar.total_val_batches_current_dataloader == 2
    assert bar.has_dataloader_changed(1)
    assert bar.total_val_batches_current_dataloader == 3
    trainer.sanity_checking = True
    assert bar.total_val_batches_current_dataloader == 0  # num_sanity_val_batches has one entry


def test_trainer_reference_required_before_setup():
    with pytest.raises(TypeError):
        ProgressBar().trainer  # noqa: B018


def test_bar_can_be_copied_mid_run(capsys):
    trainer = StubTrainer()
    bar = TQDMProgressBar()
    bar.setup(trainer, None, "fit")
    bar.on_train_start(trainer, None)
    clone = copy.deepcopy(bar)
    assert clone._train_progress_bar is None
    bar.on_train_end(trainer, None)


def test_no_tqdm_bar_class_until_a_bar_is_shown():
    # tqdm is imported (and ember's tqdm subclass built) only when the first bar is drawn.
    # (torch may import tqdm on its own, so check ember's side of it.)
    code = (
        "import sys, torch; had_tqdm = 'tqdm' in sys.modules; "
        "from ember.callbacks.progress import TQDMProgressBar; "
        "from ember.callbacks.progress import tqdm_progress; "
        "TQDMProgressBar(); "
        "assert tqdm_progress._tqdm_class is None; "
        "assert had_tqdm or 'tqdm' not in sys.modules, 'tqdm imported eagerly'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_training_bar_redraws_at_most_every_interval(monkeypatch, capsys):
    """Within 0.1 s only the last batch of the epoch is drawn: metrics are read (a host sync) that rarely."""
    monkeypatch.setattr("ember.callbacks.progress.tqdm_progress.TQDMProgressBar._min_redraw_interval", 3600.0)
    bar = TQDMProgressBar()
    reads = []
    monkeypatch.setattr(bar, "get_metrics", lambda trainer, module: reads.append(1) or {})
    trainer = StubTrainer(num_training_batches=50)
    bar.setup(trainer, None, "fit")
    bar.on_train_start(trainer, None)
    bar.on_train_epoch_start(trainer, None)
    for i in range(50):
        bar.on_train_batch_end(trainer, None, None, None, i)
    assert len(reads) == 1  # only the epoch's last batch
