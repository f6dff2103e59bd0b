"""Parity scenarios: small, deterministic training runs written against the public Lightning API.

Every ``scenario_<name>(pl, tmp_path)`` takes a Lightning-compatible package (``pytorch_lightning``,
``lightning.pytorch`` or ``ember``) and returns a JSON-serialisable dict. Only the top-level names
``pl.Trainer``, ``pl.LightningModule``, ``pl.Callback``, ``pl.LightningDataModule`` and
``pl.seed_everything`` are used, plus public Trainer/LightningModule attributes.

``tests/parity/record_lightning.py`` stores the results produced by real Lightning in
``tests/parity/lightning_2_6.json``; ``tests/test_parity.py`` re-runs them and compares.
"""

from __future__ import annotations

import functools
import os
import random
import warnings
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, SequentialSampler, TensorDataset

# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------

_ENV_VARS = ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")


def to_json(value: Any) -> Any:
    """Convert tensors / numbers / containers into plain JSON types."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.is_floating_point():
            value = value.float()
        return value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"cannot convert {type(value)!r} to JSON")


def metrics(d: Any) -> dict:
    """``{name: float}`` for a metrics mapping (tensor or python number values), keys sorted."""
    return {str(k): float(v) for k, v in sorted(dict(d).items())}


def weights(module: nn.Module) -> dict:
    return {n: p.detach().float().flatten().tolist() for n, p in module.named_parameters()}


def state(trainer: Any) -> dict:
    """The trainer attributes every scenario reports."""
    return {
        "global_step": int(trainer.global_step),
        "current_epoch": int(trainer.current_epoch),
        "callback_metrics": metrics(trainer.callback_metrics),
        "logged_metrics": metrics(trainer.logged_metrics),
        "progress_bar_metrics": metrics(trainer.progress_bar_metrics),
    }


def make_trainer(pl: Any, tmp_path: Any, **kwargs: Any) -> Any:
    base = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
    )
    base.update(kwargs)
    return pl.Trainer(**base)


def cls_data(n: int, seed: int, with_index: bool = False) -> TensorDataset:
    """Binary classification, 8 features."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = ((x[:, 0] + 0.5 * x[:, 1] - 0.25 * x[:, 2]) > 0).long()
    if with_index:
        return TensorDataset(x, y, torch.arange(n))
    return TensorDataset(x, y)


