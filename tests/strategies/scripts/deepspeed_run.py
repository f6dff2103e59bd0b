"""A DeepSpeed run that tests/strategies/test_deepspeed.py starts as a real script (python, relaunched for rank 1).

For ZeRO stages 2 and 3, each rank writes ``<out>/proc-<global rank>.pt`` with the module's weights after each
phase; the test compares them with one process in plain torch and reads the checkpoint folders back.

    python deepspeed_run.py OUT
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root: import ember
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fsdp_run import fit

from ember.callbacks import ModelCheckpoint
from ember.strategies import DeepSpeedStrategy


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().float() for k, v in model.state_dict().items()}


def main() -> None:
    out = Path(sys.argv[1])
    report: dict[str, Any] = {}
    for stage in (2, 3):
        folder = out / f"stage{stage}"
        t, model = fit(out, 2, DeepSpeedStrategy(stage=stage),
                       callbacks=[ModelCheckpoint(dirpath=str(folder), save_last=True)])
        report[f"stage{stage}"] = weights(model)
        report["global_rank"], report["world_size"] = t.global_rank, t.world_size
        t, model = fit(out, 3, f"deepspeed_stage_{stage}", ckpt_path=str(folder / "last.ckpt"))
        report[f"stage{stage}_resumed"] = (weights(model), t.current_epoch, t.global_step)
    t, model = fit(out, 1, "deepspeed_stage_2", accumulate_grad_batches=2)
    report["accumulated"] = weights(model)
    for name in ("deepspeed_stage_1", "deepspeed_stage_2_offload", "deepspeed_stage_3_offload"):
        t, model = fit(out, 1, name)
        report[name] = weights(model)
    t, model = fit(out, 1, "deepspeed", precision="bf16-mixed")
    report["bf16"] = (weights(model), type(t.strategy).__name__, t.precision)
    torch.save(report, out / f"proc-{report['global_rank']}.pt")


if __name__ == "__main__":
    main()
