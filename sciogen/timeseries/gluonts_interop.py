"""GluonTS-native interfaces: datasets in, ``SampleForecast`` out, a ``Predictor``, long frames.

GluonTS is optional: this module imports without it, and only :func:`to_sample_forecasts` and
:meth:`SciogenPredictor.predict` need it (``pip install gluonts``; it asks for pandas < 3).

- :func:`from_gluonts`: a ``ListDataset``-style iterable of dicts (``start``, ``target``,
  optional ``item_id``, ``feat_static_cat``, ``feat_dynamic_real``, ...) -> a list of
  :class:`~sciogen.timeseries.representation.Series`, what ``gen.forecast`` takes;
- :func:`to_sample_forecasts`: forecast paths (S, H) / (B, S, H) -> GluonTS ``SampleForecast``
  objects (``samples`` (S, H), ``start_date`` a ``pd.Period``, ``item_id``);
- :class:`SciogenPredictor`: GluonTS's ``Predictor`` interface (``prediction_length``,
  ``lead_time``, ``predict(dataset, num_samples=...)`` yielding ``SampleForecast``) over a
  :class:`~sciogen.timeseries.generator.TimeSeriesGenerator`, so that
  ``gluonts.evaluation.make_evaluation_predictions`` and ``Evaluator`` / ``backtest_metrics``
  run on sciogen models::

      from gluonts.evaluation import Evaluator, make_evaluation_predictions
      forecasts, truth = make_evaluation_predictions(test_ds, SciogenPredictor(gen), num_samples=100)
      agg, per_item = Evaluator()(truth, forecasts)

  ``agg["mean_wQuantileLoss"]`` equals ``sciogen.timeseries.metrics.evaluate(...)["CRPS"]``
  on the same paths (the metrics module computes GluonTS's estimators exactly);
- :func:`to_long_frame`: any forecast -> a pandas long-format frame, one row per (series,
  step): ``item_id``, ``timestamp``, ``mean``, one column per quantile (``"0.1"`` ...) and,
  on request, ``sample_0`` .. ``sample_{S-1}``.

Covariates: the univariate TSDiff model takes none; ``feat_static_cat``, ``feat_dynamic_real``
and any other fields are checked (shapes against the target) and kept in ``Series.extra``,
not used by the forecast.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Sequence

import numpy as np

from .representation import Series, TimeSeriesError

__all__ = ["from_gluonts", "to_sample_forecasts", "to_long_frame", "SciogenPredictor", "LONG_FRAME_QUANTILES"]

#: the quantile columns of :func:`to_long_frame` by default (those of ``forecast_frame``)
LONG_FRAME_QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


def _require_gluonts():
    try:
        from gluonts.model.forecast import SampleForecast
    except ImportError:
        raise ImportError("this needs GluonTS: pip install 'sciogen[gluonts]' (or pip install gluonts)") from None
    return SampleForecast


def _label(entry: Mapping, i: int) -> str:
    item = entry.get("item_id") if isinstance(entry, Mapping) else None
    return f"entry {i}" + (f" (item_id {item!r})" if item is not None else "")


def _entry_target(entry: Mapping, where: str) -> np.ndarray:
    try:
        target = np.asarray(entry["target"], dtype=np.float64)
    except (TypeError, ValueError):
        raise TimeSeriesError(f"{where}: 'target' is not an array of numbers (use NaN for missing values)") from None
    if target.ndim != 1:
        raise TimeSeriesError(f"{where}: target has shape {target.shape}; sciogen's univariate model takes 1-D "
                              "targets: split a multivariate entry into one entry per series")
    if target.size == 0:
        raise TimeSeriesError(f"{where}: the target is empty")
    return target


def _entry_freq(start: Any, freq: str | None, where: str) -> str:
    import pandas as pd

    if isinstance(start, pd.Period):
        return freq or start.freqstr
    if freq is None:
        raise TimeSeriesError(f"{where}: start {start!r} is not a pd.Period, so it carries no frequency; pass freq= "
                              "(a pandas alias such as 'D', 'B', 'h')")
    return freq


def _check_covariates(entry: Mapping, length: int, where: str) -> None:
    if "feat_static_cat" in entry:
        cat = np.asarray(entry["feat_static_cat"])
        if cat.ndim != 1 or not np.issubdtype(cat.dtype, np.integer) and not np.all(np.mod(cat, 1) == 0):
            raise TimeSeriesError(f"{where}: feat_static_cat must be a 1-D array of integer categories, got {cat!r}")
    for key in ("feat_dynamic_real", "past_feat_dynamic_real"):
        if key in entry:
            feat = np.asarray(entry[key], dtype=np.float64)
            if feat.ndim != 2 or feat.shape[1] < length:
                raise TimeSeriesError(f"{where}: {key} must be (num_features, T) with at least the target's {length} "
                                      f"steps, got shape {feat.shape}")


def from_gluonts(dataset: Iterable[Mapping], freq: str | None = None) -> list[Series]:
    """A GluonTS ``ListDataset``-style iterable -> series for ``gen.forecast`` / ``fit``.

    Args:
        dataset: dicts with ``start`` (a ``pd.Period``, or a timestamp / string with
            ``freq``), ``target`` (T,) (NaN = missing) and optionally ``item_id``,
            ``feat_static_cat`` (C,) integers, ``feat_dynamic_real`` (K, T or more), ...
            (a GluonTS ``ListDataset`` or ``FileDataset``, the ``input`` of a test split).
        freq: frequency for starts that are not periods (a period's own wins when None).

    Returns:
        One :class:`Series` per entry, in order; the fields other than start, target and
        item_id in ``Series.extra`` (not used by the univariate model).

    Raises:
        TimeSeriesError: naming the entry: no start / target, a multivariate or empty target,
            a start without a frequency, covariates of the wrong shape.
    """
    out = []
    for i, entry in enumerate(dataset):
        where = _label(entry, i)
        if not isinstance(entry, Mapping) or "target" not in entry or "start" not in entry:
            keys = sorted(entry) if isinstance(entry, Mapping) else type(entry).__name__
            raise TimeSeriesError(f"{where}: a GluonTS entry is a dict with 'start' and 'target', got {keys}")
        target = _entry_target(entry, where)
        _check_covariates(entry, len(target), where)
        f = _entry_freq(entry["start"], freq, where)
        extra = {k: v for k, v in entry.items() if k not in ("target", "start", "item_id")}
        try:
            out.append(Series(target, entry["start"], f, entry.get("item_id"), extra))
        except TimeSeriesError as err:
            raise TimeSeriesError(f"{where}: {err}") from None
    if not out:
        raise TimeSeriesError("the dataset holds no entries")
    return out


def _period(stamp: Any, freq: str):
    """A timestamp as a ``pd.Period`` of ``freq`` (period aliases: 'ME' -> 'M', 'QE' -> 'Q' ...)."""
    import pandas as pd

    if isinstance(stamp, pd.Period):
        return stamp
    try:
        return pd.Period(stamp, freq=freq)
    except (ValueError, TypeError):
        return pd.Period(stamp, freq=re.sub(r"^(\d*)(B?[MQY]|BA|A)E?S?(-.+)?$", r"\1\2\3", freq))


def to_sample_forecasts(paths: Any, start_dates: Sequence[Any] | None = None, item_ids: Sequence[Any] | None = None,
                        freq: str | None = None) -> list:
    """Forecast paths -> GluonTS ``SampleForecast`` objects, one per series.

    Args:
        paths: (S, H) or (B, S, H), e.g. ``gen.forecast(list_of_series)`` (a
            :class:`~sciogen.timeseries.io.ForecastPaths`: its ``item_ids`` and
            ``timestamps`` give the defaults below).
        start_dates: B first forecast steps (``pd.Period``, or timestamps with ``freq``);
            default the first of each series' ``timestamps``.
        item_ids: B names (default the paths' ``item_ids``, else None).
        freq: the frequency of timestamp starts (default that of the ``timestamps``).

    Returns:
        B ``gluonts.model.forecast.SampleForecast`` with ``samples`` (S, H) float64.
    """
    sample_forecast = _require_gluonts()
    arr = np.asarray(paths, dtype=np.float64)
    if arr.ndim not in (2, 3):
        raise ValueError(f"forecast paths must be (S, H) or (B, S, H), got shape {arr.shape}")
    blocks = arr[None] if arr.ndim == 2 else arr
    if not np.isfinite(blocks).all():
        b = int(np.argwhere(~np.isfinite(blocks))[0, 0])
        raise ValueError(f"the forecast paths of series {b} hold NaN or inf")
    stamps = getattr(paths, "timestamps", None)
    if start_dates is None:
        if stamps is None:
            raise ValueError("the paths carry no timestamps (an array context): pass start_dates= (B pd.Period)")
        start_dates = [s[0] for s in stamps]
        if freq is None:
            freq = getattr(stamps[0], "freqstr", None)
    ids = item_ids if item_ids is not None else getattr(paths, "item_ids", None)
    if len(start_dates) != len(blocks) or (ids is not None and len(ids) != len(blocks)):
        raise ValueError(f"{len(blocks)} forecast series, {len(start_dates)} start_dates and "
                         f"{len(ids) if ids is not None else 'no'} item_ids")
    import pandas as pd

    out = []
    for b, (samples, start) in enumerate(zip(blocks, start_dates)):
        if not isinstance(start, pd.Period) and freq is None:
            raise ValueError(f"start_dates[{b}] = {start!r} is not a pd.Period; pass freq=")
        out.append(sample_forecast(samples=samples.copy(), start_date=_period(start, freq),
                                   item_id=None if ids is None else ids[b]))
    return out


def to_long_frame(paths: Any, quantiles: Sequence[float] = LONG_FRAME_QUANTILES, *, samples: bool = False,
                  item_ids: Sequence[Any] | None = None, timestamps: Sequence[Any] | None = None):
    """Any forecast -> a pandas long-format frame: one row per (series, step).

    Columns: ``item_id``, ``timestamp``, ``mean``, one per quantile named ``f"{q:g}"``
    (GluonTS's sample quantiles, as ``forecast_frame``), then with ``samples``
    ``sample_0`` .. ``sample_{S-1}`` (the layout :func:`sciogen.timeseries.io.write_forecast`
    writes). Series in order, steps in time order.

    Args:
        paths: (S, H) or (B, S, H); a :class:`~sciogen.timeseries.io.ForecastPaths` (what
            ``gen.forecast`` returns) supplies ``item_ids`` and ``timestamps``; a list of
            GluonTS ``SampleForecast`` is read too (their ``item_id`` and ``index``).
        quantiles: levels in (0, 1).
        samples: add the sample columns.
        item_ids, timestamps: override (B names; B sequences of H stamps). Defaults 0, 1, ...
            and the steps 1 .. H (integers) when the paths carry none.
    """
    import pandas as pd

    from .metrics import _level, sample_quantiles

    levels = [_level(q, f"quantiles[{i}]") for i, q in enumerate(quantiles)]
    if isinstance(paths, (list, tuple)) and paths and all(hasattr(f, "samples") and hasattr(f, "start_date")
                                                        for f in paths):
        item_ids = item_ids if item_ids is not None else [f.item_id for f in paths]
        timestamps = timestamps if timestamps is not None else [f.index.to_timestamp() for f in paths]
        paths = np.stack([np.asarray(f.samples, dtype=np.float64) for f in paths])
    arr = np.asarray(paths, dtype=np.float64)
    if arr.ndim not in (2, 3):
        raise ValueError(f"forecast paths must be (S, H) or (B, S, H), got shape {arr.shape}")
    blocks = arr[None] if arr.ndim == 2 else arr
    num_series, num_samples, horizon = blocks.shape
    if not np.isfinite(blocks).all():
        b = int(np.argwhere(~np.isfinite(blocks))[0, 0])
        raise ValueError(f"the forecast paths of series {b} hold NaN or inf")
    ids = item_ids if item_ids is not None else getattr(paths, "item_ids", None)
    ids = list(range(num_series)) if ids is None else list(ids)
    stamps = timestamps if timestamps is not None else getattr(paths, "timestamps", None)
    stamps = [range(1, horizon + 1)] * num_series if stamps is None else list(stamps)
    if len(ids) != num_series or len(stamps) != num_series or any(len(t) != horizon for t in stamps):
        raise ValueError(f"{num_series} forecast series of {horizon} steps need as many item_ids and timestamp "
                         f"sequences of {horizon} stamps, got {len(ids)} and {[len(t) for t in stamps]}")
    table = {
        "item_id": np.repeat(np.asarray(ids, dtype=object), horizon),
        "timestamp": [t for row in stamps for t in row],
        "mean": blocks.mean(axis=1).reshape(-1),
    }
    qs = np.stack([sample_quantiles(b, levels) for b in blocks])  # (B, Q, H)
    for k, q in enumerate(levels):
        table[f"{q:g}"] = qs[:, k, :].reshape(-1)
    if samples:
        for s in range(num_samples):
            table[f"sample_{s}"] = blocks[:, s, :].reshape(-1)
    return pd.DataFrame(table)


class SciogenPredictor:
    """GluonTS's ``Predictor`` interface over a sciogen forecaster (duck-typed: GluonTS's
    backtest functions only read ``prediction_length`` / ``lead_time`` and call ``predict``;
    gluonts is imported only when predicting).

    Args:
        generator: a :class:`~sciogen.timeseries.generator.TimeSeriesGenerator` (anything with
            its ``forecast(context, prediction_length, num_samples, seed=, **options)``).
        prediction_length: horizon (default the generator's).
        calibration: a :class:`~sciogen.timeseries.calibration.ConformalCalibration`
            (``generator.calibrate``) applied to every forecast, or None.
        seed: randomness; batch k of entries is forecast with ``seed + k``.
        batch_size: entries forecast together (memory: batch_size x num_samples paths).
        freq: frequency for entries whose start is not a ``pd.Period``.
        **guidance: forecasting options passed on (``**gen.FAST_GUIDANCE`` ...).
    """

    lead_time = 0

    def __init__(self, generator: Any, prediction_length: int | None = None, *, calibration: Any = None,
                 seed: int = 0, batch_size: int = 64, freq: str | None = None, **guidance):
        from sciogen.train.checks import optional_positive_int, positive_int

        horizon = optional_positive_int("prediction_length", prediction_length)
        self.generator = generator
        self.prediction_length = horizon or int(generator.prediction_length)
        self.calibration = calibration
        self.seed = int(seed)
        self.batch_size = positive_int("batch_size", batch_size)
        self.freq = freq
        self.guidance = guidance

    def predict(self, dataset: Iterable[Mapping], num_samples: int | None = None, **kwargs):
        """Forecast the ``prediction_length`` steps after each entry's target.

        Yields:
            One GluonTS ``SampleForecast`` per entry, in order: ``samples`` (num_samples, H),
            ``start_date`` the period after the target's last, ``item_id`` the entry's.
        """
        if kwargs:
            raise TypeError(f"SciogenPredictor.predict takes dataset and num_samples, got {sorted(kwargs)}")
        sample_forecast = _require_gluonts()
        if num_samples is None and self.calibration is not None:
            num_samples = self.calibration.num_samples
        batch: list[tuple[Mapping, Series]] = []
        k = 0
        for entry in dataset:
            batch.append((entry, from_gluonts([entry], self.freq)[0]))
            if len(batch) == self.batch_size:
                yield from self._forecast_batch(batch, num_samples, self.seed + k, sample_forecast)
                batch, k = [], k + 1
        if batch:
            yield from self._forecast_batch(batch, num_samples, self.seed + k, sample_forecast)

    def _forecast_batch(self, batch, num_samples, seed, sample_forecast):
        import pandas as pd

        series = [s for _, s in batch]
        options = dict(self.guidance)
        if self.calibration is not None:
            options["calibration"] = self.calibration
        paths = self.generator.forecast(series, self.prediction_length, num_samples, seed=seed, **options)
        for (entry, s), samples in zip(batch, np.asarray(paths)):
            start = entry["start"]
            first = start + len(s) if isinstance(start, pd.Period) else _period(s.future_index(1)[0], s.freq)
            yield sample_forecast(samples=samples, start_date=first, item_id=entry.get("item_id"))
