"""Reading and writing vectors: CSV (one vector per row), NumPy ``.npy`` and torch ``.pt``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

__all__ = ["read_vectors", "write_vectors", "SUFFIXES"]

SUFFIXES = (".csv", ".npy", ".pt")


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{path}: unsupported file type {suffix!r}; use one of {', '.join(SUFFIXES)}")
    return suffix


def read_vectors(path: str | Path) -> torch.Tensor:
    """Vectors from a file as a float32 tensor (N, D).

    A CSV may start with a header row; every other cell must be a number.
    """
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if suffix == ".npy":
        x = torch.from_numpy(np.load(path, allow_pickle=False))
    elif suffix == ".pt":
        x = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{path} must hold a single tensor (N, D), got {type(x).__name__}")
    else:
        x = _read_csv(path)
    return _check_matrix(x.float(), path)


def _read_csv(path: Path) -> torch.Tensor:
    with open(path, newline="") as handle:
        rows = [r for r in csv.reader(handle) if r]
    if rows and not _is_numeric(rows[0]):
        rows = rows[1:]
    for i, row in enumerate(rows):
        if not _is_numeric(row):
            raise ValueError(f"{path}: row {i + 1} has a non-numeric cell: {row}")
    return torch.tensor([[float(v) for v in r] for r in rows], dtype=torch.float64)


def _is_numeric(row: list[str]) -> bool:
    try:
        [float(v) for v in row]
    except ValueError:
        return False
    return True


def _check_matrix(x: torch.Tensor, source) -> torch.Tensor:
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{source}: expected vectors of shape (N, D) with N >= 1, got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).any(dim=1).nonzero()[0])
        raise ValueError(f"{source}: row {bad} contains NaN or inf; remove or impute it")
    return x


def write_vectors(x: torch.Tensor, path: str | Path) -> Path:
    """Write (N, D) vectors; the format follows the suffix (CSV gets a header x0, x1, ...)."""
    path = Path(path)
    suffix = _suffix(path)
    x = _check_matrix(torch.as_tensor(x).detach().cpu().float(), "samples")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npy":
        np.save(path, x.numpy())
    elif suffix == ".pt":
        torch.save(x.clone(), path)
    else:
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([f"x{i}" for i in range(x.shape[1])])
            writer.writerows([[f"{v:.7g}" for v in row] for row in x.tolist()])
    return path
