"""The benchmark tooling runs and its outputs fit together (no timing is asserted: speed lives in benchmarks/)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

_BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_paired_overhead_run_feeds_the_plot(tmp_path: Any) -> None:
    out, png = tmp_path / "paired.json", tmp_path / "paired.png"
    run = subprocess.run([sys.executable, str(_BENCHMARKS / "overhead.py"), "--paired", "2", "--epochs", "1",
                          "--warmup-epochs", "1", "--frameworks", "hand,ember", "--data", "prebatched",
                          "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "2 rounds of 128-step runs" in run.stdout
    report = json.loads(out.read_text())
    assert report["meta"]["paired"] == 2 and not report["meta"]["defaults"]
    rows = report["results"]["prebatched"]
    assert set(rows) == {"hand", "ember"}
    assert rows["hand"]["x_hand_cpu_ms_per_step"] == 1.0
    assert len(rows["ember"]["rounds_cpu_ms_per_step"]) == 2
    assert rows["ember"]["x_hand_q1"] <= rows["ember"]["x_hand_cpu_ms_per_step"] <= rows["ember"]["x_hand_q3"]
    plot = subprocess.run([sys.executable, str(_BENCHMARKS / "plot.py"), str(out), "-o", str(png)],
                          capture_output=True, text=True, timeout=120)
    assert plot.returncode == 0, plot.stderr[-2000:]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
