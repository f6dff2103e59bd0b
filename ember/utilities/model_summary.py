"""A table of a model's layers and parameter counts (what ``Trainer.fit`` prints at start).

Example output::

      | Name | Type       | Params | Mode  | FLOPs
    --------------------------------------------------
    0 | net  | Sequential | 137    | train | 0
    1 | head | Linear     | 9      | eval  | 0
    --------------------------------------------------
    137       Trainable params
    9         Non-trainable params
    146       Total params
    0.001     Total estimated model params size (MB)
    4         Modules in train mode
    1         Modules in eval mode
    0         Total Flops

When the module has an ``example_input_array``, one forward pass with it (eval mode, no grad)
fills the FLOPs column and adds "In sizes" / "Out sizes" columns; without one, FLOPs read 0.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ember.utilities.rank_zero import rank_zero_warn

__all__ = ["LayerSummary", "ModelSummary", "get_human_readable_count", "summarize"]

UNKNOWN_SIZE = "?"
NOT_APPLICABLE = "n/a"
_LABELS = ["", "K", "M", "B", "T"]


def get_human_readable_count(number: int) -> str:
    """Shorten a count: ``123`` -> ``"123"``, ``1500`` -> ``"1.5 K"``, ``12_800_000`` -> ``"12.8 M"``,
    ``2e9`` -> ``"2.0 B"``. Above 100 in a unit the decimal is dropped (``"250 K"``)."""
    if number < 0:
        raise ValueError(f"expected a non-negative count, got {number}")
    number = int(number)
    if number < 1000:
        return str(number)
    group = min((len(str(number)) - 1) // 3, len(_LABELS) - 1)
    scaled = number / 10 ** (3 * group)
    if scaled >= 100:  # "999 K", "3,000 T"
        return f"{int(scaled):,d} {_LABELS[group]}"
    return f"{scaled:.1f} {_LABELS[group]}"  # "1.5 K", "12.8 M"


def _is_lazy(p: torch.Tensor) -> bool:
    return isinstance(p, nn.parameter.UninitializedParameter)


def _shape_of(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return list(obj.shape)
    if isinstance(obj, (list, tuple)):
        return [_shape_of(o) for o in obj]
    if isinstance(obj, Mapping):
        return {k: _shape_of(v) for k, v in obj.items()}
    return UNKNOWN_SIZE


class LayerSummary:
    """Facts about one submodule: type, parameter count, train/eval mode and (after a forward
    pass with hooks attached) its input and output shapes."""

    def __init__(self, module: nn.Module) -> None:
        self._module = module
        self._flops = 0
        self._in_size: Any = None
        self._out_size: Any = None
        self._hook_handle: Any = None

    def _register_hook(self) -> None:
        def hook(_: nn.Module, inputs: Any, kwargs: Any, output: Any) -> None:
            if self._in_size is None:  # the first call wins (a layer may run several times)
                args = list(inputs) + list((kwargs or {}).values())
                self._in_size = _shape_of(args[0] if len(args) == 1 else args)
                self._out_size = _shape_of(output)

        self._hook_handle = self._module.register_forward_hook(hook, with_kwargs=True)

    def detach_hook(self) -> None:
        if self._hook_handle is not None:
            self._hook_handle.remove()
            self._hook_handle = None

    @property
    def in_size(self) -> Any:
        return self._in_size if self._in_size is not None else UNKNOWN_SIZE

    @property
    def out_size(self) -> Any:
        return self._out_size if self._out_size is not None else UNKNOWN_SIZE

    @property
    def flops(self) -> int:
        """Floating-point operations of one forward pass with ``example_input_array`` (0 without)."""
        return self._flops

    @property
    def layer_type(self) -> str:
        return self._module.__class__.__name__

    @property
    def num_parameters(self) -> int:
        return sum(0 if _is_lazy(p) else p.numel() for p in self._module.parameters())

    @property
    def training(self) -> bool:
        return self._module.training


class ModelSummary:
    """Summarize ``model``'s submodules down to ``max_depth`` levels.

    Args:
        model: the LightningModule (any ``nn.Module`` works).
        max_depth: ``1`` lists the direct children, ``2`` also their children, ... ``-1`` lists
            every submodule and ``0`` none (only the totals).

    ``str(summary)`` is the printed table; the numbers are available as properties
    (``total_parameters``, ``trainable_parameters``, ``model_size`` ...).
    """

    def __init__(self, model: nn.Module, max_depth: int = 1) -> None:
        if not isinstance(max_depth, int) or isinstance(max_depth, bool) or max_depth < -1:
            raise ValueError(f"`max_depth` can be -1, 0 or > 0, got {max_depth!r}.")
        self._model = model
        self._max_depth = max_depth
        self._total_flops = 0
        self._layer_summary = self.summarize()

    # ---- collecting ------------------------------------------------------------------------

    @property
    def max_depth(self) -> int:
        return self._max_depth

    @property
    def named_modules(self) -> list[tuple[str, nn.Module]]:
        """The submodules shown, in registration order (a shared module appears once)."""
        if self._max_depth == 0:
            return []
        out = []
        for name, module in self._model.named_modules():
            if not name:
                continue  # the model itself
            if self._max_depth == -1 or name.count(".") < self._max_depth:
                out.append((name, module))
        return out

    def summarize(self) -> OrderedDict[str, LayerSummary]:
        summary = OrderedDict((name, LayerSummary(module)) for name, module in self.named_modules)
        example = getattr(self._model, "example_input_array", None)
        if example is not None and summary:
            for layer in summary.values():
                layer._register_hook()
            try:
                flops = self._forward_example_input(example)
            finally:
                for layer in summary.values():
                    layer.detach_hook()
            self._total_flops = flops.pop("", 0)
            for name, layer in summary.items():
                layer._flops = flops.get(name, 0)
        if self._has_uninitialized_params():
            rank_zero_warn(
                "The model has parameters that are not initialized yet (lazy modules); they count as 0"
                " in the summary. Set `example_input_array` on the module to get exact numbers."
            )
        return summary

    def _has_uninitialized_params(self) -> bool:
        return any(_is_lazy(p) for p in self._model.parameters())

    def _forward_example_input(self, example: Any) -> dict[str, int]:
        """Run one forward pass (eval mode, no grad) with ``example``; restore every module's mode.

        Returns the FLOPs counted per submodule name (``""`` holds the total)."""
        model = self._model
        try:
            device = next(model.parameters()).device
        except StopIteration:
            device = None

        def to_device(x: Any) -> Any:
            if isinstance(x, torch.Tensor):
                return x.to(device) if device is not None else x
            if isinstance(x, (list, tuple)):
                moved = [to_device(v) for v in x]
                return type(x)(*moved) if hasattr(x, "_fields") else type(x)(moved)
            if isinstance(x, Mapping):
                return {k: to_device(v) for k, v in x.items()}
            return x

        def forward() -> None:
            with torch.no_grad():
                if isinstance(example, (list, tuple)):
                    model(*example)
                elif isinstance(example, Mapping):
                    model(**example)
                else:
                    model(example)

        example = to_device(example)
        modes = {m: m.training for m in model.modules()}
        model.eval()
        flops: dict[str, int] = {}
        try:
            try:
                from torch.utils.flop_counter import FlopCounterMode

                counter = FlopCounterMode(display=False)
            except Exception:  # very old torch: shapes only
                counter = None
            if counter is None:
                forward()
            else:
                with counter:
                    forward()
                root = type(model).__name__
                for key, per_op in counter.get_flop_counts().items():
                    if key == root:
                        flops[""] = int(sum(per_op.values()))
                    elif key.startswith(root + "."):
                        flops[key[len(root) + 1:]] = int(sum(per_op.values()))
                flops.setdefault("", int(counter.get_total_flops()))
        finally:
            for m, training in modes.items():
                m.training = training
        return flops

    # ---- columns ---------------------------------------------------------------------------

    @property
    def layer_names(self) -> list[str]:
        return list(self._layer_summary.keys())

    @property
    def layer_types(self) -> list[str]:
        return [layer.layer_type for layer in self._layer_summary.values()]

    @property
    def in_sizes(self) -> list[Any]:
        return [layer.in_size for layer in self._layer_summary.values()]

    @property
    def out_sizes(self) -> list[Any]:
        return [layer.out_size for layer in self._layer_summary.values()]

    @property
    def param_nums(self) -> list[int]:
        return [layer.num_parameters for layer in self._layer_summary.values()]

    @property
    def flop_nums(self) -> list[int]:
        return [layer.flops for layer in self._layer_summary.values()]

    @property
    def total_flops(self) -> int:
        """FLOPs of one forward pass with ``example_input_array`` (0 when the model has none)."""
        return self._total_flops

    @property
    def training_modes(self) -> list[bool]:
        return [layer.training for layer in self._layer_summary.values()]

    # ---- totals ----------------------------------------------------------------------------

    @property
    def total_training_modes(self) -> dict[str, int]:
        """How many submodules (all depths, the model itself excluded) are in train / eval mode."""
        modes = [m.training for name, m in self._model.named_modules() if name]
        return {"train": sum(modes), "eval": len(modes) - sum(modes)}

    @property
    def total_parameters(self) -> int:
        return sum(0 if _is_lazy(p) else p.numel() for p in self._model.parameters())

    @property
    def trainable_parameters(self) -> int:
        return sum(0 if _is_lazy(p) else p.numel() for p in self._model.parameters() if p.requires_grad)

    @property
    def total_layer_params(self) -> int:
        return sum(self.param_nums)

    @property
    def model_size(self) -> float:
        """Estimated size of the parameters in MB (1 MB = 1e6 bytes), from their dtypes."""
        nbytes = sum(0 if _is_lazy(p) else p.numel() * p.element_size() for p in self._model.parameters())
        return nbytes / 1e6

    def _other_params(self) -> int:
        """Parameters the listed layers do not cover (registered on the model itself)."""
        if self._max_depth == 0:
            return self.total_parameters
        return sum(0 if _is_lazy(p) else p.numel() for p in self._model.parameters(recurse=False))

    # ---- the table -------------------------------------------------------------------------

    def _get_summary_data(self) -> list[tuple[str, list[str]]]:
        """The table's columns as ``(header, cells)``, the last row being "other params" if any."""
        names = self.layer_names
        data: list[tuple[str, list[str]]] = [
            (" ", [str(i) for i in range(len(names))]),
            ("Name", list(names)),
            ("Type", self.layer_types),
            ("Params", [get_human_readable_count(n) for n in self.param_nums]),
            ("Mode", ["train" if t else "eval" for t in self.training_modes]),
            ("FLOPs", [get_human_readable_count(n) for n in self.flop_nums]),
        ]
        if getattr(self._model, "example_input_array", None) is not None:
            data.append(("In sizes", [str(s) for s in self.in_sizes]))
            data.append(("Out sizes", [str(s) for s in self.out_sizes]))
        other = self._other_params()
        if other > 0:
            extra = {" ": "", "Name": "other params", "Params": get_human_readable_count(other)}
            for header, cells in data:
                cells.append(extra.get(header, NOT_APPLICABLE))
        return data

    def __str__(self) -> str:
        return _format_summary_table(
            self.total_parameters,
            self.trainable_parameters,
            self.model_size,
            self.total_training_modes,
            self.total_flops,
            *self._get_summary_data(),
        )

    def __repr__(self) -> str:
        return str(self)


