"""Import cost: ``import torch`` vs ``import ember`` vs ``import pytorch_lightning``, in fresh interpreters.

    python benchmarks/import_time.py              # median of 7 fresh subprocesses per target
    python benchmarks/import_time.py -n 15 --top 15 --json imports.json

Each sample is a new interpreter that times ``import torch`` and then, with torch already loaded,
``import <target>``: the second number is the target's own cost beyond torch (what a user pays on
top of the torch import they pay anyway). Runs alternate between targets. The interpreter start-up
itself is not counted. One untimed import per target comes first: it fills a private bytecode cache
(``PYTHONPYCACHEPREFIX``), because installed packages ship compiled bytecode while a checkout run
with ``PYTHONDONTWRITEBYTECODE=1`` would compile every ember file on every import (``--cold``
measures exactly that).

It also reports which heavy optional packages are in ``sys.modules`` after the import (ember must
import only torch and small pure-Python dependencies), and with ``--top K`` the K slowest modules
the target pulls in beyond torch, from ``python -X importtime`` (cumulative microseconds).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import REPO, find_lightning_python  # noqa: E402

HEAVY = ("torch._dynamo", "torch._inductor", "tensorboard", "tensorboardX", "mlflow", "wandb", "rich", "jsonargparse",
         "deepspeed", "torchmetrics", "lightning_utilities", "pandas", "matplotlib", "scipy", "sklearn", "yaml",
         "fsspec", "tqdm", "numpy", "packaging", "aiohttp")

_PROBE = """
import json, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
before = set(sys.modules)
import importlib
importlib.import_module({target!r})
t2 = time.perf_counter()
heavy = {{name: name in sys.modules for name in {heavy!r}}}
print("RESULT " + json.dumps({{"torch_s": t1 - t0, "extra_s": t2 - t1, "new_modules": len(set(sys.modules) - before),
                               "heavy": heavy}}))
"""


_CACHE = os.path.join(tempfile.gettempdir(), "ember-bench-pycache")
_cold = False


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if not _cold:
        # Installed packages (torch, Lightning) come with compiled bytecode; a source checkout run with
        # PYTHONDONTWRITEBYTECODE=1 has none and would pay for compiling every ember file on every
        # import. A private bytecode cache, filled by one untimed import, puts ember on the same footing.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = _CACHE
    return env


def probe(python: str, target: str) -> dict:
    code = _PROBE.format(target=target, heavy=HEAVY)
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, env=_env(), cwd=str(REPO), timeout=300)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"import of {target} failed with {python}:\n{proc.stderr[-3000:]}")


def slowest_modules(python: str, target: str, top: int) -> list[tuple[str, float]]:
    """The ``top`` modules with the largest cumulative import time that ``import target`` adds beyond torch."""
    code = f"import torch; import {target}"
    proc = subprocess.run([python, "-X", "importtime", "-c", code], capture_output=True, text=True, env=_env(),
                          cwd=str(REPO), timeout=300)
    rows: list[tuple[str, int]] = []
    for line in proc.stderr.splitlines():  # "import time:  <self us> | <cumulative us> | <indented name>"
        parts = line[len("import time:"):].split("|") if line.startswith("import time:") else []
        if len(parts) == 3 and parts[1].strip().isdigit():
            rows.append((parts[2].rstrip(), int(parts[1])))
    # modules imported after torch finished: everything after the last line of torch's own import
    torch_end = max(i for i, (name, _) in enumerate(rows) if name.strip() == "torch")
    rows = rows[torch_end + 1:]
    seen_target = any(name.strip() == target for name, _ in rows)
    if not seen_target:
        return []
    return sorted(rows, key=lambda r: -r[1])[:top]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--samples", type=int, default=7, help="fresh subprocesses per target")
    parser.add_argument("--top", type=int, default=0, help="also list the K slowest modules each target adds")
    parser.add_argument("--lightning-python", default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--cold", action="store_true",
                        help="no bytecode cache for the checkout: include compiling ember's sources (as with "
                             "PYTHONDONTWRITEBYTECODE=1 in a source checkout)")
    args = parser.parse_args(argv)
    global _cold
    _cold = args.cold

    targets: dict[str, tuple[str, str]] = {"torch": (sys.executable, "torch"), "ember": (sys.executable, "ember")}
    lightning_python = find_lightning_python(args.lightning_python)
    if lightning_python is None:
        print("Lightning is not importable: skipped.", file=sys.stderr)
    else:
        module = "pytorch_lightning" if subprocess.run(
            [lightning_python, "-c", "import importlib.util as u, sys; sys.exit(not u.find_spec('pytorch_lightning'))"],
            capture_output=True).returncode == 0 else "lightning.pytorch"
        targets[module] = (lightning_python, module)

    for python, target in targets.values():  # untimed: fills the bytecode cache, warms the file cache
        probe(python, target)
    samples: dict[str, list[dict]] = {name: [] for name in targets}
    for _ in range(args.samples):
        for name, (python, target) in targets.items():
            samples[name].append(probe(python, target))

    print(f"\nimport cost, median of {args.samples} fresh interpreters (python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, {'no bytecode cache for ember' if args.cold else 'bytecode cached'})")
    print(f"{'target':20s} {'import torch s':>14s} {'extra beyond torch s':>21s} {'min':>7s} {'max':>7s} "
          f"{'new modules':>12s}")
    summary = {}
    for name, runs in samples.items():
        torch_s = statistics.median(r["torch_s"] for r in runs)
        extra = [r["extra_s"] for r in runs]
        summary[name] = {"torch_s": torch_s, "extra_s": statistics.median(extra), "extra_min_s": min(extra),
                         "extra_max_s": max(extra), "new_modules": runs[0]["new_modules"], "heavy": runs[0]["heavy"],
                         "python": targets[name][0]}
        print(f"{name:20s} {torch_s:14.3f} {statistics.median(extra):21.3f} {min(extra):7.3f} {max(extra):7.3f} "
              f"{runs[0]['new_modules']:12d}")

    print("\nheavy/optional modules in sys.modules after the import (x = loaded)")
    names = list(summary)
    print(f"{'module':22s}" + "".join(f"{n:>20s}" for n in names))
    for module in HEAVY:
        print(f"{module:22s}" + "".join(f"{'x' if summary[n]['heavy'][module] else '-':>20s}" for n in names))

    if args.top:
        for name, (python, target) in targets.items():
            if target == "torch":
                continue
            rows = slowest_modules(python, target, args.top)
            summary[name]["slowest_modules"] = rows
            print(f"\nslowest modules imported by `import {target}` after torch (cumulative ms, -X importtime):")
            for module, cumulative_us in rows:
                print(f"  {cumulative_us / 1000:8.1f}  {module}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
