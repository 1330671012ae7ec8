"""The representation of time series: :class:`Series`, frequencies, pandas in and out.

A :class:`Series` is one univariate target with a start time and a pandas frequency,
as a GluonTS data entry holds it: ``{"start": ..., "target": [...]}``. Missing values are
NaN in ``target`` and stay NaN: every consumer masks them (training loss, guidance,
metrics); nothing here fills them.

Frequencies are pandas offset aliases (``"B"``, ``"D"``, ``"h"``/``"H"``, ``"15min"``,
``"W-SUN"``, ``"MS"`` ...). Two frequency-derived settings follow GluonTS and TSDiff:

- :func:`seasonality`: GluonTS's ``get_seasonality`` (5 for ``B``, 24 for ``H``, 12 for
  ``M``, 4 for ``Q``, 1 for ``D`` and ``W``; divided by the multiple, 1 if it does not divide);
- :func:`lags_for_freq`: TSDiff's ``get_lags_for_freq`` (``H``: 24 x [1..7, 14, 21, 28];
  ``D``/``B``: 30 x [1..12]), extended to multiples of an hour that divide a day and to
  minutes / seconds through the same daily period; other frequencies get no lags.

Errors are specific subclasses of :class:`TimeSeriesError` (a ``ValueError``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "Series",
    "TimeSeriesError",
    "UnknownFrequencyError",
    "NonMonotonicIndexError",
    "SeriesTooShortError",
    "normalize_freq",
    "seasonality",
    "lags_for_freq",
    "default_prediction_length",
    "from_pandas",
    "to_pandas",
    "rolling_windows",
    "split_past_future",
]


#: GluonTS's ``DEFAULT_SEASONALITIES`` (gluonts.time_feature.seasonality), with the
#: pandas >= 2.2 aliases of the same units.
_SEASONALITIES = {
    "S": 3600, "s": 3600, "T": 1440, "min": 1440, "H": 24, "h": 24, "D": 1, "W": 1,
    "M": 12, "ME": 12, "MS": 12, "B": 5, "Q": 4, "QE": 4, "QS": 4,
}


class TimeSeriesError(ValueError):
    """Base of the time-series input errors."""


class UnknownFrequencyError(TimeSeriesError):
    """A frequency string pandas does not understand, or one that cannot be inferred."""


class NonMonotonicIndexError(TimeSeriesError):
    """A time index that is not strictly increasing (unsorted or duplicated stamps)."""


class SeriesTooShortError(TimeSeriesError):
    """A series shorter than what the model or the operation needs."""


# -- frequencies -----------------------------------------------------------------------------


#: pre-2.2 pandas aliases (GluonTS metadata still uses them) -> today's
_LEGACY_ALIASES = {"H": "h", "BH": "bh", "CBH": "cbh", "T": "min", "S": "s", "L": "ms", "U": "us", "N": "ns",
                   "M": "ME", "BM": "BME", "CBM": "CBME", "SM": "SME", "Q": "QE", "BQ": "BQE", "A": "YE",
                   "Y": "YE", "BA": "BYE", "BY": "BYE"}
_ALIAS = re.compile(r"^(\d*)([A-Za-z]+)(-.+)?$")


def normalize_freq(freq: str | pd.DateOffset) -> str:
    """The canonical pandas alias of a frequency (``"B"``, ``"h"``, ``"15min"`` ...).

    Legacy aliases that GluonTS datasets carry (``"H"``, ``"T"``, ``"M"``, ``"Q"``, ``"A"``)
    are translated to their current names. Raises :class:`UnknownFrequencyError` when
    pandas cannot parse it.

    >>> normalize_freq("H"), normalize_freq("5T"), normalize_freq("B")
    ('h', '5min', 'B')
    """
    if freq is None:
        raise UnknownFrequencyError("no frequency given; pass freq= as a pandas alias such as 'D', 'B' or 'h'")
    if isinstance(freq, str):
        match = _ALIAS.match(freq.strip())
        if match and match.group(2) in _LEGACY_ALIASES:
            freq = match.group(1) + _LEGACY_ALIASES[match.group(2)] + (match.group(3) or "")
    try:
        return _offset(freq).freqstr
    except (ValueError, TypeError) as err:
        raise UnknownFrequencyError(
            f"unknown frequency {freq!r}: pandas cannot parse it ({err}); use a pandas offset alias "
            "such as 'D', 'B', 'h', '15min', 'W-SUN', 'MS'"
        ) from None


def _offset(freq) -> pd.DateOffset:
    if isinstance(freq, pd.DateOffset):
        return freq
    return pd.tseries.frequencies.to_offset(freq)


def _base_name(offset: pd.DateOffset) -> str:
    return offset.rule_code.split("-")[0]


def seasonality(freq: str) -> int:
    """GluonTS's seasonality of a frequency (the season length of Seasonal Naive and MASE).

    >>> seasonality("B"), seasonality("H"), seasonality("2H"), seasonality("D")
    (5, 24, 12, 1)
    """
    offset = _offset(normalize_freq(freq))
    base = _SEASONALITIES.get(_base_name(offset), _SEASONALITIES.get(_base_name(offset).rstrip("E"), 1))
    season, remainder = divmod(base, offset.n)
    return season if not remainder else 1


def _steps_per_day(offset: pd.DateOffset) -> int | None:
    """Number of steps in a day for sub-daily frequencies that divide a day, else None."""
    per_day = {"H": 24, "h": 24, "T": 1440, "min": 1440, "S": 86400, "s": 86400}.get(_base_name(offset))
    if per_day is None or per_day % offset.n:
        return None
    return per_day // offset.n


def lags_for_freq(freq: str) -> list[int]:
    """The lag channels of the TSDiff denoiser for a frequency (TSDiff's ``get_lags_for_freq``).

    ``D`` and ``B``: 30 x [1, ..., 12] (about a month to a year); hourly: one to seven
    days, two, three and four weeks (24 x [1..7, 14, 21, 28]). A sub-daily frequency with
    ``p`` steps per day uses p x [1..7, 14, 21, 28]. Other frequencies (weekly, monthly,
    multi-day ...) get no lags, where TSDiff raises ``NotImplementedError``.

    >>> lags_for_freq("B")[:3], lags_for_freq("H")[-1]
    ([30, 60, 90], 672)
    """
    offset = _offset(normalize_freq(freq))
    name = _base_name(offset)
    if name in ("D", "B") and offset.n == 1:
        return [30 * i for i in range(1, 13)]
    per_day = _steps_per_day(offset)
    if per_day is not None:
        return [per_day * i for i in (1, 2, 3, 4, 5, 6, 7, 14, 21, 28)]
    return []


#: the default horizon per unit: TSDiff's daily datasets (30), the M4 competition's weekly (13),
#: monthly (18 -> a year, 12), quarterly (8) and yearly (6) horizons; sub-daily: one day of steps
_HORIZONS = {"D": 30, "B": 30, "W": 13, "M": 12, "ME": 12, "MS": 12, "Q": 8, "QE": 8, "QS": 8,
             "A": 6, "Y": 6, "YE": 6, "YS": 6, "AS": 6}
#: the longest default horizon (sub-daily frequencies: one day of steps, at most this)
MAX_DEFAULT_HORIZON = 96


def default_prediction_length(freq: str, length: int | None = None) -> tuple[int, str]:
    """The prediction length used when none is given, and the rule that gave it (for messages).

    By unit: daily / business-daily 30 (TSDiff's daily datasets), weekly 13, monthly 12,
    quarterly 8, yearly 6; sub-daily: one day of steps (24 for ``h``, 96 for ``15min``), at
    most 96; other units 12. With ``length`` (the typical series length), at most a tenth
    of it, so that the context (4 to 12 horizons) fits in the series.

    >>> default_prediction_length("B")[0], default_prediction_length("h")[0], default_prediction_length("D", 100)[0]
    (30, 24, 10)
    """
    offset = _offset(normalize_freq(freq))
    name = _base_name(offset)
    per_day = _steps_per_day(offset)
    if per_day is not None:
        horizon, rule = min(per_day, MAX_DEFAULT_HORIZON), f"one day of {offset.freqstr} steps, at most {MAX_DEFAULT_HORIZON}"
    elif name in _HORIZONS and offset.n == 1:
        horizon, rule = _HORIZONS[name], f"{_HORIZONS[name]} for {offset.freqstr} data"
    else:
        horizon, rule = 12, f"12 for {offset.freqstr} data"
    if length is not None and horizon > max(1, length // 10):
        horizon, rule = max(1, length // 10), f"{rule}, at most a tenth of the median series length {length}"
    return horizon, rule


# -- the series ------------------------------------------------------------------------------


@dataclass
class Series:
    """One univariate time series.

    Attributes:
        target: float64 array (T,), NaN where a value is missing.
        start: the time stamp of ``target[0]`` (a ``pd.Timestamp`` on the ``freq`` grid;
            a ``pd.Period``, as GluonTS stores it, is converted to its start).
        freq: pandas frequency alias.
        item_id: a name (column name, GluonTS ``item_id``), or None.
        extra: other fields of a GluonTS entry (``feat_static_cat`` ...), kept as read.
    """

    target: np.ndarray
    start: pd.Timestamp
    freq: str
    item_id: Any = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.freq = normalize_freq(self.freq)
        self.target = _real(self.target, self.item_id).reshape(-1)
        if np.isinf(self.target).any():
            bad = int(np.flatnonzero(np.isinf(self.target))[0])
            raise TimeSeriesError(f"series {self.item_id!r} has an infinite value at position {bad}; use NaN for missing values")
        self.start = _as_start(self.start, self.freq)

    def __len__(self) -> int:
        return len(self.target)

    @property
    def observed(self) -> np.ndarray:
        """Boolean mask (T,), True where the target is not NaN."""
        return ~np.isnan(self.target)

    def index(self) -> pd.DatetimeIndex:
        """The time stamps of the values."""
        return pd.date_range(self.start, periods=len(self.target), freq=self.freq)

    def future_index(self, horizon: int) -> pd.DatetimeIndex:
        """The timestamps of the ``horizon`` steps after the end of the series."""
        return pd.date_range(self.start + len(self.target) * _offset(self.freq), periods=horizon, freq=self.freq)

    def slice(self, stop: int, start: int = 0) -> "Series":
        """The sub-series ``target[start:stop]`` with its own start."""
        start = start if start >= 0 else len(self) + start
        stop = stop if stop >= 0 else len(self) + stop
        first = self.start + start * _offset(self.freq)
        return Series(self.target[start:stop].copy(), first, self.freq, self.item_id, dict(self.extra))

    def to_pandas(self) -> pd.Series:
        """A pandas Series with a DatetimeIndex (NaN kept)."""
        return pd.Series(self.target, index=self.index(), name=self.item_id)


def _as_start(start, freq: str) -> pd.Timestamp:
    offset = _offset(freq)
    try:
        if isinstance(start, pd.Period):
            start = start.start_time
        stamp = pd.Timestamp(start)
    except (ValueError, TypeError) as err:
        raise TimeSeriesError(f"cannot read the start {start!r} as a time stamp: {err}") from None
    return stamp if offset.is_on_offset(stamp) else offset.rollback(stamp)


# -- pandas in and out -----------------------------------------------------------------------


def from_pandas(
    data: pd.Series | pd.DataFrame,
    freq: str | None = None,
    *,
    id_column: str = "item_id",
    time_column: str = "timestamp",
    value_column: str = "target",
) -> list[Series]:
    """Series from pandas: a Series, a wide DataFrame (one column per series) or a long
    DataFrame with ``id_column``, ``time_column`` and ``value_column``.

    The time index (or column) must hold datetimes or periods and be strictly increasing
    per series (else :class:`NonMonotonicIndexError`). ``freq`` defaults to the index's
    own frequency or ``pd.infer_freq``; if neither gives one, :class:`UnknownFrequencyError`.
    Stamps absent from a regular index (gaps) become NaN, i.e. missing values, which are
    masked downstream and never filled.
    """
    if isinstance(data, pd.Series):
        return [_series_from_index(data.to_numpy(), data.index, freq, data.name)]
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"expected a pandas Series or DataFrame, got {type(data).__name__}")
    if {id_column, time_column, value_column} <= set(data.columns):
        out = []
        for item, group in data.groupby(id_column, sort=False):
            out.append(_series_from_index(group[value_column].to_numpy(), pd.Index(group[time_column]), freq, item))
        return out
    if time_column in data.columns:
        data = data.set_index(time_column)
    return [_series_from_index(data[c].to_numpy(), data.index, freq, c) for c in data.columns]


def _real(values, name) -> np.ndarray:
    """``values`` as float64, refusing complex and non-numeric values (never cast silently)."""
    if np.iscomplexobj(values) or (isinstance(values, pd.Series) and np.iscomplexobj(values.to_numpy())):
        raise TimeSeriesError(f"series {name!r} holds complex numbers; pass the real values you mean "
                              "(e.g. .real or abs())")
    try:
        return np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError):
        raise TimeSeriesError(f"series {name!r} has non-numeric values; convert them or set them to NaN") from None


def _series_from_index(values, index: pd.Index, freq: str | None, name) -> Series:
    values = _real(values, name)
    if isinstance(index, pd.PeriodIndex):
        stamps = index.to_timestamp()
        freq = freq or index.freqstr
    elif isinstance(index, pd.DatetimeIndex):
        stamps = index
    else:
        try:
            stamps = pd.DatetimeIndex(pd.to_datetime(index))
        except (ValueError, TypeError):
            raise TimeSeriesError(
                f"series {name!r}: the index must hold datetimes or periods, got {index.dtype}; "
                "set a DatetimeIndex (df.index = pd.to_datetime(...))"
            ) from None
    if len(stamps) == 0:
        raise SeriesTooShortError(f"series {name!r} is empty")
    diffs = np.diff(stamps.asi8)
    if (diffs <= 0).any():
        where = int(np.flatnonzero(diffs <= 0)[0])
        raise NonMonotonicIndexError(
            f"series {name!r}: the time index is not strictly increasing at position {where + 1} "
            f"({stamps[where]} then {stamps[where + 1]}); sort it and drop duplicate stamps"
        )
    freq = freq or getattr(index, "freqstr", None) or (pd.infer_freq(stamps) if len(stamps) >= 3 else None)
    if freq is None:
        raise UnknownFrequencyError(
            f"series {name!r}: cannot infer the frequency from the time index; pass freq= (e.g. 'D', 'B', 'h')"
        )
    freq = normalize_freq(freq)
    full = pd.date_range(stamps[0], stamps[-1], freq=freq)
    if not stamps.isin(full).all():
        bad = stamps[~stamps.isin(full)][0]
        raise TimeSeriesError(
            f"series {name!r}: the stamp {bad} is not on the {freq} grid that starts at {stamps[0]}; "
            "pass the right freq= or resample the series"
        )
    if len(full) != len(stamps):  # gaps: missing values, never filled
        values = pd.Series(values, index=stamps).reindex(full).to_numpy()
    return Series(values, stamps[0], freq, name)


def to_pandas(series: Series | Sequence[Series]) -> pd.Series | pd.DataFrame:
    """One series as a pandas Series, several as a wide DataFrame (outer-joined index)."""
    if isinstance(series, Series):
        return series.to_pandas()
    columns = {s.item_id if s.item_id is not None else i: s.to_pandas() for i, s in enumerate(series)}
    return pd.DataFrame(columns)


# -- windows ------------------------------------------------------------------------------


def split_past_future(entry: Series, prediction_length: int) -> tuple[Series, np.ndarray]:
    """A GluonTS test entry -> (the past before the last ``prediction_length`` steps, those steps)."""
    if len(entry) <= prediction_length:
        raise SeriesTooShortError(
            f"series {entry.item_id!r} has {len(entry)} values, not more than the prediction length {prediction_length}"
        )
    return entry.slice(len(entry) - prediction_length), entry.target[-prediction_length:].copy()


def rolling_windows(series: Iterable[Series], prediction_length: int, num_windows: int) -> list[Series]:
    """Rolling test entries as GluonTS builds them (``generate_instances``, ``*_nips`` test sets).

    For each series, ``num_windows`` prefixes ending ``(num_windows - 1 - k) * prediction_length``
    steps before its end, k = 0 .. num_windows - 1, ordered window by window (all series of
    window 0, then window 1 ...), as in the ``*_nips`` test files. Each entry's last
    ``prediction_length`` values are the ones to forecast (:func:`split_past_future`).
    """
    series = list(series)
    if num_windows < 1 or prediction_length < 1:
        raise ValueError(f"num_windows and prediction_length must be >= 1, got {num_windows}, {prediction_length}")
    out = []
    for k in range(num_windows):
        cut = (num_windows - 1 - k) * prediction_length
        for s in series:
            if len(s) - cut <= prediction_length:
                raise SeriesTooShortError(
                    f"series {s.item_id!r} ({len(s)} values) is too short for {num_windows} rolling windows of {prediction_length}"
                )
            out.append(s.slice(len(s) - cut))
    return out
