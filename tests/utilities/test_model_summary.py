import pytest
import torch
from torch import nn

from ember.callbacks.model_summary import ModelSummary as ModelSummaryCallback
from ember.utilities.model_summary import ModelSummary, get_human_readable_count, summarize


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8)))
        self.head = nn.Linear(8, 2)
        self.frozen = nn.Linear(3, 3)
        for p in self.frozen.parameters():
            p.requires_grad_(False)
        self.frozen.eval()
        self.scale = nn.Parameter(torch.ones(5))
        self.register_buffer("running", torch.zeros(100))  # buffers are not parameters

    def forward(self, x):
        return self.head(self.encoder(x)) * self.scale[:2]


# encoder: 4*8+8 + 8*8+8 + 8+8 = 128 ; head: 18 ; frozen: 12 ; scale: 5
TOTAL = 128 + 18 + 12 + 5


def test_counts_and_totals():
    s = ModelSummary(Net(), max_depth=1)
    assert s.layer_names == ["encoder", "head", "frozen"]
    assert s.layer_types == ["Sequential", "Linear", "Linear"]
    assert s.param_nums == [128, 18, 12]
    assert s.training_modes == [True, True, False]
    assert s.total_parameters == TOTAL
    assert s.trainable_parameters == TOTAL - 12
    assert s.model_size == pytest.approx(TOTAL * 4 / 1e6)
    # submodules of all depths, the model itself excluded: encoder + 5 inside it + head + frozen
    assert s.total_training_modes == {"train": 7, "eval": 1}


def test_max_depth():
    model = Net()
    assert ModelSummary(model, max_depth=0).layer_names == []
    assert ModelSummary(model, max_depth=2).layer_names == [
        "encoder", "encoder.0", "encoder.1", "encoder.2", "head", "frozen",
    ]
    deep = ModelSummary(model, max_depth=-1)
    assert deep.layer_names == [
        "encoder", "encoder.0", "encoder.1", "encoder.2", "encoder.2.0", "encoder.2.1", "head", "frozen",
    ]
    assert deep.param_nums[deep.layer_names.index("encoder.2.1")] == 16
    assert deep.total_parameters == TOTAL  # totals do not depend on the depth
    with pytest.raises(ValueError):
        ModelSummary(model, max_depth=-2)


def test_table_text():
    text = str(summarize(Net(), max_depth=1))
    lines = text.splitlines()
    assert [c.strip() for c in lines[0].split("|")] == ["", "Name", "Type", "Params", "Mode", "FLOPs"]
    assert set(lines[1]) == {"-"}
    assert [c.strip() for c in lines[2].split("|")] == ["0", "encoder", "Sequential", "128", "train", "0"]
    assert [c.strip() for c in lines[4].split("|")] == ["2", "frozen", "Linear", "12", "eval", "0"]
    # parameters registered on the model itself get their own row
    assert [c.strip() for c in lines[5].split("|")] == ["", "other params", "n/a", "5", "n/a", "n/a"]
    assert lines[7:] == [
        "151       Trainable params",
        "12        Non-trainable params",
        "163       Total params",
        "0.001     Total estimated model params size (MB)",
        "7         Modules in train mode",
        "1         Modules in eval mode",
        "0         Total Flops",
    ]


def test_example_input_array_adds_shapes_and_keeps_modes():
    model = Net()
    model.example_input_array = torch.zeros(3, 4)
    s = ModelSummary(model)
    assert s.in_sizes == [[3, 4], [3, 8], "?"]
    assert s.out_sizes == [[3, 8], [3, 2], "?"]
    # FLOPs of the forward pass: 2 * batch * in * out per Linear
    assert s.flop_nums == [2 * 3 * 4 * 8 + 2 * 3 * 8 * 8, 2 * 3 * 8 * 2, 0]
    assert s.total_flops == 672
    assert "In sizes" in str(s) and "Out sizes" in str(s) and "672       Total Flops" in str(s)
    assert model.training and model.encoder.training and not model.frozen.training


def test_human_readable_counts():
    assert [get_human_readable_count(n) for n in (0, 999, 1000, 12_345, 999_999, 1_500_000, 2_000_000_000)] == [
        "0", "999", "1.0 K", "12.3 K", "999 K", "1.5 M", "2.0 B",
    ]


def test_big_model_sizes():
    s = ModelSummary(nn.Sequential(nn.Embedding(100_000, 128), nn.Linear(128, 10).to(torch.float64)))
    assert s.total_parameters == 12_801_290
    assert s.model_size == pytest.approx((12_800_000 * 4 + 1290 * 8) / 1e6)
    assert "12.8 M" in str(s)


def test_callback_prints_on_fit_start(capsys):
    class StubTrainer:
        is_global_zero = True

    ModelSummaryCallback(max_depth=1).on_fit_start(StubTrainer(), Net())
    out = capsys.readouterr().out
    assert "| Name" in out and "encoder" in out and "Total params" in out
    assert "encoder.0" not in out

    ModelSummaryCallback(max_depth=-1).on_fit_start(StubTrainer(), Net())
    assert "encoder.2.1" in capsys.readouterr().out

    ModelSummaryCallback(max_depth=0).on_fit_start(StubTrainer(), Net())
    assert capsys.readouterr().out == ""

    StubTrainer.is_global_zero = False
    ModelSummaryCallback().on_fit_start(StubTrainer(), Net())
    assert capsys.readouterr().out == ""
