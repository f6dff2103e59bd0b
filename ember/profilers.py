"""Profilers: where the time of a run goes, per hook and per step. ``Trainer(profiler="simple")``.

Without a profiler (the default) the Trainer runs its plain code: nothing is wrapped and nothing is
timed, so profiling costs nothing when it is off. With one, for the duration of each
fit/validate/test/predict call the trainer routes its hook dispatcher, its module-only hooks, its batch
transfer and every ``*_step`` through ``profiler.profile(action)``; the report is printed (or written to
``dirpath/filename``) when the call ends. Action names follow Lightning's::

    [Callback]ModelCheckpoint{...}.on_train_epoch_end    a callback's hook
    [LightningModule]MyModel.training_step               a module hook or step
    [Strategy]SingleDeviceStrategy.batch_to_device        moving a batch to the device (with its hooks)
    run_training_epoch / run_training_batch               an epoch; one batch's optimizer step (forward,
                                                          backward, step), between its batch hooks

Write your own by subclassing :class:`Profiler` and implementing ``start``/``stop`` (and ``summary``).
"""

from __future__ import annotations

import contextlib
import io
import marshal
import os
import re
import tempfile
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ember.callbacks.callback import Callback
from ember.utilities.exceptions import MisconfigurationException
from ember.utilities.rank_zero import rank_zero_only

if TYPE_CHECKING:
    from ember.trainer.trainer import Trainer

__all__ = ["AdvancedProfiler", "PassThroughProfiler", "Profiler", "PyTorchProfiler", "SimpleProfiler"]


class Profiler(ABC):
    """Base class: records named actions between ``start(action)`` and ``stop(action)``.

    Args:
        dirpath: where ``describe()`` writes the report (default: the trainer's ``log_dir``, set in ``setup``).
        filename: the report's file name stem; without it the report is printed instead of written.
    """

    def __init__(self, dirpath: str | Path | None = None, filename: str | None = None) -> None:
        self.dirpath = dirpath
        self.filename = filename
        self._stage: str | None = None
        self._local_rank: int | None = None

    @abstractmethod
    def start(self, action_name: str) -> None:
        """Begin recording ``action_name``."""

    @abstractmethod
    def stop(self, action_name: str) -> None:
        """End recording ``action_name``."""

    def summary(self) -> str:
        """The report on what was recorded since ``setup``."""
        return ""

    @contextlib.contextmanager
    def profile(self, action_name: str) -> Generator[str, None, None]:
        """Record the body of the ``with`` block as ``action_name``."""
        self.start(action_name)
        try:
            yield action_name
        finally:
            self.stop(action_name)

    def setup(self, stage: str, local_rank: int | None = None, log_dir: str | None = None) -> None:
        """Called when a fit/validate/test/predict call begins."""
        self._stage, self._local_rank = stage, local_rank
        self.dirpath = self.dirpath or log_dir

    def teardown(self, stage: str | None) -> None:
        """Called after ``describe`` (or when the call fails): release what recording holds."""

    def describe(self) -> None:
        """Print the report, or append it to ``dirpath/<stage>-<filename>.txt`` when a filename was given."""
        report = self.summary()
        if report:
            self._write_report(report)
        self.teardown(self._stage)

    def _write_report(self, report: str) -> None:
        """Print on global rank 0; with a filename every process writes its own file (the rank is in the name)."""
        if not (self.filename and self.dirpath):
            if rank_zero_only.rank == 0:  # type: ignore[attr-defined]
                print(report)
            return
        from fsspec.core import url_to_fs

        path = _join(os.fspath(self.dirpath), self._prepare_filename())
        fs, _ = url_to_fs(path)
        fs.makedirs(os.fspath(self.dirpath), exist_ok=True)
        with fs.open(path, "a") as f:
            f.write(report + os.linesep)

    def _prepare_filename(self, action_name: str | None = None, extension: str = ".txt") -> str:
        """``<stage>-<filename>[-<rank>][-<action>]<extension>``, safe for any file system."""
        parts = [self._stage, self.filename, None if self._local_rank is None else str(self._local_rank), action_name]
        name = "-".join(p for p in parts if p)
        name = re.sub(r"_+", "_", re.sub(r'[\\/:*?"<>|\s]', "_", name)).strip()
        return (name or "profile") + extension

    def _header(self) -> str:
        return f"{self._stage.upper() + ' ' if self._stage else ''}Profiler Report"

    @property
    def local_rank(self) -> int:
        return self._local_rank or 0


