"""GPU training throughput of ember against a hand-written PyTorch loop and against Lightning.

A decoder-only transformer LM (token + learned position embedding, pre-LayerNorm blocks with
``F.scaled_dot_product_attention(is_causal=True)`` and a 4x GELU MLP, final LayerNorm, untied linear head)
trains on random tokens in ``bf16-mixed`` with AdamW (``fused=False``, foreach default), three ways that do
the same tensor work: a hand loop (autocast forward + cross-entropy, backward, step, ``zero_grad``), ember and
Lightning (same module code; ``self.log("loss", loss)`` every step; no logger, progress bar, checkpointing,
model summary, sanity check or validation).

    python benchmarks/gpu.py                            # presets small and medium on cuda
    python benchmarks/gpu.py --preset small
    python benchmarks/gpu.py --preset medium --json out.json
    python benchmarks/gpu.py --frameworks hand,ember --repeats 5
    python benchmarks/gpu.py --device cpu --preset tiny --steps 20 --repeats 1   # smoke test without a GPU

Method:
- Data: ``warmup + sync_steps + steps`` batches of random tokens, drawn once from a seeded generator,
  pre-batched and already on the device (data loading is not measured). Weights come from
  ``torch.manual_seed(0)``: same data and initial weights for every framework (compare ``final loss``).
- Every (framework, repeat) runs in a fresh subprocess (``--worker NAME``), alternating hand, ember,
  lightning, hand, ...; the table shows medians over ``--repeats``. Lightning runs from an interpreter that
  can import it (this one, ``$LIGHTNING_PYTHON``, ``/tmp/plvenv/bin/python`` or ``--lightning-python``);
  otherwise, or when its worker fails, it is reported and skipped.
- One run = ``--warmup`` steps (not timed), then ``--sync-steps`` steps with
  ``torch.cuda.set_sync_debug_mode("warn")``: the "called a synchronizing CUDA operation" UserWarnings
  raised in that window are counted (syncs/step; none of these steps logs to a logger; goal 0), then the
  timed window of ``--steps`` steps, with ``torch.cuda.synchronize()`` at both ends. For ember/Lightning the
  marks are set from the module's ``on_train_batch_start`` (at the start of a step) and ``on_train_end``.
  The debug mode only finds syncs that torch instruments (``.item()``, copies to host, ``nonzero``, ...).
- ms/step = window / steps; tokens/s = batch * seq / (ms/step); MFU = FLOPs/token * tokens/s / peak, with
  FLOPs/token = 6 * N + 12 * n_layers * d_model * seq, N the non-embedding parameters (the head counts, the
  token and position embeddings do not); the second term is attention scores and values (full, not halved
  for the causal mask). Peak dense bf16 TFLOP/s: ``--peak-tflops`` or from the device name (H100 SXM 989,
  H100 PCIe 756, H200 989, A100 312). Peak memory is ``torch.cuda.max_memory_allocated``.
- Goal of the performance issue: ember / hand <= 1.02 per step on the medium model, and 0 syncs/step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import PreBatched, find_lightning_python, import_framework, run_worker  # noqa: E402

FRAMEWORKS = ("hand", "ember", "lightning")
PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(d_model=64, n_layers=2, n_heads=2, seq=32, vocab=256, batch=4),
    "small": dict(d_model=256, n_layers=4, n_heads=4, seq=256, vocab=8192, batch=32),
    "medium": dict(d_model=1024, n_layers=12, n_heads=16, seq=1024, vocab=32768, batch=8),
}
PEAK_TFLOPS = (("H100", "PCIE", 756.0), ("H100", "", 989.0), ("H200", "", 989.0), ("A100", "", 312.0))
LR = 3e-4


class Block(nn.Module):
    """Pre-LayerNorm causal self-attention + MLP."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv, self.proj = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        x = x + self.proj(F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class LM(nn.Module):
    """Decoder-only transformer language model."""

    def __init__(self, d_model: int, n_layers: int, n_heads: int, seq: int, vocab: int, **_: int) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d_model), nn.Embedding(seq, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads) for _ in range(n_layers))
        self.ln_f, self.head = nn.LayerNorm(d_model), nn.Linear(d_model, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos.weight[: idx.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x))


def make_model(cfg: dict[str, int]) -> LM:
    torch.manual_seed(0)
    return LM(**cfg)


def lm_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(model(x).flatten(0, 1), y.flatten())


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.1, fused=False)


def make_batches(cfg: dict[str, int], n: int, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1234)
    tokens = torch.randint(cfg["vocab"], (n, cfg["batch"], cfg["seq"] + 1), generator=generator)
    return [(t[:, :-1].contiguous().to(device), t[:, 1:].contiguous().to(device)) for t in tokens]


def model_stats(model: LM, cfg: dict[str, int]) -> dict[str, int]:
    n_params = sum(p.numel() for p in model.parameters())
    non_emb = n_params - model.tok.weight.numel() - model.pos.weight.numel()
    flops = 6 * non_emb + 12 * cfg["n_layers"] * cfg["d_model"] * cfg["seq"]
    return dict(n_params=n_params, n_params_non_embedding=non_emb, flops_per_token=flops)


