"""BackboneFinetuning / BaseFinetuning: frozen until the given epoch, then trained with their own LR."""

import pytest
import torch
from torch import nn

import ember as pl
from ember.callbacks import BackboneFinetuning, BaseFinetuning, ModelCheckpoint
from ember.utilities.exceptions import MisconfigurationException
from tests.helpers import BoringModel, trainer_kwargs, weights


class WithBackbone(BoringModel):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
        self.layer = nn.Linear(4, 1)

    def forward(self, x):
        return self.layer(self.backbone(x))

    def configure_optimizers(self):
        return torch.optim.SGD(filter(lambda p: p.requires_grad, self.parameters()), lr=0.1)


class EpochLog(pl.Callback):
    def __init__(self):
        self.backbone, self.head, self.groups = [], [], []

    def on_train_epoch_end(self, trainer, pl_module):
        self.backbone.append(pl_module.backbone[0].weight.detach().clone())
        self.head.append(pl_module.layer.weight.detach().clone())
        self.groups.append([group["lr"] for group in trainer.optimizers[0].param_groups])


def test_backbone_unfreezes_at_the_given_epoch_with_a_growing_lr(tmp_path):
    log = EpochLog()
    finetuning = BackboneFinetuning(unfreeze_backbone_at_epoch=2, lambda_func=lambda epoch: 1.5,
                                    backbone_initial_ratio_lr=0.1)
    model = WithBackbone()
    initial = model.backbone[0].weight.detach().clone()
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=4, callbacks=[finetuning, log]))
    trainer.fit(model)
    # epochs 0 and 1: backbone frozen (its batch norm trains: train_bn=True), head trains
    assert torch.equal(log.backbone[0], initial) and torch.equal(log.backbone[1], initial)
    assert not torch.equal(log.head[0], log.head[1])
    assert model.backbone[1].weight.requires_grad
    # epoch 2: a new param group at 10% of the head's LR; then x1.5 per epoch
    assert log.groups == [[0.1], [0.1], [0.1, pytest.approx(0.01)], [0.1, pytest.approx(0.015)]]
    assert not torch.equal(log.backbone[2], initial) and not torch.equal(log.backbone[3], log.backbone[2])
    assert all(p.requires_grad for p in model.backbone.parameters())


def test_resume_rebuilds_the_param_groups(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=2, enable_checkpointing=True, callbacks=[
        BackboneFinetuning(unfreeze_backbone_at_epoch=1), checkpoint]))
    trainer.fit(WithBackbone())
    state = torch.load(checkpoint.last_model_path, weights_only=False)["callbacks"]["BackboneFinetuning"]
    # group 0: the head and the backbone's batch norm (trainable: train_bn=True); group 1: the backbone
    assert [len(g["params"]) for g in state["internal_optimizer_metadata"][0]] == [4, 2]
    assert state["internal_optimizer_metadata"][0][1]["params"] == ["backbone.0.weight", "backbone.0.bias"]
    log = EpochLog()
    resumed = pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=3, callbacks=[
        BackboneFinetuning(unfreeze_backbone_at_epoch=1), log]))
    resumed.fit(WithBackbone(), ckpt_path=checkpoint.last_model_path)
    assert log.groups == [[0.1, pytest.approx(0.02)]]  # the restored group, its LR doubled (default lambda)


def test_custom_finetuning_schedule(tmp_path):
    class UnfreezeHeadLater(BaseFinetuning):
        def freeze_before_training(self, pl_module):
            self.freeze(pl_module.layer)

        def finetune_function(self, pl_module, epoch, optimizer):
            if epoch == 1:
                self.unfreeze_and_add_param_group(pl_module.layer, optimizer, initial_denom_lr=4.0)

    class BackboneOnly(WithBackbone):
        def configure_optimizers(self):
            return torch.optim.SGD(self.backbone.parameters(), lr=0.2)

    log = EpochLog()
    model = BackboneOnly()
    head = weights(model.layer)
    pl.Trainer(**trainer_kwargs(tmp_path, max_epochs=2, callbacks=[UnfreezeHeadLater(), log])).fit(model)
    assert torch.equal(log.head[0], head["weight"]) and not torch.equal(log.head[1], head["weight"])
    assert log.groups[1] == [0.2, pytest.approx(0.05)]


def test_freeze_tools():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Sequential(nn.Linear(2, 1)))
    BaseFinetuning.freeze(net, train_bn=False)
    assert not any(p.requires_grad for p in net.parameters()) and not net[1].track_running_stats
    assert len(BaseFinetuning.flatten_modules(net)) == 3
    BaseFinetuning.make_trainable(net[2])
    assert list(BaseFinetuning.filter_params(net, requires_grad=True)) == list(net[2].parameters())
    optimizer = torch.optim.SGD(net[2].parameters(), lr=1.0)
    with pytest.warns(UserWarning, match="already in the optimizer"):
        assert BaseFinetuning.filter_on_optimizer(optimizer, net.parameters())[:2] == list(net[0].parameters())


def test_backbone_attribute_required(tmp_path):
    trainer = pl.Trainer(**trainer_kwargs(tmp_path, callbacks=[BackboneFinetuning()]))
    with pytest.raises(MisconfigurationException, match="backbone"):
        trainer.fit(BoringModel())
