"""Forecasts in and out of files and pandas.

A forecast CSV written by :func:`write_forecast` has one row per (series, sample path) and
one column per step::

    series,sample,1,2,...,H          (or timestamps instead of 1..H)
    0,0,0.7012,0.7020,...

A truth CSV (for ``sciogen evaluate timeseries FORECAST --truth TRUTH``) has one row per
series and the same step columns: ``series,1,2,...,H``. Context CSVs for
``sciogen sample timeseries/... --context`` are read by :func:`read_context`: a time column
(or index) and one column per series, or a single column of values.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["write_forecast", "read_forecast", "write_truth", "read_truth", "read_context", "forecast_frame"]


def forecast_frame(samples: np.ndarray, index, quantiles: Sequence[float] = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)):
    """Sample paths (S, H) -> DataFrame indexed by ``index`` with ``mean`` and one column
    per quantile (``"0.1"`` ...), quantiles as GluonTS takes them from samples."""
    import pandas as pd

    from .metrics import sample_quantiles

    samples = np.asarray(samples, dtype=np.float64)
    table = {"mean": samples.mean(axis=0)}
    for q, row in zip(quantiles, sample_quantiles(samples, quantiles)):
        table[f"{q:g}"] = row
    return pd.DataFrame(table, index=index)


def write_forecast(samples, path: str | Path, columns: Sequence | None = None) -> Path:
    """Write sample paths (S, H) or (B, S, H) as CSV (see the module docstring)."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim == 2:
        samples = samples[None]
    if samples.ndim != 3:
        raise ValueError(f"forecast samples must be (S, H) or (B, S, H), got shape {samples.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(columns) if columns is not None else list(range(1, samples.shape[2] + 1))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["series", "sample", *columns])
        for b, block in enumerate(samples):
            for s, row in enumerate(block):
                writer.writerow([b, s, *(f"{v:.8g}" for v in row)])
    return path


def read_forecast(path: str | Path) -> np.ndarray:
    """Read a forecast CSV -> (B, S, H)."""
    import pandas as pd

    frame = pd.read_csv(path)
    if not {"series", "sample"} <= set(frame.columns):
        raise ValueError(f"{path} is not a forecast file: it needs 'series' and 'sample' columns, got {list(frame.columns)[:5]}")
    steps = [c for c in frame.columns if c not in ("series", "sample")]
    blocks = [g.sort_values("sample")[steps].to_numpy(np.float64) for _, g in frame.groupby("series", sort=True)]
    if len({b.shape for b in blocks}) != 1:
        raise ValueError(f"{path}: every series must have the same number of sample paths")
    return np.stack(blocks)


def write_truth(truth, path: str | Path) -> Path:
    """Write true values (B, H) (or (H,)) as CSV ``series,1..H``."""
    truth = np.atleast_2d(np.asarray(truth, dtype=np.float64))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["series", *range(1, truth.shape[1] + 1)])
        for b, row in enumerate(truth):
            writer.writerow([b, *(f"{v:.8g}" for v in row)])
    return path


def read_truth(path: str | Path) -> np.ndarray:
    """Read true values -> (B, H); NaN for empty cells. A file without a ``series`` column is
    read as one series per column (values down the rows)."""
    import pandas as pd

    frame = pd.read_csv(path)
    if "series" in frame.columns:
        return frame.drop(columns="series").to_numpy(np.float64)
    numeric = frame.select_dtypes("number")
    return numeric.to_numpy(np.float64).T


def read_context(path: str | Path, freq: str | None = None):
    """Read contexts from CSV: a time column (first column if it parses as dates) and one
    column per series -> list of :class:`~sciogen.timeseries.data.Series`; a file without
    a time column gives plain arrays (list of (T,) arrays)."""
    import pandas as pd

    from .data import from_pandas

    frame = pd.read_csv(path)
    if frame.empty:
        raise ValueError(f"{path} holds no values")
    first = frame.columns[0]
    if not pd.api.types.is_numeric_dtype(frame[first]):
        try:
            frame[first] = pd.to_datetime(frame[first])
        except (ValueError, TypeError):
            raise ValueError(f"{path}: the first column {first!r} is neither numeric nor dates") from None
        return from_pandas(frame.set_index(first), freq)
    return [frame[c].to_numpy(np.float64) for c in frame.columns]