class Probe:
    """Counts syncs over steps [warmup, warmup + sync_steps), then times the rest; ``step(i)`` starts step i."""

    def __init__(self, device: torch.device, warmup: int, sync_steps: int) -> None:
        self.cuda, self.warmup, self.sync_steps = device.type == "cuda", warmup, sync_steps
        self.syncs: int | None = None
        self.t_start = self.t_end = 0.0
        self._catch: warnings.catch_warnings | None = None
        self._records: list = []

    def step(self, i: int) -> None:
        if i == self.warmup and self.cuda:
            self._catch = warnings.catch_warnings(record=True)
            self._records = self._catch.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
        if i == self.warmup + self.sync_steps:
            if self.cuda:
                torch.cuda.set_sync_debug_mode(0)
                self._catch.__exit__(None, None, None)
                self.syncs = sum("synchroniz" in str(w.message) for w in self._records)
                torch.cuda.synchronize()
            self.t_start = time.perf_counter()

    def end(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()
        self.t_end = time.perf_counter()


def make_module_class(pl, cfg: dict[str, int], probe: Probe) -> type:
    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = make_model(cfg)

        def training_step(self, batch, batch_idx):
            loss = lm_loss(self.model, batch)
            self.log("loss", loss)
            return loss

        def configure_optimizers(self):
            return make_optimizer(self.model)

        def on_train_batch_start(self, batch, batch_idx) -> None:
            probe.step(batch_idx)

        def on_train_end(self) -> None:
            probe.end()

    return Module


def worker(args: argparse.Namespace) -> None:
    cfg, device = PRESETS[args.preset], torch.device(args.device)
    total = args.warmup + args.sync_steps + args.steps
    batches = make_batches(cfg, total, device)
    probe = Probe(device, args.warmup, args.sync_steps)
    if args.worker == "hand":
        model = make_model(cfg).to(device)
        optimizer = make_optimizer(model)
        for i, batch in enumerate(batches):
            probe.step(i)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = lm_loss(model, batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        probe.end()
        final_loss = loss.item()
    else:
        pl, _ = import_framework(args.worker)
        module = make_module_class(pl, cfg, probe)()
        model = module.model
        trainer = pl.Trainer(accelerator=device.type, devices=1, precision="bf16-mixed", max_steps=total,
                             enable_progress_bar=False, enable_checkpointing=False, logger=False,
                             enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
        trainer.fit(module, train_dataloaders=PreBatched(batches))
        assert trainer.global_step == total, f"ran {trainer.global_step} steps, expected {total}"
        final_loss = float(trainer.callback_metrics["loss"])
    cuda = device.type == "cuda"
    result = dict(framework=args.worker, preset=args.preset, steps=args.steps, final_loss=final_loss,
                  ms_per_step=1e3 * (probe.t_end - probe.t_start) / args.steps,
                  tokens_per_step=cfg["batch"] * cfg["seq"],
                  syncs_per_step=probe.syncs / args.sync_steps if probe.syncs is not None and args.sync_steps else None,
                  peak_mem_gib=torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None,
                  device_name=torch.cuda.get_device_name(device) if cuda else "cpu", torch=torch.__version__,
                  **model_stats(model, cfg))
    print("RESULT " + json.dumps(result), flush=True)


def detect_peak_tflops(name: str) -> float | None:
    """Dense bf16 peak of a known device; None for anything else (H100/H200 NVL included)."""
    upper = name.upper()
    if "NVL" in upper:
        return None
    return next((peak for chip, variant, peak in PEAK_TFLOPS if chip in upper and variant in upper), None)


def worker_command(python: str, name: str, preset: str, args: argparse.Namespace) -> list[str]:
    return [python, str(Path(__file__).resolve()), "--worker", name, "--preset", preset, "--device", args.device,
            "--steps", str(args.steps), "--warmup", str(args.warmup), "--sync-steps", str(args.sync_steps)]


def measure(preset: str, args: argparse.Namespace, pythons: dict[str, str], peak: float | None) -> dict:
    runs: dict[str, list[dict]] = {name: [] for name in pythons}
    failed: set[str] = set()
    for repeat in range(args.repeats):
        for name, python in pythons.items():
            if name in failed:
                continue
            try:
                runs[name].append(run_worker(worker_command(python, name, preset, args), timeout=args.timeout))
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                failed.add(name)
                print(f"{name} failed on preset {preset} (skipped):\n{str(exc)[-3000:]}", file=sys.stderr)
                continue
            if args.verbose:
                print(f"  [{preset} #{repeat}] {name:9s} {runs[name][-1]['ms_per_step']:.3f} ms/step",
                      file=sys.stderr, flush=True)
    median = lambda rs, key: None if rs[0][key] is None else statistics.median(r[key] for r in rs)  # noqa: E731
    summary: dict[str, dict] = {}
    for name, rs in runs.items():
        if not rs:
            continue
        ms = [r["ms_per_step"] for r in rs]
        tokens_per_s = rs[0]["tokens_per_step"] / (statistics.median(ms) / 1e3)
        summary[name] = dict(
            ms_per_step=statistics.median(ms), ms_per_step_min=min(ms), tokens_per_s=tokens_per_s,
            mfu=tokens_per_s * rs[0]["flops_per_token"] / (peak * 1e12) if peak else None,
            syncs_per_step=median(rs, "syncs_per_step"), peak_mem_gib=median(rs, "peak_mem_gib"),
            final_loss=rs[0]["final_loss"], runs_ms_per_step=ms,
            **{k: rs[0][k] for k in ("n_params", "n_params_non_embedding", "flops_per_token", "device_name", "torch")})
    hand = summary.get("hand")
    for row in summary.values():
        row["x_hand"] = row["ms_per_step"] / hand["ms_per_step"] if hand else None
    return summary


def print_table(preset: str, summary: dict, args: argparse.Namespace, peak: float | None) -> None:
    if not summary:
        print(f"\npreset={preset}: no results")
        return
    cfg, first = PRESETS[preset], next(iter(summary.values()))
    print(f"\npreset={preset}  ({', '.join(f'{k} {v}' for k, v in cfg.items())}; "
          f"{first['n_params'] / 1e6:.2f}M params, {first['n_params_non_embedding'] / 1e6:.2f}M non-embedding, "
          f"{first['flops_per_token'] / 1e6:.1f} MFLOP/token)")
    print(f"{first['device_name']}, peak {peak or 'n/a'} TFLOP/s bf16; torch {first['torch']}; {args.steps} timed "
          f"steps after {args.warmup} warm-up + {args.sync_steps} sync-count steps; {args.repeats} process(es) each")
    header = (f"{'':10s} {'ms/step':>9s} {'min':>9s} {'x hand':>7s} {'tokens/s':>10s} {'MFU':>6s} "
              f"{'syncs/step':>10s} {'peak GiB':>8s} {'final loss':>10s}")
    print(header + "\n" + "-" * len(header))
    fmt = lambda v, spec: "n/a" if v is None else format(v, spec)  # noqa: E731
    for name, row in summary.items():
        print(f"{name:10s} {row['ms_per_step']:9.3f} {row['ms_per_step_min']:9.3f} {fmt(row['x_hand'], '.3f'):>7s} "
              f"{row['tokens_per_s']:10.0f} {fmt(row['mfu'], '.1%'):>6s} {fmt(row['syncs_per_step'], '.2f'):>10s} "
              f"{fmt(row['peak_mem_gib'], '.2f'):>8s} {row['final_loss']:10.4f}")
    print("medians over processes; x hand: ms/step / hand's ms/step (goal for ember on medium: <= 1.02)", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default=None, help="comma-separated: tiny, small, medium "
                        "(default: small,medium on cuda, tiny on cpu)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--steps", type=int, default=100, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before the sync count")
    parser.add_argument("--sync-steps", type=int, default=10, help="steps counted for host-device syncs (cuda)")
    parser.add_argument("--repeats", type=int, default=3, help="fresh subprocesses per framework")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of the GPU, for MFU")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS), help="comma-separated subset")
    parser.add_argument("--lightning-python", default=None, help="interpreter that can import Lightning")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per worker process")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--verbose", action="store_true", help="print every run as it finishes")
    parser.add_argument("--worker", choices=FRAMEWORKS, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return
    presets = args.preset.split(",") if args.preset else ["small", "medium"] if args.device == "cuda" else ["tiny"]
    if unknown := [p for p in presets if p not in PRESETS]:
        parser.error(f"unknown preset(s) {unknown}; choose from {', '.join(PRESETS)}")
    peak = None
    if args.device == "cuda":
        if not torch.cuda.is_available():
            parser.error("no CUDA device; for a smoke test use --device cpu --preset tiny")
        peak = args.peak_tflops or detect_peak_tflops(torch.cuda.get_device_name())
        if peak is None:
            parser.error(f"unknown peak for {torch.cuda.get_device_name()!r}; pass --peak-tflops (dense bf16)")
    pythons: dict[str, str] = {}
    for name in args.frameworks.split(","):
        if name not in FRAMEWORKS:
            parser.error(f"unknown framework {name!r}; choose from {', '.join(FRAMEWORKS)}")
        python = find_lightning_python(args.lightning_python) if name == "lightning" else sys.executable
        if python is None:
            print("Lightning is not importable (pytorch_lightning / lightning.pytorch): skipped.", file=sys.stderr)
        else:
            pythons[name] = python
    results = {}
    for preset in presets:
        results[preset] = measure(preset, args, pythons, peak)
        print_table(preset, results[preset], args, peak)
    if args.json:
        meta = dict(python=sys.version.split()[0], device=args.device, peak_tflops=peak, steps=args.steps,
                    warmup=args.warmup, sync_steps=args.sync_steps, repeats=args.repeats, pythons=pythons)
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