class PassThroughProfiler(Profiler):
    """The null profiler: records nothing. The Trainer does not even wrap its hooks for it."""

    _NULL = contextlib.nullcontext()

    def start(self, action_name: str) -> None:
        pass

    def stop(self, action_name: str) -> None:
        pass

    def profile(self, action_name: str) -> contextlib.AbstractContextManager:  # type: ignore[override]
        return self._NULL


class SimpleProfiler(Profiler):
    """Wall-clock time per action: number of calls, mean and total duration, share of the run.

    Args:
        extended: also show the number of calls and each action's percentage of the run's time.
    """

    def __init__(self, dirpath: str | Path | None = None, filename: str | None = None, extended: bool = True) -> None:
        super().__init__(dirpath=dirpath, filename=filename)
        self.extended = extended
        self.current_actions: dict[str, float] = {}
        self.recorded_durations: dict[str, list[float]] = defaultdict(list)
        self.start_time = time.monotonic()

    def setup(self, stage: str, local_rank: int | None = None, log_dir: str | None = None) -> None:
        super().setup(stage, local_rank, log_dir)
        self.current_actions.clear()
        self.recorded_durations.clear()  # each report covers one call
        self.start_time = time.monotonic()

    def start(self, action_name: str) -> None:
        if action_name in self.current_actions:
            raise ValueError(f"SimpleProfiler: action {action_name!r} was started twice without a stop in between.")
        self.current_actions[action_name] = time.perf_counter()

    def stop(self, action_name: str) -> None:
        end = time.perf_counter()
        begin = self.current_actions.pop(action_name, None)
        if begin is None:
            raise ValueError(f"SimpleProfiler: cannot stop action {action_name!r}, which was never started.")
        self.recorded_durations[action_name].append(end - begin)

    def summary(self) -> str:
        if not self.recorded_durations:
            return ""
        rows = sorted(((name, sum(d), len(d)) for name, d in self.recorded_durations.items()),
                      key=lambda row: row[1], reverse=True)
        run_time = max(time.monotonic() - self.start_time, 1e-12)
        width = max(len("Action"), *(len(name) for name, _, _ in rows))
        if self.extended:
            header = ["Mean duration (s)", "Num calls", "Total time (s)", "Percentage %"]
            calls = sum(n for _, _, n in rows)
            lines = [_row("Total", ["-", str(calls), f"{run_time:.6g}", "100 %"], width)]
            lines += [_row(name, [f"{total / n:.6g}", str(n), f"{total:.6g}", f"{100 * total / run_time:.4g}"],
                           width) for name, total, n in rows]
        else:
            header = ["Mean duration (s)", "Total time (s)"]
            lines = [_row(name, [f"{total / n:.6g}", f"{total:.6g}"], width) for name, total, n in rows]
        rule = "-" * len(_row("Action", header, width))
        return os.linesep.join([self._header(), "", rule, _row("Action", header, width), rule, *lines, rule])


def _row(name: str, cells: list[str], width: int) -> str:
    return f"|  {name:<{width}}  |" + "".join(f"  {cell:<17}  |" for cell in cells)


