"""A deterministic fit that checkpoints after every step; killed and resumed by tests/test_fault_tolerance.py.

Run as a script: ``python checkpointed_run.py ROOT`` trains from scratch (or from ROOT's last.ckpt if
``--resume``); ``main()`` does the same in-process and returns the trained model.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember as pl
from ember.callbacks import ModelCheckpoint


class Net(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(32, 512), nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, 512), nn.ReLU(),
                                 nn.Linear(512, 4))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("loss", loss, on_epoch=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def main(root: str, ckpt_path: str | None = None, max_epochs: int = 3) -> Net:
    pl.seed_everything(3, verbose=False)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(160, 32, generator=g), torch.randint(0, 4, (160,), generator=g))
    model = Net()
    checkpoint = ModelCheckpoint(dirpath=f"{root}/checkpoints", every_n_train_steps=1, save_last=True)
    trainer = pl.Trainer(max_epochs=max_epochs, accumulate_grad_batches=2, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[checkpoint], default_root_dir=root)
    trainer.fit(model, DataLoader(data, batch_size=8, shuffle=True), ckpt_path=ckpt_path)
    return model


if __name__ == "__main__":
    main(sys.argv[1], ckpt_path="last" if "--resume" in sys.argv else None)
