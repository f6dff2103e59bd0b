"""Plot the metrics of CSVLogger runs: ``plot_metrics(["logs/version_0", "logs/version_1"], "runs.png")``.

Or from a shell: ``ember plot lightning_logs/version_0 lightning_logs/version_1 -o runs.html``.

One subplot per metric (losses, accuracies, learning rates from ``LearningRateMonitor`` ...) against the
logger's step, one line per run. The output format follows the file name: ``.png``, ``.svg``, ``.pdf``,
or ``.html`` (a self-contained page with the figure as inline SVG and a table of each run's last values).
Needs matplotlib (``pip install 'ember[plot]'``); it draws off-screen, no display needed.
"""

from __future__ import annotations

import csv
import html
import io
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["plot_metrics"]

_NOT_METRICS = ("step", "epoch")


def plot_metrics(log_dirs: str | os.PathLike | Iterable[str | os.PathLike], output: str | os.PathLike = "metrics.png",
                 metrics: Iterable[str] | None = None) -> Path:
    """Draw the metrics of one or several CSVLogger runs to ``output``; return its path.

    Args:
        log_dirs: run directories (holding ``metrics.csv``), ``metrics.csv`` files, or directories above
            runs (``lightning_logs`` plots every ``version_*`` below it).
        output: the file to write; its suffix picks the format (png, svg, pdf or html).
        metrics: the columns to plot (default: every logged metric, ``epoch`` and ``step`` aside).
    """
    runs = _load_runs([log_dirs] if isinstance(log_dirs, (str, os.PathLike)) else list(log_dirs))
    names = list(metrics) if metrics is not None else sorted(
        {name for _, table in runs for name, column in table.items()
         if name not in _NOT_METRICS and any(v is not None for v in column)})
    missing = [name for name in names if not any(name in table for _, table in runs)]
    if missing or not names:
        known = sorted({name for _, table in runs for name in table if name not in _NOT_METRICS})
        raise ValueError(f"plot_metrics: {'no metrics to plot' if not names else f'unknown metrics {missing}'}; the "
                         f"runs logged {known}.")
    output = Path(output)
    figure = _draw(runs, names)
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix.lower() in (".html", ".htm"):
        output.write_text(_html_page(runs, names, figure), encoding="utf-8")
    else:
        figure.savefig(output, dpi=110)
    return output


def _load_runs(paths: list[str | os.PathLike]) -> list[tuple[str, dict[str, list[float | None]]]]:
    """(label, {column: values}) per run, with labels just long enough to tell the runs apart."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_file():
            files.append(path)
        elif (path / "metrics.csv").is_file():
            files.append(path / "metrics.csv")
        else:
            found = sorted(path.rglob("metrics.csv"), key=_natural_key)
            if not found:
                raise FileNotFoundError(f"plot_metrics: no metrics.csv in {str(path)!r}; pass a CSVLogger run "
                                        "directory (such as lightning_logs/version_0) or a metrics.csv file.")
            files.extend(found)
    return list(zip(_labels([f.resolve().parent for f in files]), map(_read_csv, files)))


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in str(path).replace("_", "/").split("/")]


def _labels(dirs: list[Path]) -> list[str]:
    for depth in range(1, max(len(d.parts) for d in dirs) + 1):
        labels = ["/".join(d.parts[-depth:]) for d in dirs]
        if len(set(labels)) == len(labels):
            return labels
    return [str(d) for d in dirs]


def _read_csv(path: Path) -> dict[str, list[float | None]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    columns = list(rows[0]) if rows else []
    return {name: [_number(row.get(name)) for row in rows] for name in columns}


def _number(text: str | None) -> float | None:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _is_learning_rate(name: str) -> bool:
    lowered = name.lower()
    return lowered.startswith(("lr-", "lr_", "lr/")) or lowered == "lr" or "learning_rate" in lowered


def _draw(runs: list[tuple[str, dict[str, list[float | None]]]], names: list[str]) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ModuleNotFoundError("ember plot needs matplotlib: pip install 'ember[plot]' (or pip install "
                                  "matplotlib).") from err
    cols = 1 if len(names) == 1 else 2
    rows = math.ceil(len(names) / cols)
    figure = Figure(figsize=(6.0 * cols, 3.6 * rows), layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False).flatten()
    for ax, name in zip(axes, names):
        for label, table in runs:
            steps = table.get("step") or list(range(len(table.get(name, []))))
            points = [(s, v) for s, v in zip(steps, table.get(name, [])) if s is not None and v is not None]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, label=label, marker="o" if len(points) <= 20 else None, markersize=3)
        values = [v for _, table in runs for v in table.get(name, []) if v is not None]
        if _is_learning_rate(name) and values and min(values) > 0 and max(values) > 10 * min(values):
            ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        if len(runs) > 1:
            ax.legend(fontsize="small")
    for ax in axes[len(names):]:
        ax.set_visible(False)
    return figure


def _html_page(runs: list[tuple[str, dict[str, list[float | None]]]], names: list[str], figure: Any) -> str:
    svg = io.StringIO()
    figure.savefig(svg, format="svg")
    svg_text = svg.getvalue()
    svg_text = svg_text[svg_text.find("<svg"):]  # drop the XML prolog and doctype: the SVG sits inside HTML
    head = "".join(f"<th>{html.escape(name)}</th>" for name in names)
    body = ""
    for label, table in runs:
        cells = ""
        for name in names:
            last = next((v for v in reversed(table.get(name, [])) if v is not None), None)
            cells += f"<td>{'' if last is None else f'{last:.6g}'}</td>"
        body += f"<tr><th>{html.escape(label)}</th>{cells}</tr>"
    return ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>ember metrics</title><style>"
            "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style></head><body>"
            f"<h1>Metrics of {len(runs)} run{'s' if len(runs) > 1 else ''}</h1>"
            f"<table><tr><th>run (last value)</th>{head}</tr>{body}</table>{svg_text}</body></html>\n")
