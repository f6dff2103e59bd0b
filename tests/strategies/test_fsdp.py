"""FSDP2 on CPU with gloo: a real two-process run (the script relaunches itself for rank 1) compared with
plain torch in one process over the same global batches, and resumed from full and sharded checkpoints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import ember as pl
from ember.strategies import FSDPStrategy
from ember.utilities.exceptions import MisconfigurationException

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from ddp_run import GLOBAL_BATCH, LR, N_TRAIN, data
from fsdp_run import MLP
from test_ddp import assert_weights, env

SCRIPT = Path(__file__).parent / "scripts" / "fsdp_run.py"


def reference(epochs: int, batch: int = GLOBAL_BATCH) -> dict[str, torch.Tensor]:
    """Plain torch: SGD with momentum over the same global batches."""
    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    x, y = data(N_TRAIN, 1).tensors
    for _ in range(epochs):
        for i in range(0, N_TRAIN, batch):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(model(x[i:i + batch]), y[i:i + batch]).backward()
            optimizer.step()
    return model.state_dict()


def run_ranks(script: Path, out: Path, timeout: float) -> list[dict[str, Any]]:
    """Run a two-rank test script writing ``out/proc-<rank>.pt``; each rank's dict, with ``"out"`` added."""
    with open(out / "output.txt", "w") as log:
        proc = subprocess.run([sys.executable, str(script), str(out)], check=False, env=env(), cwd=out, stdout=log,
                              stderr=subprocess.STDOUT, timeout=timeout)
    assert proc.returncode == 0, (out / "output.txt").read_text()[-6000:]
    found = [torch.load(out / f"proc-{rank}.pt", weights_only=False) for rank in (0, 1)]
    for r in found:
        r["out"] = out
    return found


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: Any) -> list[dict[str, Any]]:
    return run_ranks(SCRIPT, tmp_path_factory.mktemp("fsdp"), timeout=180)


def test_fsdp_matches_one_process(ranks: list[dict[str, Any]]) -> None:
    expected = reference(epochs=2)
    for rank, r in enumerate(ranks):
        assert (r["global_rank"], r["world_size"]) == (rank, 2)
        assert r["param_types"] == ["DTensor"]  # configure_optimizers saw the sharded parameters
        assert_weights(r["full"], expected)
        assert_weights(r["sharded"], expected)
        # accumulate_grad_batches=2: gradients are not reduced on the first micro-batch, same result
        assert_weights(r["accumulated"], reference(epochs=1, batch=2 * GLOBAL_BATCH))


def test_full_checkpoint_written_by_rank_zero_and_resumable(ranks: list[dict[str, Any]]) -> None:
    out = ranks[0]["out"]
    per_epoch = ["epoch=0-step=4.ckpt", "last.ckpt", "epoch=1-step=8.ckpt", "last.ckpt"]
    assert ranks[0]["saves"] == per_epoch + ["meta.pt"] * 4  # full: the file; sharded: each folder's meta.pt
    assert ranks[1]["saves"] == []
    checkpoint = torch.load(out / "full" / "last.ckpt", weights_only=True)
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (1, 8)
    assert_weights(checkpoint["state_dict"], reference(epochs=2))
    assert set(checkpoint["optimizer_states"][0]["state"]) == set(checkpoint["state_dict"])  # gathered, by name
    assert_weights(MLP.load_from_checkpoint(out / "full" / "last.ckpt").state_dict(), reference(epochs=2))
    for r in ranks:  # 2 epochs, saved, resumed for a third: the same as 3 epochs in one process
        weights, epoch, step = r["full_resumed"]
        assert (epoch, step) == (3, 12)
        assert_weights(weights, reference(epochs=3))


def test_sharded_checkpoint_folder_resumable(ranks: list[dict[str, Any]]) -> None:
    folder = ranks[0]["out"] / "sharded" / "last.ckpt"
    assert folder.is_dir()
    assert {".metadata", "meta.pt", "__0_0.distcp", "__1_0.distcp"} <= {p.name for p in folder.iterdir()}
    for r in ranks:
        weights, epoch, step = r["sharded_resumed"]
        assert (epoch, step) == (3, 12)
        assert_weights(weights, reference(epochs=3))
    # one process (no process group) reads the whole model back from the shards, and the loop state
    strategy, model = FSDPStrategy(), MLP()
    checkpoint = strategy.load_checkpoint(folder)
    assert (checkpoint["epoch"], checkpoint["global_step"], checkpoint["state_dict"]) == (1, 8, {})
    strategy.load_model_state(model, checkpoint, strict=True, source=str(folder))
    assert_weights(model.state_dict(), ranks[0]["sharded"])


def test_bf16_mixed_with_cpu_offload(ranks: list[dict[str, Any]]) -> None:
    for r in ranks:
        weights, strategy, precision = r["bf16_offload"]
        assert (strategy, precision) == ("FSDPStrategy", "bf16-mixed")
        for key, value in reference(epochs=1).items():  # bfloat16 compute: close, not equal
            assert value.dtype == weights[key].dtype == torch.float32
            torch.testing.assert_close(weights[key], value, atol=0.1, rtol=0.05)
    assert_weights(ranks[0]["bf16_offload"][0], ranks[1]["bf16_offload"][0])


def test_strategy_names_and_arguments(tmp_path: Path) -> None:
    def make(**kwargs: Any) -> pl.Trainer:
        return pl.Trainer(accelerator="cpu", logger=False, default_root_dir=str(tmp_path), **kwargs)

    assert isinstance(make(strategy="fsdp", devices=2).strategy, FSDPStrategy)
    offload = make(strategy="fsdp_cpu_offload", devices=2).strategy
    assert "offload_policy" in offload._fully_shard_kwargs
    assert type(make(strategy="fsdp", precision="bf16-mixed").strategy.precision).__name__ == "_FSDPMixedPrecision"
    with pytest.raises(ValueError, match=r"state_dict_type='local'.*'full' or 'sharded'"):
        FSDPStrategy(state_dict_type="local")
    with pytest.raises(NotImplementedError, match=r"sharding_strategy='HYBRID_SHARD'"):
        FSDPStrategy(sharding_strategy="HYBRID_SHARD")
    with pytest.raises(MisconfigurationException, match=r"auto_wrap_policy=.*torch.nn.Module classes"):
        FSDPStrategy(auto_wrap_policy={int})