class AdvancedProfiler(Profiler):
    """``cProfile`` statistics per action: which functions the time of each action went to.

    Nested actions are recorded exclusively: while ``run_training_batch`` runs ``training_step``, the
    functions called belong to ``training_step`` only (one ``cProfile`` is active at a time).

    Args:
        line_count_restriction: how many functions each action lists: an int, or a fraction of them.
        dump_stats: also write each action's raw statistics to ``dirpath`` (``.prof``, for snakeviz etc.).
    """

    def __init__(self, dirpath: str | Path | None = None, filename: str | None = None,
                 line_count_restriction: float = 1.0, dump_stats: bool = False) -> None:
        super().__init__(dirpath=dirpath, filename=filename)
        self.line_count_restriction = line_count_restriction
        self.dump_stats = dump_stats
        self.profiled_actions: dict[str, Any] = {}  # action -> cProfile.Profile
        self._active: list[str] = []

    def setup(self, stage: str, local_rank: int | None = None, log_dir: str | None = None) -> None:
        super().setup(stage, local_rank, log_dir)
        self.profiled_actions.clear()
        self._active.clear()

    def start(self, action_name: str) -> None:
        if self._active:
            self.profiled_actions[self._active[-1]].disable()
        self._active.append(action_name)
        import cProfile

        self.profiled_actions.setdefault(action_name, cProfile.Profile()).enable()

    def stop(self, action_name: str) -> None:
        if action_name not in self._active:
            raise ValueError(f"AdvancedProfiler: cannot stop action {action_name!r}, which was never started.")
        self.profiled_actions[action_name].disable()
        self._active.remove(action_name)
        if self._active:
            self.profiled_actions[self._active[-1]].enable()

    def summary(self) -> str:
        import pstats

        sections = [self._header()]
        for name, profile in self.profiled_actions.items():
            if self.dump_stats and self.dirpath:
                self._dump(name, profile)
            out = io.StringIO()
            pstats.Stats(profile, stream=out).strip_dirs().sort_stats("cumulative").print_stats(
                self.line_count_restriction)
            sections += [f"Profile stats for: {name}", out.getvalue()]
        return os.linesep.join(sections) if len(sections) > 1 else ""

    def _dump(self, action_name: str, profile: Any) -> None:
        from fsspec.core import url_to_fs

        path = _join(os.fspath(self.dirpath), self._prepare_filename(action_name, ".prof"))  # type: ignore[arg-type]
        fs, _ = url_to_fs(path)
        fs.makedirs(os.fspath(self.dirpath), exist_ok=True)  # type: ignore[arg-type]
        profile.create_stats()
        with fs.open(path, "wb") as f:
            f.write(marshal.dumps(profile.stats))  # the format pstats.Stats(path) reads

    def teardown(self, stage: str | None) -> None:
        for name in self._active:
            self.profiled_actions[name].disable()
        self._active.clear()

    def __reduce__(self) -> tuple:  # cProfile objects cannot be pickled: a copy starts empty
        return (type(self), (self.dirpath, self.filename, self.line_count_restriction, self.dump_stats))


