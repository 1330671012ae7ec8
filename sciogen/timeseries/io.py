"""Forecasts in and out of files and pandas.

A forecast CSV written by :func:`write_forecast` is in long format: one row per (series, step),
the series' name and the step's timestamp, then one column per sample path::

    item_id,timestamp,sample_0,sample_1,...,sample_{S-1}
    usd,2021-11-03,0.7012,0.7020,...
    usd,2021-11-04,0.7015,0.6998,...
    eur,2021-11-03,...

``item_id`` is the name of each context series (a column of the context CSV, a pandas name, a
GluonTS ``item_id``; 0, 1, ... when the context has none) and ``timestamp`` the date of each
forecast step (the steps after the context's last stamp; 1 .. H when the context has no
dates). Sample paths, not quantiles, so that every metric (CRPS, quantiles, the mean) can be
computed from the file; ``pd.read_csv(path).set_index(["item_id", "timestamp"])`` gives them
to pandas, ``.quantile([0.1, 0.5, 0.9], axis=1)`` their quantiles. Files of the earlier
``series,sample,1..H`` layout are still read.

Synthetic series (``sciogen sample RUN -n N --out synthetic.csv``, no ``--context``) have one
row per series, without ``item_id`` and ``timestamp`` columns::

    sample,1,2,...,L
    0,0.7012,0.7020,...

A truth CSV (for ``sciogen evaluate timeseries FORECAST --truth TRUTH``) has one row per
series, in the order of the forecast's series, and the same step columns: ``series,1,2,...,H``.
Context CSVs for ``sciogen sample timeseries/... --context`` are read by :func:`read_context`: a
time column (or index) and one column per series, or value columns only.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["ForecastPaths", "write_forecast", "read_forecast", "write_synthetic", "read_samples_file", "write_truth",
           "read_truth", "read_context", "forecast_frame"]

_SAMPLE_COLUMN = re.compile(r"^sample_(\d+)$")


class ForecastPaths(np.ndarray):
    """Forecast sample paths, (S, H) for one series or (B, S, H) for several, with the names
    of the series and the timestamps of the forecast steps, which :func:`write_forecast`
    writes. Otherwise a plain float64 array.

    Attributes:
        item_ids: B names (one per series), or None (0, 1, ... when written).
        timestamps: B indexes of H timestamps, or None (steps 1 .. H when written).

    The names and timestamps survive operations that keep the shape (``paths * 100``) and are
    dropped by those that change it (``paths[0]``, ``paths.mean(0)``).
    """

    item_ids: list | None
    timestamps: list | None

    def __new__(cls, paths: Any, item_ids: Sequence | None = None, timestamps: Sequence | None = None):
        obj = np.asarray(paths, dtype=np.float64).view(cls)
        blocks = 1 if obj.ndim == 2 else obj.shape[0] if obj.ndim == 3 else None
        if blocks is None:
            raise ValueError(f"forecast paths must be (S, H) or (B, S, H), got shape {obj.shape}")
        if item_ids is not None and len(item_ids) != blocks:
            raise ValueError(f"{len(item_ids)} item_ids for {blocks} forecast series")
        if timestamps is not None and (len(timestamps) != blocks
                                       or any(len(t) != obj.shape[-1] for t in timestamps)):
            raise ValueError(f"timestamps must be {blocks} sequences of {obj.shape[-1]} stamps")
        obj.item_ids = list(item_ids) if item_ids is not None else None
        obj.timestamps = list(timestamps) if timestamps is not None else None
        return obj

    def __array_finalize__(self, obj) -> None:
        same = obj is not None and getattr(obj, "shape", None) == self.shape
        self.item_ids = getattr(obj, "item_ids", None) if same else None
        self.timestamps = getattr(obj, "timestamps", None) if same else None

    def __array_wrap__(self, obj, context=None, return_scalar=False):
        if obj.shape != self.shape:  # a reduction or another shape: a plain array (or scalar)
            plain = np.asarray(obj)
            return plain[()] if return_scalar or plain.ndim == 0 else plain
        return super().__array_wrap__(obj, context, return_scalar)

    def __reduce__(self):  # pickling (multiprocessing, torch.save) keeps the names and stamps
        return ForecastPaths, (np.asarray(self), self.item_ids, self.timestamps)


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


def write_forecast(samples, path: str | Path, item_ids: Sequence | None = None,
                   timestamps: Sequence | None = None) -> Path:
    """Write sample paths (S, H) or (B, S, H) as a long CSV (see the module docstring).

    ``item_ids`` (B names) and ``timestamps`` (B sequences of H stamps) default to those a
    :class:`ForecastPaths` carries, else to 0, 1, ... and the steps 1 .. H.
    """
    import pandas as pd

    item_ids = item_ids if item_ids is not None else getattr(samples, "item_ids", None)
    timestamps = timestamps if timestamps is not None else getattr(samples, "timestamps", None)
    paths = ForecastPaths(samples, item_ids, timestamps)
    blocks = np.asarray(paths)[None] if paths.ndim == 2 else np.asarray(paths)
    if not np.isfinite(blocks).all():
        b, s, h = (int(i[0]) for i in np.nonzero(~np.isfinite(blocks)))
        raise ValueError(f"forecast series {b}, sample {s}, step {h + 1} is {blocks[b, s, h]}: not written")
    num_series, num_samples, horizon = blocks.shape
    ids = paths.item_ids if paths.item_ids is not None else list(range(num_series))
    stamps = paths.timestamps if paths.timestamps is not None else [range(1, horizon + 1)] * num_series
    frame = pd.DataFrame({
        "item_id": np.repeat(np.asarray(ids, dtype=object), horizon),
        "timestamp": [t for row in stamps for t in row],
        **{f"sample_{s}": blocks[:, s, :].reshape(-1) for s in range(num_samples)},
    })
    path = _csv_path(path)
    frame.to_csv(path, index=False, float_format="%.8g")
    return path


def read_forecast(path: str | Path) -> ForecastPaths:
    """Read a forecast CSV -> :class:`ForecastPaths` (B, S, H), series in the order of the file.

    Reads the long format of :func:`write_forecast` and the earlier ``series,sample,1..H``."""
    import pandas as pd

    frame = _read_csv(path, dtype={"item_id": str, "series": str})
    if {"series", "sample"} <= set(frame.columns):
        return _read_wide_forecast(path, frame)
    samples = sorted((int(m.group(1)), c) for c in frame.columns if (m := _SAMPLE_COLUMN.match(str(c))))
    if not {"item_id", "timestamp"} <= set(frame.columns) or not samples:
        raise ValueError(f"{path} is not a forecast file: it needs the columns item_id, timestamp, sample_0, ... "
                         f"(as sciogen sample --context writes them), got {list(frame.columns)[:5]}")
    columns = [c for _, c in samples]
    values = _numbers(path, frame, columns)
    groups = list(frame.groupby("item_id", sort=False).indices.items())
    lengths = {len(rows) for _, rows in groups}
    if len(lengths) != 1:
        counts = ", ".join(f"{item!r}: {len(rows)}" for item, rows in groups[:5])
        raise ValueError(f"{path}: every series must have the same number of forecast steps (rows), got {counts}")
    blocks = np.stack([values[rows].T for _, rows in groups])  # (B, S, H)
    stamps = frame["timestamp"]
    numeric = pd.to_numeric(stamps, errors="coerce")
    if numeric.notna().all():  # steps 1 .. H: no dates
        timestamps = None
    else:
        try:
            parsed = pd.to_datetime(stamps)
        except (ValueError, TypeError):
            raise ValueError(f"{path}: the timestamp column holds neither dates nor step numbers") from None
        timestamps = [pd.DatetimeIndex(parsed.iloc[rows]) for _, rows in groups]
    return ForecastPaths(blocks, [item for item, _ in groups], timestamps)


def _read_wide_forecast(path, frame) -> ForecastPaths:
    steps = [c for c in frame.columns if c not in ("series", "sample")]
    values = _numbers(path, frame, steps)
    groups = list(frame.groupby("series", sort=False).indices.items())
    blocks = [values[rows][np.argsort(frame["sample"].to_numpy()[rows], kind="stable")] for _, rows in groups]
    if len({b.shape for b in blocks}) != 1:
        raise ValueError(f"{path}: every series must have the same number of sample paths")
    return ForecastPaths(np.stack(blocks), [item for item, _ in groups])


def _read_csv(path, what: str = "samples", **options):
    import pandas as pd

    try:
        return pd.read_csv(path, **options)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, FileNotFoundError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read {what} ({err})") from None


def _numbers(path, frame, columns) -> np.ndarray:
    """The ``columns`` of ``frame`` as float64 (rows, columns), naming the first cell that is
    not a finite number."""
    import pandas as pd

    values = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    if not np.isfinite(values).all():
        row, col = (int(v[0]) for v in np.nonzero(~np.isfinite(values)))
        cell = frame[columns[col]].iloc[row]
        shown = repr(cell) if isinstance(cell, str) else str(cell)
        raise ValueError(f"{path}: line {row + 2}, column {columns[col]!r}: {shown} is not a finite number")
    return values


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
    """Read what ``sciogen sample`` wrote: forecast paths (columns ``item_id``, ``timestamp``,
    ``sample_0``, ...) -> :class:`ForecastPaths` (B, S, H); synthetic series (``sample,1..L``)
    -> float32 tensor (n, L), the types :meth:`TimeSeriesGenerator.sample` returns."""
    import torch

    header = _read_csv(path, nrows=0)
    columns = [str(c) for c in header.columns]
    if {"item_id", "timestamp"} <= set(columns) or {"series", "sample"} <= set(columns):
        return read_forecast(path)
    if columns[:1] == ["sample"]:
        frame = _read_csv(path)
        steps = [c for c in frame.columns if c != "sample"]
        return torch.tensor(_numbers(path, frame, steps), dtype=torch.float32)
    raise ValueError(
        f"{path} is not a file of time-series samples: forecasts have the columns item_id,timestamp,sample_0,... "
        f"and synthetic series sample,1..L (as sciogen sample writes them); found {columns[:6]}"
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

    frame = _read_csv(path, "the truth")
    if "series" in frame.columns:
        values = frame.drop(columns="series").apply(pd.to_numeric, errors="coerce")
        bad = values.isna().to_numpy() & frame.drop(columns="series").notna().to_numpy()
        if bad.any():
            row, col = (int(v[0]) for v in np.nonzero(bad))
            raise ValueError(f"{path}: line {row + 2}, column {values.columns[col]!r}: "
                             f"{frame[values.columns[col]].iloc[row]!r} is not a number")
        return values.to_numpy(np.float64)
    numeric = frame.select_dtypes("number")
    return numeric.to_numpy(np.float64).T


def read_context(path: str | Path, freq: str | None = None):
    """Read contexts from CSV: a time column (first column if it parses as dates) and one
    column per series -> list of :class:`~sciogen.timeseries.representation.Series`; a file without
    a time column gives its value columns as a DataFrame (a column per series, names kept)."""
    import pandas as pd

    from .representation import from_pandas

    frame = _read_csv(path, "the context")
    if frame.empty:
        raise ValueError(f"{path} holds no values")
    first = frame.columns[0]
    if not pd.api.types.is_numeric_dtype(frame[first]):
        try:
            frame[first] = pd.to_datetime(frame[first])
        except (ValueError, TypeError):
            raise ValueError(f"{path}: the first column {first!r} is neither numeric nor dates") from None
        return from_pandas(frame.set_index(first), freq)
    return frame
