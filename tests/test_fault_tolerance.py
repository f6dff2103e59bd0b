"""Checkpoints survive ``kill -9`` at any moment, and SIGTERM checkpoints and exits; resuming is exact."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ember.checkpoint import _load_checkpoint

SCRIPT = Path(__file__).parent / "scripts" / "checkpointed_run.py"
sys.path.insert(0, str(SCRIPT.parent))
import checkpointed_run  # noqa: E402


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    model = checkpointed_run.main(str(tmp_path_factory.mktemp("reference")))
    return {k: v.clone() for k, v in model.state_dict().items()}


def _start(root: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, str(SCRIPT), str(root)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _wait_for_first_checkpoint(proc: subprocess.Popen, root: Path) -> None:
    deadline = time.monotonic() + 60
    while not (root / "checkpoints" / "last.ckpt").exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint within 60 s"
        time.sleep(0.01)


def _assert_resume_matches(root: Path, reference: dict) -> None:
    model = checkpointed_run.main(str(root), ckpt_path="last")
    for name, value in reference.items():
        assert torch.equal(model.state_dict()[name], value), name


@pytest.mark.parametrize("trial", range(4))
def test_kill_9_never_leaves_a_torn_checkpoint(tmp_path, reference, trial):
    proc = _start(tmp_path)
    _wait_for_first_checkpoint(proc, tmp_path)
    time.sleep(random.Random(trial).uniform(0.0, 0.4))  # a random moment; any moment must be safe
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    for path in (tmp_path / "checkpoints").glob("*.ckpt"):
        _load_checkpoint(path)  # every file that looks like a checkpoint is a complete one
    _assert_resume_matches(tmp_path, reference)


def test_sigterm_checkpoints_and_exits_then_resume_is_exact(tmp_path, reference):
    proc = _start(tmp_path)
    _wait_for_first_checkpoint(proc, tmp_path)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM, proc.stderr.read().decode()
    checkpoint = _load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] >= 1
    _assert_resume_matches(tmp_path, reference)