class PyTorchProfiler(Profiler):
    """``torch.profiler``: operator-level CPU (and CUDA) times, and a Chrome trace of the whole call.

    Each action becomes a ``record_function`` range in the trace. The trace is written to
    ``dirpath/<stage>[-<filename>].pt.trace.json`` (open it in ``chrome://tracing`` or Perfetto) when
    ``export_to_chrome``; the report is the operator table (``key_averages().table(...)``).

    Args:
        group_by_input_shapes: one table row per (operator, input shapes); records shapes.
        emit_nvtx: emit NVTX ranges for ``nvprof``/Nsight instead of recording (no report, no trace).
        export_to_chrome: write the Chrome trace.
        row_limit: rows in the report table (-1: all).
        sort_by_key: the table's sort column (default ``cuda_time_total`` with CUDA, else ``cpu_time_total``).
        record_module_names: label each submodule's forward in the trace with the submodule's name.
        table_kwargs: more arguments for ``key_averages().table``.
        profiler_kwargs: passed to ``torch.profiler.profile`` (``activities``, ``schedule``,
            ``profile_memory``, ``with_stack``, ...). With a ``schedule``, the profiler steps once per
            training batch.
    """

    def __init__(self, dirpath: str | Path | None = None, filename: str | None = None,
                 group_by_input_shapes: bool = False, emit_nvtx: bool = False, export_to_chrome: bool = True,
                 row_limit: int = 20, sort_by_key: str | None = None, record_module_names: bool = True,
                 table_kwargs: dict[str, Any] | None = None, **profiler_kwargs: Any) -> None:
        super().__init__(dirpath=dirpath, filename=filename)
        self.group_by_input_shapes = group_by_input_shapes or bool(profiler_kwargs.get("record_shapes", False))
        self.emit_nvtx = emit_nvtx
        self.export_to_chrome = export_to_chrome
        self.row_limit = row_limit
        self.sort_by_key = sort_by_key
        self.record_module_names = record_module_names
        self.table_kwargs = table_kwargs or {}
        self.profiler_kwargs = profiler_kwargs
        self.trace_path: str | None = None  # where the last trace was written
        self._profiler: Any = None
        self._closed = False
        self._ranges: dict[str, list[Any]] = defaultdict(list)
        self._module_hooks: list[Any] = []

    def start(self, action_name: str) -> None:
        if self._profiler is None:
            self._profiler = self._new_profiler()
            self._profiler.__enter__()
        record = torch.profiler.record_function(action_name)
        record.__enter__()
        self._ranges[action_name].append(record)

    def stop(self, action_name: str) -> None:
        ranges = self._ranges.get(action_name)
        if not ranges:
            raise ValueError(f"PyTorchProfiler: cannot stop action {action_name!r}, which was never started.")
        ranges.pop().__exit__(None, None, None)
        if action_name == "run_training_batch" and "schedule" in self.profiler_kwargs:
            self._profiler.step()

    def _new_profiler(self) -> Any:
        if self.emit_nvtx:
            return torch.autograd.profiler.emit_nvtx(record_shapes=self.group_by_input_shapes)
        kwargs = dict(self.profiler_kwargs)
        kwargs.setdefault("record_shapes", self.group_by_input_shapes)
        if "activities" not in kwargs:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            kwargs["activities"] = activities
        return torch.profiler.profile(**kwargs)

    def _attach_module(self, module: Any) -> None:
        """Label each submodule's forward with its name (``record_module_names``)."""
        if not self.record_module_names or self.emit_nvtx:
            return
        for name, sub in module.named_modules():
            if not name:
                continue
            label = f"[module]{type(sub).__module__}.{type(sub).__name__}: {name}"
            stack: list[Any] = []

            def enter(_mod: Any, _inputs: Any, label: str = label, stack: list[Any] = stack) -> None:
                record = torch.profiler.record_function(label)
                record.__enter__()
                stack.append(record)

            def leave(_mod: Any, _inputs: Any, _output: Any, stack: list[Any] = stack) -> None:
                if stack:
                    stack.pop().__exit__(None, None, None)

            self._module_hooks += [sub.register_forward_pre_hook(enter), sub.register_forward_hook(leave)]

    def summary(self) -> str:
        if self._profiler is None:
            return ""
        self._close()
        if self.emit_nvtx:
            return ""
        if self.export_to_chrome:
            self._export_trace()
        sort_by = self.sort_by_key or ("cuda_time_total" if _has_cuda_events(self._profiler) else "cpu_time_total")
        table = self._profiler.key_averages(group_by_input_shape=self.group_by_input_shapes).table(
            sort_by=sort_by, row_limit=self.row_limit, **self.table_kwargs)
        return os.linesep.join([self._header(), "Profile stats for: records", table])

    def _export_trace(self) -> None:
        from fsspec.core import url_to_fs

        dirpath = os.fspath(self.dirpath or os.getcwd())
        path = _join(dirpath, self._prepare_filename(extension=".pt.trace.json"))
        fs, local_path = url_to_fs(path)
        fs.makedirs(dirpath, exist_ok=True)
        if "://" not in path or path.startswith("file://"):
            self._profiler.export_chrome_trace(local_path)
        else:  # torch writes local files only: go through a temporary one
            with tempfile.TemporaryDirectory() as tmp:
                self._profiler.export_chrome_trace(os.path.join(tmp, "trace.json"))
                fs.put_file(os.path.join(tmp, "trace.json"), path)
        self.trace_path = path

    def _close(self) -> None:
        for ranges in self._ranges.values():
            while ranges:
                ranges.pop().__exit__(None, None, None)
        for handle in self._module_hooks:
            handle.remove()
        self._module_hooks = []
        if self._profiler is not None and not self._closed:
            self._profiler.__exit__(None, None, None)
            self._closed = True

    def setup(self, stage: str, local_rank: int | None = None, log_dir: str | None = None) -> None:
        super().setup(stage, local_rank, log_dir)
        self._profiler, self._closed = None, False

    def teardown(self, stage: str | None) -> None:
        self._close()


def _has_cuda_events(profiler: Any) -> bool:
    activities = getattr(profiler, "activities", ()) or ()
    return torch.profiler.ProfilerActivity.CUDA in activities


def _join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}" if "://" in base else os.path.join(base, name)


_PROFILERS: dict[str, Callable[[], Profiler]] = {
    "simple": SimpleProfiler, "advanced": AdvancedProfiler, "pytorch": PyTorchProfiler,
}


def _select_profiler(profiler: Profiler | str | None, barebones: bool = False) -> Profiler:
    """``Trainer(profiler=...)``: None, "simple", "advanced", "pytorch" or a Profiler instance."""
    if profiler is None:
        return PassThroughProfiler()
    if barebones:
        raise MisconfigurationException(f"Trainer(barebones=True) turns profiling off, but profiler={profiler!r} "
                                        "was passed; drop it or set barebones=False.")
    if isinstance(profiler, Profiler):
        return profiler
    if isinstance(profiler, str) and profiler.lower() in _PROFILERS:
        return _PROFILERS[profiler.lower()]()
    raise MisconfigurationException(f"Trainer(profiler={profiler!r}) is not valid; use None, 'simple', 'advanced', "
                                    "'pytorch' or an instance of ember.profilers.Profiler.")


