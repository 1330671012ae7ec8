"""Users' series: tables, JSON lines and pandas objects -> :class:`Series`, nothing dropped silently.

What ``sciogen train timeseries --data PATH`` (and ``fit(data)``) reads:

- CSV / TSV / parquet, **long layout**: one row per (series, time step) with an id, a time
  and a value column, found by name, case-insensitive (:data:`ID_NAMES`, :data:`TIME_NAMES`,
  :data:`VALUE_NAMES`; ``column=`` names the value column);
- the same files, **wide layout**: a time column (or a parquet datetime index) and one
  column per series (``column=``: only that one);
- GluonTS **JSON lines** (``.json``, ``.jsonl``, optionally ``.gz``): ``{"start", "target"}`` per line;
- GluonTS dataset **folders** and archives (:mod:`sciogen.timeseries.datasets`);
- pandas ``Series`` / ``DataFrame`` (the same rules), a :class:`Series` or a list of them.

The frequency is ``pd.infer_freq`` of the timestamps unless given. Missing values (empty
cells, NaN, stamps absent from the regular grid) stay NaN: they are masked in training and
never filled. A series with a non-numeric or infinite value, an unreadable, duplicated or
off-grid timestamp is left out and recorded in a :class:`~sciogen.data.records.RecordLog`
with its file, item id and line (or position) and the reason.
"""

from __future__ import annotations

import gzip
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import pandas as pd

from sciogen.data.records import RecordLog, expand_paths

from .representation import Series, TimeSeriesError, UnknownFrequencyError, normalize_freq

__all__ = ["SeriesData", "read_series", "ID_NAMES", "TIME_NAMES", "VALUE_NAMES", "SUFFIXES"]

#: column names recognised (case-insensitive), in order of preference
ID_NAMES = ("item_id", "unique_id", "series_id", "item", "id", "series", "ts_id", "key", "name")
TIME_NAMES = ("timestamp", "time", "date", "datetime", "ds", "period", "time_stamp", "date_time")
VALUE_NAMES = ("target", "value", "y", "values", "observation", "obs")

TABLE_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".parquet", ".pq")
JSON_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
SUFFIXES = TABLE_SUFFIXES + JSON_SUFFIXES
_SHOWN = 5


class _Raw(NamedTuple):
    """One series as read from a table, before it is put on its frequency grid."""

    item: Any
    stamps: pd.DatetimeIndex   # sorted, unique
    values: np.ndarray         # float64, NaN = missing
    source: str
    wheres: list[str]          # "line 7" per value, for messages


@dataclass
class SeriesData:
    """Series read from a user's data.

    Attributes:
        series: the usable series.
        sources: the file (or object) each series came from, aligned with ``series``.
        freq: their pandas frequency.
        prediction_length: the horizon a GluonTS dataset's metadata gives (else None).
        test: a GluonTS dataset's test entries (else empty).
        missing: item id -> positions of its missing values (kept as NaN).
    """

    series: list[Series]
    sources: list[str]
    freq: str
    prediction_length: int | None = None
    test: list[Series] = field(default_factory=list)

    @property
    def missing(self) -> dict[Any, np.ndarray]:
        return {s.item_id: np.flatnonzero(~s.observed) for s in self.series if not s.observed.all()}

    def missing_summary(self) -> str | None:
        """One line naming the series with missing values and where, or None."""
        missing = self.missing
        if not missing:
            return None
        total = sum(len(v) for v in missing.values())
        shown = "; ".join(f"{k!r} at position(s) {', '.join(map(str, v[:3]))}{' ...' if len(v) > 3 else ''}"
                          for k, v in list(missing.items())[:_SHOWN])
        more = f"; and {len(missing) - _SHOWN} more series" if len(missing) > _SHOWN else ""
        return (f"{total} missing value(s) (empty cells, NaN or gaps in the timestamps) in {len(missing)} series are "
                f"kept as missing: masked in training, never filled ({shown}{more})")


# -- entry point --------------------------------------------------------------------------------


