"""``seed_everything``: one seed for Python, NumPy and torch (and DataLoader workers)."""

from __future__ import annotations

import os
import random

import torch

from ember.utilities.rank_zero import rank_zero_info, rank_zero_only, rank_zero_warn

_MAX_SEED, _MIN_SEED = 2**32 - 1, 0


def seed_everything(seed: int | None = None, workers: bool = False, verbose: bool = True) -> int:
    """Seed ``random``, ``numpy.random`` and ``torch`` (all devices); return the seed used.

    With ``seed=None`` the ``PL_GLOBAL_SEED`` environment variable is used, else 0. With ``workers=True``
    every DataLoader worker the Trainer starts gets its own seed derived from this one.
    """
    if seed is None:
        env = os.environ.get("PL_GLOBAL_SEED")
        try:
            seed = int(env) if env is not None else 0
        except ValueError:
            rank_zero_warn(f"PL_GLOBAL_SEED={env!r} is not an integer; using seed 0.")
            seed = 0
    if not isinstance(seed, int):
        seed = int(seed)
    if not _MIN_SEED <= seed <= _MAX_SEED:
        rank_zero_warn(f"seed {seed} is outside [{_MIN_SEED}, {_MAX_SEED}]; using seed 0.")
        seed = 0
    if verbose:
        rank_zero_info(f"Seed set to {seed}")
    os.environ["PL_GLOBAL_SEED"] = str(seed)
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:
        pass
    torch.manual_seed(seed)
    os.environ["PL_SEED_WORKERS"] = f"{int(workers)}"
    return seed


def reset_seed() -> None:
    """Re-apply the seed from ``seed_everything`` (e.g. in a freshly started process)."""
    seed = os.environ.get("PL_GLOBAL_SEED")
    if seed is not None:
        seed_everything(int(seed), workers=os.environ.get("PL_SEED_WORKERS") == "1", verbose=False)


def _worker_init_function(worker_id: int, rank: int | None = None) -> None:
    """Give each DataLoader worker distinct, reproducible Python/NumPy/torch seeds."""
    global_rank = rank if rank is not None else rank_zero_only.rank  # type: ignore[attr-defined]
    base_seed = torch.initial_seed() - worker_id  # torch seeds each worker with base_seed + worker_id
    sequence = [base_seed & 0xFFFFFFFF, base_seed >> 32 & 0xFFFFFFFF, worker_id, global_rank]
    try:
        import numpy as np

        seeds = np.random.SeedSequence(sequence).generate_state(4, dtype=np.uint64)
        np.random.seed(int(seeds[0] & 0xFFFFFFFF))
        torch.manual_seed(int(seeds[1]) & 0x7FFFFFFFFFFFFFFF)
        random.seed(int(seeds[2]))
    except ImportError:
        mixed = hash(tuple(sequence)) & 0x7FFFFFFFFFFFFFFF
        torch.manual_seed(mixed)
        random.seed(mixed)
