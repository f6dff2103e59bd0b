"""Resuming DDP from a mid-epoch, mid-accumulation checkpoint equals the uninterrupted run, bit for bit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).parent / "scripts" / "ddp_resume.py"


def _run(out: Path, mode: str) -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), str(out), mode], capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]


def test_ddp_mid_epoch_resume_is_exact_with_bf16_dropout_and_shuffling(tmp_path):
    _run(tmp_path, "full")
    checkpoint = torch.load(tmp_path / "cut.ckpt", weights_only=True)
    ember_state = checkpoint["loops"]["fit_loop"]["state_dict"]["ember"]
    assert len(ember_state["rng"]) == 2 and len(ember_state["grads"]) == 2  # each rank's own state
    _run(tmp_path, "resume")
    full, resumed = torch.load(tmp_path / "full.pt"), torch.load(tmp_path / "resume.pt")
    for name, value in full.items():
        assert torch.equal(resumed[name], value), name
    for rank in (0, 1):  # each rank's random stream continues where the uninterrupted run's did
        resumed_next = torch.load(tmp_path / f"resume-rng-{rank}.pt")
        assert torch.equal(resumed_next, torch.load(tmp_path / f"full-rng-{rank}.pt"))
