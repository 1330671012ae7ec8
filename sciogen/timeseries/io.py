"""Forecasts in and out of files and pandas.

A forecast CSV written by :func:`write_forecast` has one row per (series, sample path) and
one column per step::

    series,sample,1,2,...,H          (or timestamps instead of 1..H)
    0,0,0.7012,0.7020,...

Synthetic series (``sciogen sample RUN -n N --out synthetic.csv``, no ``--context``) have one
row per series, without a ``series`` column::

    sample,1,2,...,L
    0,0.7012,0.7020,...

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

__all__ = ["write_forecast", "read_forecast", "write_synthetic", "read_samples_file", "write_truth", "read_truth",
           "read_context", "forecast_frame"]


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
    path = _csv_path(path)
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


def _csv_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".csv":
        raise ValueError(f"time-series samples are written as CSV: give --out a name ending in .csv, got {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_synthetic(samples, path: str | Path) -> Path:
    """Write synthetic series (n, L) as CSV ``sample,1..L`` (see the module docstring)."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 2:
        raise ValueError(f"synthetic series must be (n, L), got shape {samples.shape}")
    path = _csv_path(path)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sample", *range(1, samples.shape[1] + 1)])
        for s, row in enumerate(samples):
            writer.writerow([s, *(f"{v:.8g}" for v in row)])
    return path


def read_samples_file(path: str | Path):
    """Read what ``sciogen sample`` wrote: forecast paths -> array (B, S, H); synthetic
    series -> float32 tensor (n, L), the types :meth:`TimeSeriesGenerator.sample` returns."""
    import pandas as pd
    import torch

    try:
        header = pd.read_csv(path, nrows=0)
    except (pd.errors.EmptyDataError, FileNotFoundError) as err:
        raise ValueError(f"{path}: cannot read samples ({err})") from None
    columns = [str(c) for c in header.columns]
    if {"series", "sample"} <= set(columns):
        return read_forecast(path)
    if columns[:1] == ["sample"]:
        frame = pd.read_csv(path)
        values = frame.drop(columns="sample").apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
        if np.isnan(values).any():
            row, col = (int(v[0]) for v in np.nonzero(np.isnan(values)))
            raise ValueError(f"{path}: line {row + 2}, step {col + 1}: not a number")
        return torch.tensor(values, dtype=torch.float32)
    raise ValueError(
        f"{path} is not a file of time-series samples: forecasts have the columns series,sample,1..H and "
        f"synthetic series sample,1..L (as sciogen sample writes them); found {columns[:6]}"
    )


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
