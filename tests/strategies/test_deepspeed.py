"""DeepSpeed ZeRO stages 2 and 3 on CPU with gloo: a real two-process run (the script relaunches itself for
rank 1) compared with plain torch in one process over the same global batches, resumed from DeepSpeed's own
checkpoint folders, and those folders converted to one float32 state_dict."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("deepspeed")

import ember as pl
from ember.strategies import DeepSpeedStrategy
from ember.strategies.deepspeed import convert_zero_checkpoint_to_fp32_state_dict
from ember.utilities.exceptions import MisconfigurationException

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from ddp_run import GLOBAL_BATCH
from fsdp_run import MLP
from test_ddp import assert_weights
from test_fsdp import reference, run_ranks

SCRIPT = Path(__file__).parent / "scripts" / "deepspeed_run.py"


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: Any) -> list[dict[str, Any]]:
    return run_ranks(SCRIPT, tmp_path_factory.mktemp("deepspeed"), timeout=300)


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_matches_one_process(ranks: list[dict[str, Any]], stage: int) -> None:
    for rank, r in enumerate(ranks):
        assert (r["global_rank"], r["world_size"]) == (rank, 2)
        assert_weights(r[f"stage{stage}"], reference(epochs=2))


@pytest.mark.parametrize("name", ["deepspeed_stage_1", "deepspeed_stage_2_offload", "deepspeed_stage_3_offload"])
def test_other_stages_and_cpu_offload(ranks: list[dict[str, Any]], name: str) -> None:
    for r in ranks:
        assert_weights(r[name], reference(epochs=1))


def test_accumulation_steps_at_ember_boundary(ranks: list[dict[str, Any]]) -> None:
    for r in ranks:  # accumulate_grad_batches=2: one engine step per two micro-batches
        assert_weights(r["accumulated"], reference(epochs=1, batch=2 * GLOBAL_BATCH))


@pytest.mark.parametrize("stage", [2, 3])
def test_checkpoint_folder_resumes_and_converts(ranks: list[dict[str, Any]], stage: int) -> None:
    folder = ranks[0]["out"] / f"stage{stage}" / "last.ckpt"
    assert folder.is_dir() and {"meta.pt", "checkpoint", "latest"} <= {p.name for p in folder.iterdir()}
    shards = {p.name for p in (folder / "checkpoint").iterdir()}
    assert {"zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"} <= shards
    for r in ranks:  # 2 epochs, saved, resumed for a third: the same as 3 epochs in one process
        weights, epoch, step = r[f"stage{stage}_resumed"]
        assert (epoch, step) == (3, 12)
        assert_weights(weights, reference(epochs=3))
    converted = convert_zero_checkpoint_to_fp32_state_dict(folder, folder.parent / "plain.ckpt")
    assert (converted["epoch"], converted["global_step"]) == (1, 8)
    assert "optimizer_states" not in converted
    assert_weights(converted["state_dict"], reference(epochs=2))
    assert_weights(MLP.load_from_checkpoint(folder.parent / "plain.ckpt").state_dict(), reference(epochs=2))


def test_bf16_mixed(ranks: list[dict[str, Any]]) -> None:
    for r in ranks:
        weights, strategy, precision = r["bf16"]
        assert (strategy, precision) == ("DeepSpeedStrategy", "bf16-mixed")
        for key, value in reference(epochs=1).items():  # bfloat16 weights and compute: close, not equal
            torch.testing.assert_close(weights[key], value, atol=0.1, rtol=0.05)
    assert_weights(ranks[0]["bf16"][0], ranks[1]["bf16"][0])


def test_strategy_names_and_arguments(tmp_path: Path) -> None:
    def make(**kwargs: Any) -> pl.Trainer:
        return pl.Trainer(accelerator="cpu", logger=False, default_root_dir=str(tmp_path), **kwargs)

    expected = {"deepspeed": (2, None, None), "deepspeed_stage_1": (1, None, None),
                "deepspeed_stage_2": (2, None, None), "deepspeed_stage_2_offload": (2, "cpu", None),
                "deepspeed_stage_3": (3, None, None), "deepspeed_stage_3_offload": (3, "cpu", "cpu")}
    for name, (stage, optimizer_device, param_device) in expected.items():
        strategy = make(strategy=name, devices=2).strategy
        assert isinstance(strategy, DeepSpeedStrategy) and strategy.stage == stage
        zero = strategy.config["zero_optimization"]
        assert zero.get("offload_optimizer", {}).get("device") == optimizer_device
        assert zero.get("offload_param", {}).get("device") == param_device
    bf16 = make(strategy="deepspeed", precision="bf16-mixed").strategy.precision
    assert (bf16.dtype, bf16.config) == (torch.bfloat16, {"bf16": {"enabled": True}})
    with pytest.raises(NotImplementedError, match=r"precision='64-true'.*DeepSpeed.*'bf16-mixed'"):
        make(strategy="deepspeed", precision="64-true")
    config = tmp_path / "ds.json"
    config.write_text('{"zero_optimization": {"stage": 3, "overlap_comm": false}}')
    assert DeepSpeedStrategy(config=str(config)).stage == 3
    with pytest.raises(ValueError, match=r"stage=0.*1, 2 or 3"):
        DeepSpeedStrategy(stage=0)
    strategy = DeepSpeedStrategy()
    strategy.lightning_module = MLP()
    with pytest.raises(MisconfigurationException, match="exactly one optimizer"):
        strategy.setup_optimizers([])
    strategy.lightning_module.automatic_optimization = False
    with pytest.raises(NotImplementedError, match="manual optimization"):
        strategy.setup_optimizers([torch.optim.SGD(strategy.lightning_module.parameters(), lr=0.1)])