def _format_summary_table(
    total_parameters: int,
    trainable_parameters: int,
    model_size: float,
    total_training_modes: dict[str, int],
    total_flops: int,
    *cols: tuple[str, list[str]],
) -> str:
    """Render ``(header, cells)`` columns plus the totals block as text."""
    widths = [max([len(header), *(len(c) for c in cells)]) for header, cells in cols]
    n_rows = len(cols[0][1]) if cols else 0

    def line(cells: list[str]) -> str:
        return " | ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    header = line([h if h.strip() else "" for h, _ in cols])
    rows = [line([cells[i] for _, cells in cols]) for i in range(n_rows)]
    rule = "-" * max([len(header), *(len(r) for r in rows)])
    non_trainable = total_parameters - trainable_parameters
    out = [header, rule, *rows, rule]
    out.append(f"{get_human_readable_count(trainable_parameters):<10}Trainable params")
    out.append(f"{get_human_readable_count(non_trainable):<10}Non-trainable params")
    out.append(f"{get_human_readable_count(total_parameters):<10}Total params")
    out.append(f"{model_size:<10.3f}Total estimated model params size (MB)")
    out.append(f"{total_training_modes.get('train', 0):<10}Modules in train mode")
    out.append(f"{total_training_modes.get('eval', 0):<10}Modules in eval mode")
    out.append(f"{get_human_readable_count(total_flops):<10}Total Flops")
    return "\n".join(out)


def summarize(lightning_module: nn.Module, max_depth: int = 1) -> ModelSummary:
    """``ModelSummary(lightning_module, max_depth)``; print it to see the table."""
    return ModelSummary(lightning_module, max_depth=max_depth)