def reg_data(n: int, seed: int, scale: float = 1.0) -> TensorDataset:
    """Regression, 8 features -> 1 target."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    w = torch.randn(8, 1, generator=g)
    y = (x @ w + 0.1 * torch.randn(n, 1, generator=g)) * scale
    return TensorDataset(x, y)


def loader(ds: Dataset, batch_size: int = 4, shuffle: bool = False, sampler: Any = None) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, sampler=sampler, num_workers=0)


class CountingSampler(SequentialSampler):
    """A sequential sampler counting how many times an iterator over it was created."""

    def __init__(self, data_source: Any) -> None:
        super().__init__(data_source)
        self.iterations = 0

    def __iter__(self):  # type: ignore[override]
        self.iterations += 1
        return super().__iter__()


def classifier(dropout: float = 0.0) -> nn.Module:
    layers: list = [nn.Linear(8, 16), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(16, 2))
    return nn.Sequential(*layers)


def regressor() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))


def current_lr(trainer: Any, idx: int = 0) -> float:
    return float(trainer.optimizers[idx].param_groups[0]["lr"])


def scenario(fn: Callable) -> Callable:
    """Isolate a scenario: fixed torch seed, no leaked seed env vars, warnings silenced."""

    @functools.wraps(fn)
    def wrapper(pl: Any, tmp_path: Any) -> dict:
        saved_env = {k: os.environ.pop(k) for k in _ENV_VARS if k in os.environ}
        rng = torch.get_rng_state()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.manual_seed(0)
                return to_json(fn(pl, tmp_path))
        finally:
            torch.set_rng_state(rng)
            for k in _ENV_VARS:
                os.environ.pop(k, None)
            os.environ.update(saved_env)

    wrapper.__scenario__ = True  # type: ignore[attr-defined]
    return wrapper


def base_classifier(pl: Any) -> type:
    """A plain classification LightningModule (SGD, cross entropy, logs train_loss/val_loss/val_acc)."""

    class Classifier(pl.LightningModule):
        def __init__(self, lr: float = 0.1, dropout: float = 0.0, momentum: float = 0.0) -> None:
            super().__init__()
            self.lr = lr
            self.momentum = momentum
            self.net = classifier(dropout)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch[0], batch[1]
            loss = F.cross_entropy(self(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch[0], batch[1]
            logits = self(x)
            self.log("val_loss", F.cross_entropy(logits, y))
            self.log("val_acc", (logits.argmax(-1) == y).float().mean())

        def test_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch[0], batch[1]
            logits = self(x)
            self.log("test_loss", F.cross_entropy(logits, y))
            self.log("test_acc", (logits.argmax(-1) == y).float().mean())

        def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return self(batch[0]).softmax(-1)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=self.momentum)

    return Classifier


# --------------------------------------------------------------------------------------------------
# numeric / loop scenarios
# --------------------------------------------------------------------------------------------------


@scenario
def scenario_fit_basic(pl: Any, tmp_path: Any) -> dict:
    """2 epochs with validation (default sanity check); counts dataloader iterator creation."""
    train_ds, val_ds = cls_data(40, 1), cls_data(20, 2)
    train_sampler, val_sampler = CountingSampler(train_ds), CountingSampler(val_ds)
    calls = {"training_step": 0, "validation_step": 0}

    class M(base_classifier(pl)):
        def training_step(self, batch, batch_idx):
            calls["training_step"] += 1
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch, batch_idx):
            calls["validation_step"] += 1
            return super().validation_step(batch, batch_idx)

    model = M(lr=0.1, momentum=0.9)
    trainer = make_trainer(pl, tmp_path, max_epochs=2)
    trainer.fit(model, loader(train_ds, sampler=train_sampler), loader(val_ds, 4, sampler=val_sampler))
    return {
        **state(trainer),
        "weights": weights(model),
        "calls": calls,
        "train_iterators": train_sampler.iterations,
        "val_iterators": val_sampler.iterations,
        "num_training_batches": trainer.num_training_batches,
        "num_val_batches": list(trainer.num_val_batches),
        "model_training_after_fit": model.training,
    }


@scenario
def scenario_max_steps(pl: Any, tmp_path: Any) -> dict:
    """max_steps=7 with 5 batches/epoch: stops in the middle of the second epoch."""
    seen = []

    class Rec(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append([trainer.current_epoch, batch_idx, trainer.global_step])

    model = base_classifier(pl)(lr=0.05)
    trainer = make_trainer(pl, tmp_path, max_steps=7, max_epochs=10, callbacks=[Rec()])
    trainer.fit(model, loader(cls_data(20, 3)), loader(cls_data(8, 4)))
    return {**state(trainer), "weights": weights(model), "seen": seen}


@scenario
def scenario_accumulate_grad_batches(pl: Any, tmp_path: Any) -> dict:
    """accumulate_grad_batches=3, 10 batches/epoch -> windows 3,3,3,1 (last window partial)."""
    seen = []

    class Rec(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(
                {
                    "epoch": trainer.current_epoch,
                    "batch_idx": batch_idx,
                    "global_step": trainer.global_step,
                    "outputs_keys": sorted(outputs) if isinstance(outputs, dict) else repr(type(outputs)),
                    "loss": float(outputs["loss"]),
                }
            )

    step_losses = []

    class M(base_classifier(pl)):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            step_losses.append(float(loss))
            return loss

    torch.manual_seed(1)
    model = M(lr=0.2, momentum=0.5)
    trainer = make_trainer(pl, tmp_path, max_epochs=2, accumulate_grad_batches=3, callbacks=[Rec()])
    trainer.fit(model, loader(cls_data(40, 5)), loader(cls_data(12, 6)))
    return {**state(trainer), "weights": weights(model), "seen": seen, "step_losses": step_losses}


def _clip_scenario(pl: Any, tmp_path: Any, algorithm: str, value: float) -> dict:
    pre_clip, post_clip = [], []

    def total_norm(module: nn.Module) -> float:
        grads = [p.grad.detach().flatten() for p in module.parameters() if p.grad is not None]
        return float(torch.cat(grads).norm(2))

    def max_abs(module: nn.Module) -> float:
        return float(max(p.grad.detach().abs().max() for p in module.parameters() if p.grad is not None))

    class Rec(pl.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            pre_clip.append([total_norm(pl_module), max_abs(pl_module)])

    class M(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = regressor()

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.mse_loss(self.net(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
            post_clip.append([total_norm(self), max_abs(self), gradient_clip_val, gradient_clip_algorithm])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.5)

    model = M()
    trainer = make_trainer(
        pl,
        tmp_path,
        max_epochs=2,
        gradient_clip_val=value,
        gradient_clip_algorithm=algorithm,
        num_sanity_val_steps=0,
        callbacks=[Rec()],
    )
    trainer.fit(model, loader(reg_data(24, 7)))
    return {**state(trainer), "weights": weights(model), "pre_clip": pre_clip, "post_clip": post_clip}


@scenario
def scenario_gradient_clip_norm(pl: Any, tmp_path: Any) -> dict:
    return _clip_scenario(pl, tmp_path, "norm", 0.3)


@scenario
def scenario_gradient_clip_value(pl: Any, tmp_path: Any) -> dict:
    return _clip_scenario(pl, tmp_path, "value", 0.1)


@scenario
def scenario_limit_batches_fraction(pl: Any, tmp_path: Any) -> dict:
    """limit_train_batches=0.5 of 10, limit_val_batches=0.25 of 8, 2 epochs, sanity check 2."""
    calls = {"train": [], "val": []}

    class M(base_classifier(pl)):
        def training_step(self, batch, batch_idx):
            calls["train"].append([self.current_epoch, batch_idx])
            return super().training_step(batch, batch_idx)

        def validation_step(self, batch, batch_idx):
            calls["val"].append([self.current_epoch, batch_idx, self.trainer.sanity_checking])
            return super().validation_step(batch, batch_idx)

    model = M(lr=0.1)
    trainer = make_trainer(pl, tmp_path, max_epochs=2, limit_train_batches=0.5, limit_val_batches=0.25)
    trainer.fit(model, loader(cls_data(40, 8)), loader(cls_data(32, 9)))
    return {
        **state(trainer),
        "weights": weights(model),
        "calls": calls,
        "num_training_batches": trainer.num_training_batches,
        "num_val_batches": list(trainer.num_val_batches),
        "num_sanity_val_batches": list(trainer.num_sanity_val_batches),
    }


def _val_timing_callback(pl: Any, log: list) -> Any:
    class Rec(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.last = batch_idx

        def on_validation_start(self, trainer, pl_module):
            log.append(
                {
                    "sanity": trainer.sanity_checking,
                    "epoch": trainer.current_epoch,
                    "global_step": trainer.global_step,
                    "after_batch": getattr(self, "last", None),
                }
            )

        def on_validation_end(self, trainer, pl_module):
            log[-1]["val_loss"] = float(trainer.callback_metrics.get("val_loss", float("-1")))

        def on_train_epoch_start(self, trainer, pl_module):
            self.last = None

    return Rec()


@scenario
def scenario_val_check_interval_int(pl: Any, tmp_path: Any) -> dict:
    """val_check_interval=3 with 10 batches/epoch over 2 epochs."""
    log: list = []
    model = base_classifier(pl)(lr=0.1)
    trainer = make_trainer(pl, tmp_path, max_epochs=2, val_check_interval=3, callbacks=[_val_timing_callback(pl, log)])
    trainer.fit(model, loader(cls_data(40, 10)), loader(cls_data(8, 11)))
    return {**state(trainer), "weights": weights(model), "validations": log}


@scenario
def scenario_check_val_every_n_epoch(pl: Any, tmp_path: Any) -> dict:
    """check_val_every_n_epoch=2 over 4 epochs."""
    log: list = []
    model = base_classifier(pl)(lr=0.1)
    trainer = make_trainer(
        pl, tmp_path, max_epochs=4, check_val_every_n_epoch=2, callbacks=[_val_timing_callback(pl, log)]
    )
    trainer.fit(model, loader(cls_data(12, 12)), loader(cls_data(8, 13)))
    return {**state(trainer), "weights": weights(model), "validations": log}


def _lr_callback(pl: Any, log: list) -> Any:
    class Rec(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            log.append([trainer.current_epoch, batch_idx, trainer.global_step, current_lr(trainer)])

    return Rec()


@scenario
def scenario_lr_step_epoch(pl: Any, tmp_path: Any) -> dict:
    """StepLR(step_size=1, gamma=0.5) with interval 'epoch', 3 epochs."""
    log: list = []

    class M(base_classifier(pl)):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.4)
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    model = M()
    trainer = make_trainer(pl, tmp_path, max_epochs=3, callbacks=[_lr_callback(pl, log)])
    trainer.fit(model, loader(cls_data(12, 14)), loader(cls_data(8, 15)))
    return {**state(trainer), "weights": weights(model), "lrs": log, "final_lr": current_lr(trainer)}


@scenario
def scenario_lr_step_interval_frequency(pl: Any, tmp_path: Any) -> dict:
    """StepLR stepped every 2 optimizer steps (interval 'step', frequency 2), 2 epochs x 5 batches."""
    log: list = []

    class M(base_classifier(pl)):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.3)
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.8)
            return [opt], [{"scheduler": sched, "interval": "step", "frequency": 2}]

    model = M()
    trainer = make_trainer(pl, tmp_path, max_epochs=2, callbacks=[_lr_callback(pl, log)])
    trainer.fit(model, loader(cls_data(20, 16)), loader(cls_data(8, 17)))
    return {**state(trainer), "weights": weights(model), "lrs": log, "final_lr": current_lr(trainer)}


@scenario
def scenario_lr_reduce_on_plateau(pl: Any, tmp_path: Any) -> dict:
    """ReduceLROnPlateau monitoring val_loss (strict threshold so it reduces), 4 epochs."""
    log: list = []

    class M(base_classifier(pl)):
        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.5)
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5, patience=0, threshold=0.3)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_loss"}}

    class Rec(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            log.append([trainer.current_epoch, current_lr(trainer)])

    model = M()
    trainer = make_trainer(pl, tmp_path, max_epochs=4, callbacks=[Rec()])
    trainer.fit(model, loader(cls_data(16, 18)), loader(cls_data(8, 19)))
    return {**state(trainer), "weights": weights(model), "epoch_lrs": log, "final_lr": current_lr(trainer)}


@scenario
def scenario_bf16_mixed(pl: Any, tmp_path: Any) -> dict:
    """precision='bf16-mixed' on CPU: autocast dtypes, final weights, predictions."""
    dtypes: dict = {}

    class M(base_classifier(pl)):
        def training_step(self, batch, batch_idx):
            x, y = batch
            logits = self(x)
            dtypes.setdefault("train_logits", str(logits.dtype))
            dtypes.setdefault("train_param", str(self.net[0].weight.dtype))
            loss = F.cross_entropy(logits, y)
            dtypes.setdefault("train_loss", str(loss.dtype))
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            dtypes.setdefault("val_logits", str(self(batch[0]).dtype))
            return super().validation_step(batch, batch_idx)

        def predict_step(self, batch, batch_idx):
            out = self(batch[0])
            dtypes.setdefault("predict_logits", str(out.dtype))
            return out.float()

    model = M(lr=0.1)
    trainer = make_trainer(pl, tmp_path, max_epochs=2, precision="bf16-mixed")
    trainer.fit(model, loader(cls_data(24, 20)), loader(cls_data(8, 21)))
    result = {**state(trainer), "weights": weights(model), "dtypes": dtypes}
    preds = trainer.predict(model, loader(cls_data(8, 22)))
    result["predictions"] = preds
    result["precision"] = str(trainer.precision)
    return result


@scenario
def scenario_manual_optimization(pl: Any, tmp_path: Any) -> dict:
    """Two optimizers + two schedulers, toggle/untoggle, manual_backward, stepping schedulers per epoch."""
    toggles: list = []

    class M(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False
            self.encoder = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
            self.head = nn.Linear(16, 2)

        def forward(self, x):
            return self.head(self.encoder(x))

        def training_step(self, batch, batch_idx):
            x, y = batch
            opt_enc, opt_head = self.optimizers()

            self.toggle_optimizer(opt_head)
            if batch_idx == 0 and self.current_epoch == 0:
                toggles.append(["head", [p.requires_grad for _, p in self.named_parameters()]])
            loss_head = F.cross_entropy(self(x), y)
            self.manual_backward(loss_head)
            opt_head.step()
            opt_head.zero_grad()
            self.untoggle_optimizer(opt_head)

            self.toggle_optimizer(opt_enc)
            if batch_idx == 0 and self.current_epoch == 0:
                toggles.append(["enc", [p.requires_grad for _, p in self.named_parameters()]])
            loss_enc = F.cross_entropy(self(x), y) + 0.01 * self.encoder[0].weight.pow(2).sum()
            self.manual_backward(loss_enc)
            opt_enc.step()
            opt_enc.zero_grad()
            self.untoggle_optimizer(opt_enc)
            if batch_idx == 0 and self.current_epoch == 0:
                toggles.append(["after", [p.requires_grad for _, p in self.named_parameters()]])

            self.log_dict({"loss_head": loss_head, "loss_enc": loss_enc}, prog_bar=True)

        def on_train_epoch_end(self):
            for sched in self.lr_schedulers():
                sched.step()

        def configure_optimizers(self):
            opt_enc = torch.optim.SGD(self.encoder.parameters(), lr=0.1, momentum=0.9)
            opt_head = torch.optim.Adam(self.head.parameters(), lr=0.01)
            s_enc = torch.optim.lr_scheduler.StepLR(opt_enc, step_size=1, gamma=0.5)
            s_head = torch.optim.lr_scheduler.ExponentialLR(opt_head, gamma=0.9)
            return [opt_enc, opt_head], [s_enc, s_head]

    model = M()
    trainer = make_trainer(pl, tmp_path, max_epochs=2)
    trainer.fit(model, loader(cls_data(16, 23)))
    return {
        **state(trainer),
        "weights": weights(model),
        "toggles": toggles,
        "lrs": [current_lr(trainer, 0), current_lr(trainer, 1)],
    }


@scenario
def scenario_logging(pl: Any, tmp_path: Any) -> dict:
    """on_step/on_epoch suffixes, prog_bar, reduce_fx, explicit batch_size, log_dict, hook-level logs.

    22 training samples with batch_size 4 -> last batch has 2 samples, so weighting by batch size matters.
    """
    snaps: list = []

    class M(base_classifier(pl)):
        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self(x), y)
            self.log("loss", loss, on_step=True, on_epoch=True, prog_bar=True)
            self.log("loss_max", loss, on_step=False, on_epoch=True, reduce_fx="max")
            self.log("loss_auto_bs", loss, on_step=False, on_epoch=True)
            self.log("loss_explicit_bs", loss, on_step=False, on_epoch=True, batch_size=batch_idx + 1)
            self.log("pyfloat", float(batch_idx) * 0.5, on_step=True, on_epoch=True)
            self.log_dict({"d_a": loss * 2, "d_b": loss.detach() + 1}, on_step=True, on_epoch=False, prog_bar=True)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self(x), y)
            self.log("val_loss", loss, on_step=True, on_epoch=True, prog_bar=True)
            self.log("val_max", loss, reduce_fx="max")
            self.log("val_min", loss, reduce_fx="min")
            self.log("val_sum", loss, reduce_fx="sum")
            self.log("val_bs", loss, batch_size=2 * batch_idx + 1)

        def on_train_epoch_end(self):
            self.log("epoch_hook", float(self.current_epoch) + 0.25)

        def on_validation_epoch_end(self):
            self.log("val_epoch_hook", float(self.current_epoch) + 0.75, prog_bar=True)

    def snap(where: str, trainer: Any, **extra: Any) -> None:
        snaps.append(
            {
                "where": where,
                **extra,
                "callback_metrics": metrics(trainer.callback_metrics),
                "logged_metrics": metrics(trainer.logged_metrics),
                "progress_bar_metrics": metrics(trainer.progress_bar_metrics),
            }
        )

    class Snap(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            snap("on_train_batch_end", trainer, batch_idx=batch_idx)

        def on_validation_end(self, trainer, pl_module):
            snap("on_validation_end", trainer, sanity=trainer.sanity_checking)

        def on_train_epoch_end(self, trainer, pl_module):
            snap("on_train_epoch_end", trainer)

        def on_train_end(self, trainer, pl_module):
            snap("on_train_end", trainer)

    model = M(lr=0.1)
    trainer = make_trainer(pl, tmp_path, max_epochs=2, callbacks=[Snap()])
    trainer.fit(model, loader(cls_data(22, 24)), loader(cls_data(11, 25)))
    return {**state(trainer), "weights": weights(model), "snapshots": snaps}


@scenario
def scenario_multiple_val_dataloaders(pl: Any, tmp_path: Any) -> dict:
    """Two val dataloaders: '/dataloader_idx_N' suffixes, validate() return value, fit with both."""
    order: list = []

    class M(base_classifier(pl)):
        def validation_step(self, batch, batch_idx, dataloader_idx=0):
            order.append([dataloader_idx, batch_idx])
            x, y = batch
            loss = F.cross_entropy(self(x), y)
            self.log("val_loss", loss)
            self.log(f"only_{dataloader_idx}", loss + dataloader_idx, add_dataloader_idx=False)

    model = M(lr=0.1)
    val = [loader(cls_data(12, 26)), loader(cls_data(8, 27))]
    trainer = make_trainer(pl, tmp_path, max_epochs=1, num_sanity_val_steps=1)
    trainer.fit(model, loader(cls_data(12, 28)), val)
    result: dict = {"fit": {**state(trainer), "order": list(order)}}
    order.clear()
    out = trainer.validate(model, dataloaders=val, verbose=False)
    result["validate"] = {"returned": [metrics(d) for d in out], "order": list(order), **state(trainer)}
    result["weights"] = weights(model)
    return result


@scenario
def scenario_test_predict(pl: Any, tmp_path: Any) -> dict:
    """test() and predict() return values, with one and two dataloaders."""

    class M(base_classifier(pl)):
        def test_step(self, batch, batch_idx, dataloader_idx=0):
            return super().test_step(batch, batch_idx)

        def predict_step(self, batch, batch_idx, dataloader_idx=0):
            return super().predict_step(batch, batch_idx)

    model = M(lr=0.1)
    trainer = make_trainer(pl, tmp_path, max_epochs=1)
    trainer.fit(model, loader(cls_data(16, 29)), loader(cls_data(8, 30)))
    test_dl, test_dl2 = loader(cls_data(10, 31)), loader(cls_data(6, 32), batch_size=3)
    result: dict = {"weights": weights(model)}
    result["test"] = trainer.test(model, dataloaders=test_dl, verbose=False)
    result["test_state"] = state(trainer)
    result["test_two"] = trainer.test(model, dataloaders=[test_dl, test_dl2], verbose=False)
    result["test_two_state"] = state(trainer)
    preds = trainer.predict(model, dataloaders=test_dl, return_predictions=True)
    result["predict"] = preds
    result["predict_two"] = trainer.predict(model, dataloaders=[test_dl, test_dl2])
    result["predict_none"] = trainer.predict(model, dataloaders=test_dl, return_predictions=False)
    result["final_state"] = state(trainer)
    return result


@scenario
def scenario_seed_shuffle_dropout(pl: Any, tmp_path: Any) -> dict:
    """seed_everything + shuffle=True + Dropout: the global RNG must be consumed identically."""
    seed = pl.seed_everything(1234)
    seen: list = []

    class M(base_classifier(pl)):
        def training_step(self, batch, batch_idx):
            seen.append(batch[2].tolist())
            return super().training_step(batch, batch_idx)

    model = M(lr=0.1, dropout=0.5)
    train = DataLoader(cls_data(20, 33, with_index=True), batch_size=4, shuffle=True, num_workers=0)
    trainer = make_trainer(pl, tmp_path, max_epochs=3)
    trainer.fit(model, train, loader(cls_data(8, 34)))
    return {
        "seed": seed,
        **state(trainer),
        "weights": weights(model),
        "order": seen,
        "rng_after_fit": torch.rand(4).tolist(),
        "python_random_after_fit": random.random(),
    }


@scenario
def scenario_datamodule(pl: Any, tmp_path: Any) -> dict:
    """A LightningDataModule driving fit / validate / test / predict."""
    calls: list = []

    class DM(pl.LightningDataModule):
        def __init__(self) -> None:
            super().__init__()
            self.batch_size = 4

        def prepare_data(self):
            calls.append("prepare_data")

        def setup(self, stage):
            calls.append(f"setup({stage_name(stage)})")
            self.train_ds = cls_data(16, 35)
            self.val_ds = cls_data(8, 36)
            self.test_ds = cls_data(8, 37)

        def teardown(self, stage):
            calls.append(f"teardown({stage_name(stage)})")

        def train_dataloader(self):
            calls.append("train_dataloader")
            return loader(self.train_ds, self.batch_size)

        def val_dataloader(self):
            calls.append("val_dataloader")
            return loader(self.val_ds, self.batch_size)

        def test_dataloader(self):
            calls.append("test_dataloader")
            return loader(self.test_ds, self.batch_size)

        def predict_dataloader(self):
            calls.append("predict_dataloader")
            return loader(self.test_ds, self.batch_size)

    dm = DM()
    model = base_classifier(pl)(lr=0.1)
    trainer = make_trainer(pl, tmp_path, max_epochs=2)
    result: dict = {}
    trainer.fit(model, datamodule=dm)
    result["fit"] = state(trainer)
    result["datamodule_attached"] = trainer.datamodule is dm
    result["validate"] = trainer.validate(model, datamodule=dm, verbose=False)
    result["test"] = trainer.test(model, datamodule=dm, verbose=False)
    result["predict"] = trainer.predict(model, datamodule=dm)
    result["calls"] = calls
    result["weights"] = weights(model)
    return result


# --------------------------------------------------------------------------------------------------
# hook-order scenarios
# --------------------------------------------------------------------------------------------------


def stage_name(stage: Any) -> str:
    """``stage`` must compare equal to one of the plain strings (Lightning passes a str-Enum)."""
    for name in ("fit", "validate", "test", "predict"):
        if isinstance(stage, str) and stage == name:
            return name
    return f"<unexpected {stage!r}>"


def _fmt(name: str, **kwargs: Any) -> str:
    if not kwargs:
        return name
    return name + "(" + ",".join(f"{k}={v}" for k, v in kwargs.items()) + ")"


def recording_callback(pl: Any, log: list) -> Any:
    """A Callback overriding every hook, appending ``Callback.<hook>(key args)`` to ``log``."""

    def rec(name: str, **kw: Any) -> None:
        log.append(_fmt("Callback." + name, **kw))

    class RecordingCallback(pl.Callback):
        def setup(self, trainer, pl_module, stage):
            rec("setup", stage=stage_name(stage))

        def teardown(self, trainer, pl_module, stage):
            rec("teardown", stage=stage_name(stage))

        def on_fit_start(self, trainer, pl_module):
            rec("on_fit_start")

        def on_fit_end(self, trainer, pl_module):
            rec("on_fit_end")

        def on_sanity_check_start(self, trainer, pl_module):
            rec("on_sanity_check_start")

        def on_sanity_check_end(self, trainer, pl_module):
            rec("on_sanity_check_end")

        def on_train_start(self, trainer, pl_module):
            rec("on_train_start")

        def on_train_end(self, trainer, pl_module):
            rec("on_train_end")

        def on_train_epoch_start(self, trainer, pl_module):
            rec("on_train_epoch_start", epoch=trainer.current_epoch)

        def on_train_epoch_end(self, trainer, pl_module):
            rec("on_train_epoch_end", epoch=trainer.current_epoch)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            rec("on_train_batch_start", batch_idx=batch_idx, global_step=trainer.global_step)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            rec("on_train_batch_end", batch_idx=batch_idx, global_step=trainer.global_step)

        def on_validation_start(self, trainer, pl_module):
            rec("on_validation_start", sanity=trainer.sanity_checking, global_step=trainer.global_step)

        def on_validation_end(self, trainer, pl_module):
            rec("on_validation_end")

        def on_validation_epoch_start(self, trainer, pl_module):
            rec("on_validation_epoch_start")

        def on_validation_epoch_end(self, trainer, pl_module):
            rec("on_validation_epoch_end")

        def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            rec("on_validation_batch_start", batch_idx=batch_idx, dataloader_idx=dataloader_idx)

        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            rec("on_validation_batch_end", batch_idx=batch_idx, dataloader_idx=dataloader_idx)

        def on_test_start(self, trainer, pl_module):
            rec("on_test_start")

        def on_test_end(self, trainer, pl_module):
            rec("on_test_end")

        def on_test_epoch_start(self, trainer, pl_module):
            rec("on_test_epoch_start")

        def on_test_epoch_end(self, trainer, pl_module):
            rec("on_test_epoch_end")

        def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            rec("on_test_batch_start", batch_idx=batch_idx, dataloader_idx=dataloader_idx)

        def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            rec("on_test_batch_end", batch_idx=batch_idx, dataloader_idx=dataloader_idx)

        def on_predict_start(self, trainer, pl_module):
            rec("on_predict_start")

        def on_predict_end(self, trainer, pl_module):
            rec("on_predict_end")

        def on_predict_epoch_start(self, trainer, pl_module):
            rec("on_predict_epoch_start")

        def on_predict_epoch_end(self, trainer, pl_module):
            rec("on_predict_epoch_end")

        def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            rec("on_predict_batch_start", batch_idx=batch_idx, dataloader_idx=dataloader_idx)

        def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            rec("on_predict_batch_end", batch_idx=batch_idx, dataloader_idx=dataloader_idx)

        def on_before_backward(self, trainer, pl_module, loss):
            rec("on_before_backward")

        def on_after_backward(self, trainer, pl_module):
            rec("on_after_backward")

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            rec("on_before_optimizer_step")

        def on_before_zero_grad(self, trainer, pl_module, optimizer):
            rec("on_before_zero_grad")

        def on_save_checkpoint(self, trainer, pl_module, checkpoint):
            rec("on_save_checkpoint")

        def on_load_checkpoint(self, trainer, pl_module, checkpoint):
            rec("on_load_checkpoint")

        def on_exception(self, trainer, pl_module, exception):
            rec("on_exception", type=type(exception).__name__)

        def state_dict(self):
            rec("state_dict")
            return {"recorded": len(log)}

        def load_state_dict(self, state_dict):
            rec("load_state_dict", keys=sorted(state_dict))

    return RecordingCallback()


def recording_module(pl: Any, log: list) -> type:
    """A LightningModule overriding every hook, appending ``Module.<hook>(key args)`` then calling super()."""

    def rec(name: str, **kw: Any) -> None:
        log.append(_fmt("Module." + name, **kw))

    def mode(m: nn.Module) -> dict:
        return {
            "training": m.training,
            "grad": torch.is_grad_enabled(),
            "inference": torch.is_inference_mode_enabled(),
        }

    class RecordingModule(pl.LightningModule):
        def __init__(self, fail_at: Any = None, scheduler: bool = True) -> None:
            super().__init__()
            self.net = classifier()
            self.fail_at = fail_at
            self.use_scheduler = scheduler

        def forward(self, x):
            return self.net(x)

        # data hooks ------------------------------------------------------------------------------
        def prepare_data(self):
            rec("prepare_data")
            return super().prepare_data()

        def setup(self, stage):
            rec("setup", stage=stage_name(stage))
            return super().setup(stage)

        def teardown(self, stage):
            rec("teardown", stage=stage_name(stage))
            return super().teardown(stage)

        def train_dataloader(self):
            rec("train_dataloader")
            return loader(cls_data(16, 40))

        def val_dataloader(self):
            rec("val_dataloader")
            return loader(cls_data(12, 41))

        def test_dataloader(self):
            rec("test_dataloader")
            return loader(cls_data(8, 42))

        def predict_dataloader(self):
            rec("predict_dataloader")
            return loader(cls_data(8, 43))

        def on_before_batch_transfer(self, batch, dataloader_idx):
            rec("on_before_batch_transfer", dataloader_idx=dataloader_idx)
            return super().on_before_batch_transfer(batch, dataloader_idx)

        def transfer_batch_to_device(self, batch, device, dataloader_idx):
            rec("transfer_batch_to_device", device=torch.device(device).type, dataloader_idx=dataloader_idx)
            return super().transfer_batch_to_device(batch, device, dataloader_idx)

        def on_after_batch_transfer(self, batch, dataloader_idx):
            rec("on_after_batch_transfer", dataloader_idx=dataloader_idx)
            return super().on_after_batch_transfer(batch, dataloader_idx)

        # configuration ---------------------------------------------------------------------------
        def configure_model(self):
            rec("configure_model")
            return super().configure_model()

        def configure_callbacks(self):
            rec("configure_callbacks")
            return []

        def configure_optimizers(self):
            rec("configure_optimizers")
            opt = torch.optim.SGD(self.parameters(), lr=0.1)
            if not self.use_scheduler:
                return opt
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

        # stage hooks -----------------------------------------------------------------------------
        def on_fit_start(self):
            rec("on_fit_start")
            return super().on_fit_start()

        def on_fit_end(self):
            rec("on_fit_end")
            return super().on_fit_end()

        def on_train_start(self):
            rec("on_train_start")
            return super().on_train_start()

        def on_train_end(self):
            rec("on_train_end")
            return super().on_train_end()

        def on_validation_start(self):
            rec("on_validation_start")
            return super().on_validation_start()

        def on_validation_end(self):
            rec("on_validation_end")
            return super().on_validation_end()

        def on_test_start(self):
            rec("on_test_start")
            return super().on_test_start()

        def on_test_end(self):
            rec("on_test_end")
            return super().on_test_end()

        def on_predict_start(self):
            rec("on_predict_start")
            return super().on_predict_start()

        def on_predict_end(self):
            rec("on_predict_end")
            return super().on_predict_end()

        # epoch hooks -----------------------------------------------------------------------------
        def on_train_epoch_start(self):
            rec("on_train_epoch_start")
            return super().on_train_epoch_start()

        def on_train_epoch_end(self):
            rec("on_train_epoch_end")
            return super().on_train_epoch_end()

        def on_validation_epoch_start(self):
            rec("on_validation_epoch_start")
            return super().on_validation_epoch_start()

        def on_validation_epoch_end(self):
            rec("on_validation_epoch_end")
            return super().on_validation_epoch_end()

        def on_test_epoch_start(self):
            rec("on_test_epoch_start")
            return super().on_test_epoch_start()

        def on_test_epoch_end(self):
            rec("on_test_epoch_end")
            return super().on_test_epoch_end()

        def on_predict_epoch_start(self):
            rec("on_predict_epoch_start")
            return super().on_predict_epoch_start()

        def on_predict_epoch_end(self):
            rec("on_predict_epoch_end")
            return super().on_predict_epoch_end()

        # batch hooks -----------------------------------------------------------------------------
        def on_train_batch_start(self, batch, batch_idx):
            rec("on_train_batch_start", batch_idx=batch_idx)
            return super().on_train_batch_start(batch, batch_idx)

        def on_train_batch_end(self, outputs, batch, batch_idx):
            rec("on_train_batch_end", batch_idx=batch_idx)
            return super().on_train_batch_end(outputs, batch, batch_idx)

        def on_validation_batch_start(self, batch, batch_idx, dataloader_idx=0):
            rec("on_validation_batch_start", batch_idx=batch_idx, dataloader_idx=dataloader_idx)
            return super().on_validation_batch_start(batch, batch_idx, dataloader_idx)

        def on_validation_batch_end(self, outputs, batch, batch_idx, dataloader_idx=0):
            rec("on_validation_batch_end", batch_idx=batch_idx, dataloader_idx=dataloader_idx)
            return super().on_validation_batch_end(outputs, batch, batch_idx, dataloader_idx)

        def on_test_batch_start(self, batch, batch_idx, dataloader_idx=0):
            rec("on_test_batch_start", batch_idx=batch_idx, dataloader_idx=dataloader_idx)
            return super().on_test_batch_start(batch, batch_idx, dataloader_idx)

        def on_test_batch_end(self, outputs, batch, batch_idx, dataloader_idx=0):
            rec("on_test_batch_end", batch_idx=batch_idx, dataloader_idx=dataloader_idx)
            return super().on_test_batch_end(outputs, batch, batch_idx, dataloader_idx)

        def on_predict_batch_start(self, batch, batch_idx, dataloader_idx=0):
            rec("on_predict_batch_start", batch_idx=batch_idx, dataloader_idx=dataloader_idx)
            return super().on_predict_batch_start(batch, batch_idx, dataloader_idx)

        def on_predict_batch_end(self, outputs, batch, batch_idx, dataloader_idx=0):
            rec("on_predict_batch_end", batch_idx=batch_idx, dataloader_idx=dataloader_idx)
            return super().on_predict_batch_end(outputs, batch, batch_idx, dataloader_idx)

        # steps (``*args`` records exactly how many positional args the trainer passes) ------------
        def training_step(self, batch, *args):
            rec("training_step", args=list(args), **mode(self))
            if self.fail_at is not None and (self.current_epoch, args[0]) == tuple(self.fail_at):
                raise ValueError("planned failure")
            x, y = batch
            loss = F.cross_entropy(self(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, *args):
            rec("validation_step", args=list(args), **mode(self))
            x, y = batch
            self.log("val_loss", F.cross_entropy(self(x), y))

        def test_step(self, batch, *args):
            rec("test_step", args=list(args), **mode(self))
            x, y = batch
            self.log("test_loss", F.cross_entropy(self(x), y))

        def predict_step(self, batch, *args):
            rec("predict_step", args=list(args), **mode(self))
            return self(batch[0]).argmax(-1)

        # optimisation hooks ----------------------------------------------------------------------
        def on_before_backward(self, loss):
            rec("on_before_backward")
            return super().on_before_backward(loss)

        def backward(self, loss, *args, **kwargs):
            rec("backward")
            return super().backward(loss, *args, **kwargs)

        def on_after_backward(self):
            rec("on_after_backward")
            return super().on_after_backward()

        def on_before_optimizer_step(self, optimizer):
            rec("on_before_optimizer_step")
            return super().on_before_optimizer_step(optimizer)

        def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
            rec("configure_gradient_clipping", val=gradient_clip_val, algorithm=gradient_clip_algorithm)
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

        def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
            rec("optimizer_step", epoch=epoch, batch_idx=batch_idx)
            return super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)

        def optimizer_zero_grad(self, epoch, batch_idx, optimizer):
            rec("optimizer_zero_grad", epoch=epoch, batch_idx=batch_idx)
            return super().optimizer_zero_grad(epoch, batch_idx, optimizer)

        def on_before_zero_grad(self, optimizer):
            rec("on_before_zero_grad")
            return super().on_before_zero_grad(optimizer)

        def lr_scheduler_step(self, scheduler, metric):
            rec("lr_scheduler_step", metric=metric)
            return super().lr_scheduler_step(scheduler, metric)

        # eval/train mode hooks -------------------------------------------------------------------
        def on_validation_model_zero_grad(self):
            rec("on_validation_model_zero_grad")
            return super().on_validation_model_zero_grad()

        def on_validation_model_eval(self):
            rec("on_validation_model_eval")
            return super().on_validation_model_eval()

        def on_validation_model_train(self):
            rec("on_validation_model_train")
            return super().on_validation_model_train()

        def on_test_model_eval(self):
            rec("on_test_model_eval")
            return super().on_test_model_eval()

        def on_test_model_train(self):
            rec("on_test_model_train")
            return super().on_test_model_train()

        def on_predict_model_eval(self):
            rec("on_predict_model_eval")
            return super().on_predict_model_eval()

        # checkpoint hooks ------------------------------------------------------------------------
        def on_save_checkpoint(self, checkpoint):
            rec("on_save_checkpoint")
            return super().on_save_checkpoint(checkpoint)

        def on_load_checkpoint(self, checkpoint):
            rec("on_load_checkpoint")
            return super().on_load_checkpoint(checkpoint)

    return RecordingModule


def _hook_trainer(pl: Any, tmp_path: Any, log: list, **kwargs: Any) -> Any:
    base = dict(
        max_epochs=2,
        num_sanity_val_steps=2,
        val_check_interval=0.5,
        accumulate_grad_batches=2,
        limit_val_batches=2,
        callbacks=[recording_callback(pl, log)],
    )
    base.update(kwargs)
    return make_trainer(pl, tmp_path, **base)


@scenario
def scenario_hooks_fit_validate_test_predict(pl: Any, tmp_path: Any) -> dict:
    """Hook order for fit (sanity check, mid-epoch val, accumulation 2, StepLR), then validate/test/predict."""
    log: list = []
    model = recording_module(pl, log)()
    trainer = _hook_trainer(pl, tmp_path, log)
    result: dict = {}

    trainer.fit(model)
    result["fit"] = list(log)
    result["fit_state"] = state(trainer)
    log.clear()

    result["validate_returned"] = trainer.validate(model, verbose=False)
    result["validate"] = list(log)
    log.clear()

    result["test_returned"] = trainer.test(model, verbose=False)
    result["test"] = list(log)
    log.clear()

    result["predict_returned"] = trainer.predict(model)
    result["predict"] = list(log)
    result["weights"] = weights(model)
    return result


@scenario
def scenario_hooks_fresh_trainers(pl: Any, tmp_path: Any) -> dict:
    """validate / test / predict each on a brand-new Trainer (no preceding fit), 2 val loaders for validate."""
    log: list = []
    result: dict = {}
    model = recording_module(pl, log)()

    trainer = make_trainer(pl, tmp_path, limit_val_batches=2, callbacks=[recording_callback(pl, log)])
    dls = [loader(cls_data(8, 44)), loader(cls_data(4, 45))]
    result["validate_returned"] = trainer.validate(model, dataloaders=dls, verbose=False)
    result["validate"] = list(log)
    log.clear()

    trainer = make_trainer(pl, tmp_path, callbacks=[recording_callback(pl, log)])
    result["test_returned"] = trainer.test(model, verbose=False)
    result["test"] = list(log)
    log.clear()

    trainer = make_trainer(pl, tmp_path, callbacks=[recording_callback(pl, log)])
    result["predict_returned"] = trainer.predict(model, dataloaders=dls)
    result["predict"] = list(log)
    return result


@scenario
def scenario_hooks_manual_optimization(pl: Any, tmp_path: Any) -> dict:
    """Hook order with automatic_optimization=False (1 epoch, 2 batches, no validation)."""
    log: list = []

    class M(recording_module(pl, log)):
        def __init__(self) -> None:
            super().__init__(scheduler=False)
            self.automatic_optimization = False

        def training_step(self, batch, *args):
            log.append(_fmt("Module.training_step", args=list(args)))
            opt = self.optimizers()
            x, y = batch
            loss = F.cross_entropy(self(x), y)
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
            self.log("train_loss", loss)

    model = M()
    trainer = make_trainer(
        pl, tmp_path, max_epochs=1, limit_train_batches=2, limit_val_batches=0, callbacks=[recording_callback(pl, log)]
    )
    trainer.fit(model)
    return {"fit": log, "state": state(trainer), "weights": weights(model)}


@scenario
def scenario_hooks_checkpoint_resume(pl: Any, tmp_path: Any) -> dict:
    """trainer.save_checkpoint after 1 epoch, then resume with fit(ckpt_path=...) to 2 epochs."""
    log: list = []
    Model = recording_module(pl, log)
    model = Model()
    trainer = make_trainer(
        pl, tmp_path, max_epochs=1, num_sanity_val_steps=0, limit_val_batches=1, callbacks=[recording_callback(pl, log)]
    )
    trainer.fit(model)
    log.clear()
    path = os.path.join(str(tmp_path), "manual.ckpt")
    trainer.save_checkpoint(path)
    result: dict = {"save": list(log), "weights_saved": weights(model)}
    log.clear()

    torch.manual_seed(99)  # different init: the checkpoint must overwrite it
    model2 = Model()
    trainer2 = make_trainer(
        pl, tmp_path, max_epochs=2, num_sanity_val_steps=0, limit_val_batches=1, callbacks=[recording_callback(pl, log)]
    )
    trainer2.fit(model2, ckpt_path=path)
    result["resume"] = list(log)
    result["resume_state"] = state(trainer2)
    result["weights"] = weights(model2)
    result["lr"] = current_lr(trainer2)
    return result


@scenario
def scenario_hooks_exception(pl: Any, tmp_path: Any) -> dict:
    """training_step raises in epoch 0 batch 2: on_exception fires and the error propagates."""
    log: list = []
    model = recording_module(pl, log)(fail_at=(0, 2), scheduler=False)
    trainer = make_trainer(pl, tmp_path, max_epochs=1, num_sanity_val_steps=0, callbacks=[recording_callback(pl, log)])
    raised = None
    try:
        trainer.fit(model)
    except ValueError as err:
        raised = [type(err).__name__, str(err)]
    return {"fit": log, "raised": raised, "global_step": trainer.global_step}


# --------------------------------------------------------------------------------------------------

SCENARIOS: dict = {
    name[len("scenario_") :]: fn for name, fn in list(globals().items()) if getattr(fn, "__scenario__", False)
}


def run_scenario(pl: Any, name: str, tmp_path: Any) -> dict:
    return SCENARIOS[name](pl, tmp_path)