def read_series(data: Any, *, freq: str | None = None, column: str | None = None,
                log: RecordLog | None = None) -> SeriesData:
    """Read a user's series (module docstring); unusable series go to ``log``.

    Args:
        data: a file, folder, glob or list of files; a GluonTS folder / archive; pandas
            Series or DataFrame; a :class:`Series` or a list of them; a :class:`SeriesData`
            (returned as it is).
        freq: pandas frequency (default: inferred from the timestamps, or the metadata).
        column: the value column of a long table, or the one series column of a wide table.
        log: collects the series left out (default: a new log, discarded).

    Raises:
        TimeSeriesError: a file that cannot be read as series at all (empty, no timestamp
            column, columns that cannot be identified), no usable series, or a frequency
            that cannot be inferred.
    """
    from .datasets import GluonTSDataset

    log = log if log is not None else RecordLog()
    if isinstance(data, SeriesData):  # already read
        return data
    if isinstance(data, GluonTSDataset):
        return SeriesData(list(data.train), [data.name] * len(data.train), data.freq, data.prediction_length,
                          list(data.test))
    if isinstance(data, Series):
        data = [data]
    if isinstance(data, (list, tuple)) and data and all(isinstance(s, Series) for s in data):
        freqs = sorted({s.freq for s in data})
        if len(freqs) > 1:
            raise UnknownFrequencyError(f"the series have different frequencies {freqs}; give series of one frequency")
        return _finish([], [(s, "series list") for s in data], freq or freqs[0], log)
    if isinstance(data, (pd.Series, pd.DataFrame)):
        frame, source = _pandas_frame(data)
        return _finish(_table_records(frame, column, source, lambda i: f"row {i!r}", log), [], freq, log)
    if isinstance(data, (str, Path)) or (isinstance(data, (list, tuple)) and data):
        return _read_paths(data, freq, column, log)
    raise TypeError(
        f"cannot read time series from a {type(data).__name__}; pass a file, folder or glob (CSV, parquet, GluonTS "
        "JSON lines), a pandas Series / DataFrame or a list of sciogen.timeseries.Series"
    )


def _read_paths(data, freq, column, log) -> SeriesData:
    from .datasets import _read_tar, read_gluonts

    if isinstance(data, (str, Path)):
        path = Path(data).expanduser()
        if path.is_dir() and _is_gluonts_folder(path):
            ds = read_gluonts(path, freq=freq)
            return SeriesData(ds.train, [str(path)] * len(ds.train), ds.freq, ds.prediction_length, ds.test)
        if path.is_file() and path.name.lower().endswith((".tar.gz", ".tgz", ".tar")):
            ds = _read_tar(path, required=False)
            return SeriesData(ds.train, [str(path)] * len(ds.train), ds.freq, ds.prediction_length or None, ds.test)
    files = expand_paths(data, SUFFIXES, "series files")
    raw: list[_Raw] = []
    ready: list[tuple[Series, str]] = []
    for f in files:
        if f.name.lower().endswith(JSON_SUFFIXES):
            freq = freq or _metadata_freq(f)
            ready += _jsonlines_series(f, freq, log)
        else:
            raw += _table_records(_read_table(f), column, str(f), _line_of(f), log)
    return _finish(raw, ready, freq, log)


def _is_gluonts_folder(path: Path) -> bool:
    metadata = (path / "metadata.json", path / "metadata" / "metadata.json")
    return any(m.is_file() for m in metadata) or (path / "train").is_dir()


# -- tables ---------------------------------------------------------------------------------------


