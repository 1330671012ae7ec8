"""Seeds and random-number-generator states.

:func:`derive_seed` turns a base seed and integer keys (step, chunk, rank) into an
independent 63-bit seed, so that a piece of work gets the same random stream whatever
process or order runs it. :func:`get_rng_state` / :func:`set_rng_state` capture the
global generators (Python, NumPy, torch CPU and CUDA) as tensors and plain values, so
they can be stored in a checkpoint that loads with ``weights_only=True``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["derive_seed", "seed_everything", "make_generator", "get_rng_state", "set_rng_state"]


def derive_seed(seed: int, *keys: int) -> int:
    """An independent 63-bit seed for ``(seed, *keys)`` (NumPy's SeedSequence hashing)."""
    entropy = [int(seed) & 0xFFFFFFFFFFFFFFFF, *(int(k) & 0xFFFFFFFFFFFFFFFF for k in keys)]
    state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and all GPUs)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
    return torch.Generator(device=device).manual_seed(int(seed))


def get_rng_state() -> dict[str, Any]:
    """The global generators' states as tensors and plain values (checkpoint-safe)."""
    version, words, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "state": torch.tensor(words, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states captured by :func:`get_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(w) for w in py["state"].tolist()), py["gauss"]))
    npst = state["numpy"]
    keys = npst["keys"].numpy().astype(np.uint32)
    np.random.set_state((npst["kind"], keys, npst["pos"], npst["has_gauss"], npst["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
