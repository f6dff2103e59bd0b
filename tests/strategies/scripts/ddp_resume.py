"""Exact resume under DDP: 2 processes, shuffled DistributedSampler, dropout, accumulation, bf16-mixed.

    python ddp_resume.py OUT full      # uninterrupted 2 epochs; also saves OUT/cut.ckpt mid-epoch, mid-window
    python ddp_resume.py OUT resume    # resumes from OUT/cut.ckpt to the end

Rank 0 writes OUT/<mode>.pt with the final weights; every rank writes OUT/<mode>-rng-<rank>.pt with its next
random number after fit (each rank's own random stream must continue exactly).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import ember as pl  # noqa: E402

CUT_BATCH = 3  # a mid-epoch checkpoint after the 4th batch of epoch 0, inside a 3-batch accumulation window


class Net(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 3))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("loss", loss, on_epoch=True, sync_dist=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


class CutAt(pl.Callback):
    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == 0 and batch_idx == CUT_BATCH:
            trainer.save_checkpoint(self.path)


def main(out: Path, mode: str) -> None:
    pl.seed_everything(11, verbose=False)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(96, 6, generator=g), torch.randint(0, 3, (96,), generator=g))
    trainer = pl.Trainer(strategy="ddp", devices=2, accelerator="cpu", precision="bf16-mixed", max_epochs=2,
                         accumulate_grad_batches=3, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=out,
                         callbacks=[CutAt(out / "cut.ckpt")] if mode == "full" else [])
    model = Net()
    trainer.fit(model, DataLoader(data, batch_size=4, shuffle=True),
                ckpt_path=out / "cut.ckpt" if mode == "resume" else None)
    torch.save(torch.rand(1), out / f"{mode}-rng-{trainer.global_rank}.pt")
    if trainer.is_global_zero:
        torch.save({k: v.clone() for k, v in model.state_dict().items()}, out / f"{mode}.pt")
    trainer.strategy.barrier()  # leave together: a rank tearing gloo down while another still talks aborts


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
