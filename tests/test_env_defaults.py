"""PL_TRAINER_<ARG> environment variables give Trainer defaults, as in Lightning; explicit arguments win."""

import pytest

import ember as pl
from ember.utilities.argparse import _parse_env_value, _parse_env_variables
from tests.helpers import BoringModel


@pytest.mark.parametrize("text, value", [("3", 3), ("0.5", 0.5), ("True", True), ("False", False), ("None", None),
                                         ("[0, 1]", [0, 1]), ("cpu", "cpu"), ("bf16-mixed", "bf16-mixed"),
                                         ("00:01:00:00", "00:01:00:00"), ("{'hours': 1}", {"hours": 1})])
def test_values_are_read_as_python_literals_else_strings(text, value):
    assert _parse_env_value(text) == value


def test_environment_fills_arguments_not_passed(tmp_path, monkeypatch):
    for key, value in {"PL_TRAINER_MAX_EPOCHS": "3", "PL_TRAINER_ACCELERATOR": "cpu", "PL_TRAINER_LOGGER": "False",
                       "PL_TRAINER_LIMIT_TRAIN_BATCHES": "0.5", "PL_TRAINER_ENABLE_PROGRESS_BAR": "False",
                       "PL_TRAINER_ENABLE_CHECKPOINTING": "False", "PL_TRAINER_GRADIENT_CLIP_VAL": "None",
                       "PL_TRAINER_DEFAULT_ROOT_DIR": str(tmp_path), "PL_TRAINER_PRECISION": "",
                       "PL_TRAINER_NOT_AN_ARGUMENT": "1"}.items():
        monkeypatch.setenv(key, value)
    trainer = pl.Trainer(enable_model_summary=False)
    assert (trainer.max_epochs, trainer.limit_train_batches, trainer.loggers) == (3, 0.5, [])
    assert trainer.strategy.root_device.type == "cpu" and trainer.progress_bar_callback is None
    assert trainer.default_root_dir == str(tmp_path) and trainer.precision == "32-true"  # empty: ignored
    trainer.fit(BoringModel())
    assert trainer.current_epoch == 3 and trainer.global_step == 3 * 2  # half of 4 batches per epoch
    # an argument passed explicitly wins over the environment
    assert pl.Trainer(max_epochs=1, enable_model_summary=False).max_epochs == 1


def test_subclasses_read_their_own_prefix(monkeypatch):
    class MyTrainer(pl.Trainer):
        pass

    monkeypatch.setenv("PL_MYTRAINER_MAX_STEPS", "7")
    monkeypatch.setenv("PL_TRAINER_MAX_STEPS", "9")
    assert _parse_env_variables(MyTrainer) == {"max_steps": 7}
    assert MyTrainer(logger=False, enable_checkpointing=False).max_steps == 7
    assert pl.Trainer(logger=False, enable_checkpointing=False).max_steps == 9


def test_bad_values_get_the_usual_errors(monkeypatch):
    from ember.utilities.exceptions import MisconfigurationException

    monkeypatch.setenv("PL_TRAINER_MAX_EPOCHS", "many")
    with pytest.raises(MisconfigurationException, match="max_epochs='many'"):
        pl.Trainer()