def _read_table(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            frame = pd.read_parquet(path)
            if isinstance(frame.index, (pd.DatetimeIndex, pd.PeriodIndex)):
                frame = frame.reset_index()
            return frame
        # strings first, so that a non-numeric cell can be reported as it was written; blank
        # lines kept (then dropped) so that row i is line i + 2
        frame = pd.read_csv(path, sep="\t" if name.endswith(".tsv") else ",", dtype=str, skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise TimeSeriesError(f"{path} is empty: expected a header line and one row per time step") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as err:
        raise TimeSeriesError(f"{path} cannot be read as a table: {str(err).splitlines()[0]}") from None
    return frame.dropna(how="all")


def _line_of(path: Path) -> Callable[[int], str]:
    if path.name.lower().endswith((".parquet", ".pq")):
        return lambda i: f"row {i + 1}"
    return lambda i: f"line {i + 2}"


def _find(columns: Sequence, names: Sequence[str]) -> Any:
    lowered = {str(c).strip().lower(): c for c in columns}
    return next((lowered[n] for n in names if n in lowered), None)


def _parse_times(values: pd.Series) -> pd.Series:
    if isinstance(values.dtype, pd.PeriodDtype):
        return values.dt.to_timestamp()
    if pd.api.types.is_datetime64_any_dtype(values):
        return values
    if pd.api.types.is_numeric_dtype(values):  # numbers are not dates (epoch seconds are ambiguous)
        return pd.Series(pd.NaT, index=values.index)
    try:
        return pd.to_datetime(values, errors="coerce", format="mixed")
    except (ValueError, TypeError):
        return pd.Series(pd.NaT, index=values.index)


def _time_column(frame: pd.DataFrame) -> Any:
    named = _find(frame.columns, TIME_NAMES)
    if named is not None:
        return named
    for c in frame.columns:  # a column that holds dates, by content
        col = frame[c]
        if pd.api.types.is_datetime64_any_dtype(col) or isinstance(col.dtype, pd.PeriodDtype):
            return c
    first = frame.columns[0]
    filled = frame[first].dropna()
    numbers = pd.to_numeric(filled, errors="coerce").notna().mean() if len(filled) else 1.0
    if len(filled) and numbers < 0.5 and _parse_times(filled).notna().mean() > 0.9:
        return first
    return None


def _table_records(frame: pd.DataFrame, column: str | None, source: str, where: Callable[[int], str],
                   log: RecordLog) -> list[_Raw]:
    """The usable series of a long or wide table (the others logged)."""
    columns = [str(c) for c in frame.columns]
    if frame.empty:
        raise TimeSeriesError(f"{source} holds no rows (columns: {', '.join(columns) or 'none'})")
    time_col = _time_column(frame)
    if time_col is None:
        raise TimeSeriesError(
            f"{source}: no timestamp column among the columns {columns}; name it one of {', '.join(TIME_NAMES[:5])} "
            "(case-insensitive), or put the dates in the first column. Layouts: long = item_id, timestamp, target; "
            "wide = a timestamp column and one column per series"
        )
    if column is not None and column not in frame.columns:
        raise TimeSeriesError(f"{source}: no column {column!r} (--column); the columns are {columns}")
    stamps = _parse_times(frame[time_col])
    id_col = _find([c for c in frame.columns if c != time_col], ID_NAMES)
    if id_col is not None:  # long layout
        others = [c for c in frame.columns if c not in (time_col, id_col)]
        value_col = column if column is not None else _find(others, VALUE_NAMES)
        if value_col is None and len(others) == 1:
            value_col = others[0]
        if value_col is None:
            raise TimeSeriesError(
                f"{source}: a long table (id column {id_col!r}, time column {time_col!r}) needs one value column; "
                f"found the columns {columns}; name it one of {', '.join(VALUE_NAMES[:3])} or pass --column NAME"
            )
        ids = frame[id_col]
        for i in np.flatnonzero(ids.isna().to_numpy()):
            log.skip(source, "?", f"{where(frame.index[i])}: no item id (column {id_col!r}); the row is not used")
        keep = ids.notna()
        groups = frame[keep].groupby(id_col, sort=False).groups
        items = [(item, rows) for item, rows in groups.items()]
        return [r for item, rows in items
                if (r := _one_series(item, stamps[rows], frame.loc[rows, value_col], source, where, log)) is not None]
    value_cols = [column] if column is not None else [c for c in frame.columns if c != time_col]
    if not value_cols:
        raise TimeSeriesError(f"{source}: only a timestamp column ({time_col!r}); add one column of values per series")
    return [r for c in value_cols
            if (r := _one_series(c, stamps, frame[c], source, where, log)) is not None]


def _one_series(item, stamps: pd.Series, raw: pd.Series, source: str, where, log: RecordLog) -> _Raw | None:
    """One series of a table, or None after logging why it cannot be used."""
    rows = raw.index.to_numpy()
    bad_time = stamps.isna().to_numpy()
    if bad_time.any():
        i = int(np.flatnonzero(bad_time)[0])
        log.skip(source, item, f"{where(rows[i])}: cannot read the timestamp {_raw_time(stamps, raw, i)!r}")
        return None
    values = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
    written = raw.notna().to_numpy() & ~_is_nan_text(raw)
    not_number = written & np.isnan(values)
    if not_number.any():
        i = int(np.flatnonzero(not_number)[0])
        log.skip(source, item, f"{where(rows[i])}: {raw.iloc[i]!r} is not a number "
                               f"(write NaN or leave the cell empty for a missing value)")
        return None
    if np.isinf(values).any():
        i = int(np.flatnonzero(np.isinf(values))[0])
        log.skip(source, item, f"{where(rows[i])}: the value is infinite ({raw.iloc[i]!r})")
        return None
    order = np.argsort(stamps.to_numpy(), kind="stable")
    ordered = pd.DatetimeIndex(stamps.to_numpy()[order])
    dup = np.flatnonzero(ordered[1:] == ordered[:-1])
    if len(dup):
        a, b = rows[order[dup[0]]], rows[order[dup[0] + 1]]
        log.skip(source, item, f"{where(a)} and {where(b)}: two values at the same time {ordered[dup[0]]}")
        return None
    return _Raw(item, ordered, values[order], source, [where(r) for r in rows[order]])


def _raw_time(stamps, raw, i):
    return "" if stamps.iloc[i] is pd.NaT else stamps.iloc[i]


def _is_nan_text(raw: pd.Series) -> np.ndarray:
    if raw.dtype != object:
        return np.zeros(len(raw), bool)
    text = raw.astype(str).str.strip().str.lower()
    return text.isin(["nan", "na", "n/a", "null", "none", ""]).to_numpy()


def _pandas_frame(data: pd.Series | pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """A table with a time column (the index, when it holds times) and the name for messages."""
    source = f"pandas {type(data).__name__}"
    if isinstance(data, pd.Series):
        data = data.to_frame(name=data.name if data.name is not None else "target")
    if isinstance(data.index, (pd.DatetimeIndex, pd.PeriodIndex)):
        data = data.reset_index(names=data.index.name or "timestamp")
    return data, source


# -- JSON lines ------------------------------------------------------------------------------------


def _metadata_freq(path: Path) -> str | None:
    meta = path.parent / "metadata.json"
    return json.loads(meta.read_text()).get("freq") if meta.is_file() else None


def _jsonlines_series(path: Path, freq: str | None, log: RecordLog) -> list[tuple[Series, str]]:
    if freq is None:
        raise UnknownFrequencyError(
            f"{path}: GluonTS JSON lines give each series' start but no timestamps per value, so the frequency "
            "cannot be inferred; pass --freq (e.g. D, B, h, 15min) or put a metadata.json with 'freq' beside the file"
        )
    freq = normalize_freq(freq)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    out = []
    with opener(path, "rt") as handle:
        for i, line in enumerate(handle):
            if not line.strip():
                continue
            where = f"line {i + 1}"
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as err:
                log.skip(path, "?", f"{where}: not JSON ({err.msg})")
                continue
            if not isinstance(entry, dict) or "target" not in entry or "start" not in entry:
                keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
                log.skip(path, "?", f"{where}: a GluonTS entry needs 'start' and 'target', got {keys}")
                continue
            item = entry.get("item_id")
            try:
                values = _json_values(entry["target"])
                extra = {k: v for k, v in entry.items() if k not in ("target", "start", "item_id")}
                out.append((Series(values, entry["start"], freq, item if item is not None else f"line {i + 1}", extra),
                            str(path)))
            except (TimeSeriesError, TypeError, ValueError) as err:
                log.skip(path, item if item is not None else "?", f"{where}: {err}")
    return out


def _json_values(target) -> np.ndarray:
    if not isinstance(target, list):
        raise TimeSeriesError(f"'target' must be a list of numbers, got {type(target).__name__}")
    if target and isinstance(target[0], list):
        raise TimeSeriesError("multivariate targets are not supported; split them into univariate entries")
    out = np.empty(len(target))
    for k, v in enumerate(target):
        if v is None:
            out[k] = math.nan
            continue
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            raise TimeSeriesError(
                f"value {k} of 'target', {v!r}, is not a number (use NaN or null for missing)") from None
        if math.isinf(out[k]):
            raise TimeSeriesError(f"value {k} of 'target' is infinite")
    return out


# -- frequency, grid, Series -------------------------------------------------------------------


def _finish(raw: list[_Raw], ready: list[tuple[Series, str]], freq: str | None, log: RecordLog) -> SeriesData:
    """Put the table series on one frequency grid and join them to the ``ready`` ones."""
    ready = list(ready)
    if raw:
        freq = normalize_freq(freq) if freq else _infer_freq(raw)
        for r in raw:
            series = _on_grid(r, freq, log)
            if series is not None:
                ready.append((series, r.source))
    if not ready:
        first = f"; the first: {log.skipped[0]}" if log.skipped else ""
        raise TimeSeriesError(f"no usable series in the data ({len(log)} left out{first})")
    freq = normalize_freq(freq or ready[0][0].freq)
    return SeriesData([s for s, _ in ready], [src for _, src in ready], freq)


def _infer_freq(raw: list[_Raw]) -> str:
    """``pd.infer_freq`` of the longest series (up to 50); an error when none or several result."""
    found: dict[str, list] = {}
    tried = []
    for item, stamps, *_ in sorted(raw, key=lambda r: -len(r.stamps))[:50]:
        if len(stamps) < 3:
            continue
        with warnings.catch_warnings():  # pandas 3 announces offsets instead of strings: both are read below
            warnings.simplefilter("ignore", DeprecationWarning)
            inferred = pd.infer_freq(stamps)
        inferred = getattr(inferred, "freqstr", inferred)
        if inferred is None:
            steps = [_step(d) for d in stamps.to_series().diff().dropna().value_counts().index[:3]]
            tried.append(f"{item!r} (steps {', '.join(map(str, steps))})")
            continue
        found.setdefault(normalize_freq(inferred), []).append(item)
    if len(found) > 1:
        listing = "; ".join(f"{f}: {', '.join(map(repr, items[:3]))}" for f, items in found.items())
        raise UnknownFrequencyError(f"the series have different frequencies ({listing}); pass --freq to choose one")
    if not found:
        why = (f": irregular or with gaps, e.g. {'; '.join(tried[:3])}" if tried
               else ": every series has fewer than 3 values")
        raise UnknownFrequencyError(
            f"cannot infer the frequency from the timestamps{why}; pass --freq (a pandas alias such as D, B, h, "
            "15min, W-SUN, MS); stamps missing from that grid become missing values"
        )
    return next(iter(found))


def _step(delta: pd.Timedelta) -> str:
    try:
        return pd.tseries.frequencies.to_offset(delta).freqstr
    except ValueError:
        return str(delta)


def _on_grid(raw: _Raw, freq: str, log: RecordLog) -> Series | None:
    item, stamps, values, source, wheres = raw
    full = pd.date_range(stamps[0], stamps[-1], freq=freq)
    on = stamps.isin(full)
    if not on.all():
        i = int(np.flatnonzero(~on)[0])
        log.skip(source, item, f"{wheres[i]}: the time {stamps[i]} is not on the {freq} grid that starts at "
                               f"{stamps[0]}; pass the right --freq or resample the series")
        return None
    if len(full) != len(stamps):  # gaps in the stamps: missing values, never filled
        values = pd.Series(values, index=stamps).reindex(full).to_numpy()
    return Series(values, stamps[0], freq, item)