# -- instrumenting a trainer for the duration of one call ---------------------------------------
def _attach(trainer: Trainer) -> None:
    """Set the profiler up for this call and route the trainer's hooks and steps through it.

    The originals stay on the classes; the profiled versions are instance attributes that ``_detach``
    deletes, so a trainer without a profiler never pays for any of this.
    """
    profiler = trainer.profiler
    if isinstance(profiler, PassThroughProfiler):
        return
    _detach(trainer, describe=False)  # leftovers of a call that could not clean up (never wrap twice)
    profiler.setup(stage=trainer.state.fn.value, local_rank=trainer.local_rank if trainer.world_size > 1 else None,
                   log_dir=trainer.log_dir)
    if isinstance(profiler, PyTorchProfiler):
        profiler._attach_module(trainer.lightning_module)
    open_markers: set[str] = set()

    def mark(action: str, begin: bool) -> None:
        if begin and action not in open_markers:
            open_markers.add(action)
            profiler.start(action)
        elif not begin and action in open_markers:
            open_markers.discard(action)
            profiler.stop(action)

    trainer.__dict__.update(
        _hook=_profiled_hook(trainer, profiler, mark),
        _module_hook=_profiled_module_hook(trainer, profiler),
        _to_device=_profiled_call(profiler, f"[Strategy]{type(trainer.strategy).__name__}.batch_to_device",
                                  trainer._to_device),
        _profiler_markers=(open_markers, mark),
    )
    precision = trainer.strategy.precision
    precision.__dict__["forward_context"] = _profiled_forward_context(trainer, profiler, precision.forward_context)


def _detach(trainer: Trainer, describe: bool) -> None:
    """Undo ``_attach``; print or write the report when the call succeeded."""
    if "_profiler_markers" not in trainer.__dict__:
        return
    open_markers, mark = trainer.__dict__.pop("_profiler_markers")
    for action in list(open_markers):
        mark(action, False)
    for name in ("_hook", "_module_hook", "_to_device"):
        trainer.__dict__.pop(name, None)
    trainer.strategy.precision.__dict__.pop("forward_context", None)
    if describe:
        trainer.profiler.describe()
    else:
        trainer.profiler.teardown(trainer.profiler._stage)


def _profiled_hook(trainer: Trainer, profiler: Profiler, mark: Callable[[str, bool], None]) -> Callable[..., Any]:
    """``Trainer._hook`` with each callback's and the module's part timed, plus the epoch/batch markers."""
    def hook(name: str, *args: Any) -> Any:
        early, late, module_has = trainer._hooks_for(name)
        module = trainer._module
        if name == "on_train_batch_end":
            mark("run_training_batch", False)
        elif name == "on_train_epoch_start":
            mark("run_training_epoch", True)
        module.__dict__["_current_fx_name"] = name  # type: ignore[union-attr]
        for fn in early:
            with profiler.profile(_callback_action(fn, name)):
                fn(trainer, module, *args)
        out = None
        if module_has:
            with profiler.profile(f"[LightningModule]{type(module).__name__}.{name}"):
                out = getattr(module, name)(*args)
        if late:
            module.__dict__["_current_fx_name"] = name  # type: ignore[union-attr]
            for fn in late:
                with profiler.profile(_callback_action(fn, name)):
                    fn(trainer, module, *args)
        if name == "on_train_batch_start" and out != -1:
            mark("run_training_batch", True)
        elif name == "on_train_epoch_end":
            mark("run_training_epoch", False)
        return out

    return hook


def _callback_action(fn: Callable[..., Any], hook: str) -> str:
    owner = getattr(fn, "__self__", None)
    return f"[Callback]{owner.state_key if isinstance(owner, Callback) else getattr(fn, '__qualname__', fn)}.{hook}"


def _profiled_module_hook(trainer: Trainer, profiler: Profiler) -> Callable[..., Any]:
    original = trainer._module_hook

    def module_hook(name: str, *args: Any, **kwargs: Any) -> Any:
        with profiler.profile(f"[LightningModule]{type(trainer._module).__name__}.{name}"):
            return original(name, *args, **kwargs)

    return module_hook


def _profiled_call(profiler: Profiler, action: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        with profiler.profile(action):
            return fn(*args, **kwargs)

    return call


def _profiled_forward_context(trainer: Trainer, profiler: Profiler,
                              original: Callable[[], contextlib.AbstractContextManager]) -> Callable[..., Any]:
    """Every ``*_step`` runs inside the precision's forward context, right after the loop names it."""
    @contextlib.contextmanager
    def forward_context() -> Generator[None, None, None]:
        module = trainer._module
        with profiler.profile(f"[LightningModule]{type(module).__name__}.{module._current_fx_name}"), original():
            yield

    return forward_context
