"""Record the reference results of every parity scenario with real PyTorch Lightning.

Usage (from the repository root)::

    /tmp/plvenv/bin/python tests/parity/record_lightning.py

Writes ``tests/parity/lightning_2_6.json``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # repository root, so ``tests.parity`` imports

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402

from tests.parity import REFERENCE_PATH  # noqa: E402
from tests.parity.scenarios import SCENARIOS  # noqa: E402


def main() -> None:
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    only = set(sys.argv[1:])
    results = {}
    for name, fn in SCENARIOS.items():
        if only and name not in only:
            continue
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            first = fn(pl, Path(tmp))
        with tempfile.TemporaryDirectory() as tmp:
            second = fn(pl, Path(tmp))
        if json.dumps(first) != json.dumps(second):
            raise SystemExit(f"scenario {name!r} is not deterministic")
        results[name] = first
        print(f"{name:40s} {time.perf_counter() - start:6.2f}s (ran twice)")
    out = {
        "meta": {
            "lightning_version": pl.__version__,
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
        },
        "scenarios": results,
    }
    REFERENCE_PATH.write_text(json.dumps(out, indent=1, sort_keys=False) + "\n")
    print(f"wrote {REFERENCE_PATH} ({os.path.getsize(REFERENCE_PATH) / 1024:.1f} KiB)")


if __name__ == "__main__":
    main()
