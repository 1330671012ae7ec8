"""Baseline forecasters, measured with the same metrics code as the diffusion model.

- :func:`seasonal_naive`: GluonTS's ``SeasonalNaivePredictor``: the forecast repeats the
  last season, ``y_hat[T + k] = y[T - m + (k mod m)]``, m = :func:`seasonality` of the
  frequency; one sample path. A missing seasonal value is taken from the latest observed
  value of the same phase; a past shorter than m is forecast by its mean.
- :class:`RidgeForecaster`: a linear map from the mean-scaled last ``context_length`` values
  to the next ``prediction_length`` (TSDiff's "Linear" baseline, fitted in closed form with
  an L2 penalty chosen on a hold-out), made probabilistic by adding residual vectors drawn
  from its own training residuals (so the spread grows with the horizon as the errors do).
- :func:`random_walk`: the last value plus Gaussian increments with the series' volatility
  (the standard deviation of its first differences over its last ``window`` values), as
  sample paths: the anchor that fits random-walk data such as exchange rates.
- :func:`seasonal_difference_naive`: the value one season back plus noise drawn from the
  series' own seasonal differences, as sample paths (a seasonal random walk): the anchor that
  fits seasonal data.

The two path baselines take one past (T,) -> (num_samples, H) or several -> (B, num_samples,
H), like ``TimeSeriesGenerator.forecast``, and draw from an explicit ``generator`` (a
``numpy.random.Generator`` or an int seed). Missing values (NaN) in a past are skipped, never
filled: see each function for how they enter.
"""

from __future__ import annotations

import numbers
from typing import Any, Sequence

import numpy as np

from sciogen.train.checks import optional_positive_int, positive_int

from .representation import Series, SeriesTooShortError

__all__ = ["seasonal_naive", "RidgeForecaster", "random_walk", "seasonal_difference_naive"]


def seasonal_naive(pasts: Sequence[np.ndarray], prediction_length: int, season: int) -> np.ndarray:
    """Seasonal Naive forecasts. Shapes: B pasts -> (B, 1, prediction_length)."""
    out = np.empty((len(pasts), 1, prediction_length))
    for b, past in enumerate(pasts):
        past = np.asarray(past, dtype=np.float64)
        if len(past) < season or np.isnan(past).all():
            out[b, 0] = np.nanmean(past) if len(past) and not np.isnan(past).all() else np.nan
            continue
        for k in range(prediction_length):
            i = len(past) - season + k % season
            while i >= 0 and np.isnan(past[i]):
                i -= season
            out[b, 0, k] = past[i] if i >= 0 else np.nanmean(past)
    return out


def _scaled_windows(values: np.ndarray, context: int, horizon: int):
    """All (context, future) windows of one series, divided by the context's mean |value|."""
    width = context + horizon
    if len(values) < width:
        return np.empty((0, context)), np.empty((0, horizon))
    win = np.lib.stride_tricks.sliding_window_view(values, width)
    win = win[~np.isnan(win).any(axis=1)]
    scale = np.abs(win[:, :context]).mean(axis=1, keepdims=True)
    scale = np.where(scale > 0, scale, 1.0)
    win = win / scale
    return win[:, :context], win[:, context:]


class RidgeForecaster:
    """Probabilistic ridge regression from the last ``context_length`` values (mean-scaled)
    to the next ``prediction_length``.

    Args:
        prediction_length: horizon H.
        context_length: inputs (default 4 H).
        alphas: L2 penalties tried; the one with the least hold-out error (the last H steps
            of every training series) is kept, then the model is refitted on everything.
        seed: randomness of the residual draws.
    """

    def __init__(self, prediction_length: int, context_length: int | None = None,
                 alphas: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0), seed: int = 0):
        self.prediction_length = int(prediction_length)
        self.context_length = int(context_length or 4 * prediction_length)
        self.alphas = tuple(alphas)
        self.seed = seed
        self.weights: np.ndarray | None = None
        self.residuals: np.ndarray | None = None
        self.alpha: float | None = None

    def _design(self, series: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        parts = [_scaled_windows(np.asarray(s, dtype=np.float64), self.context_length, self.prediction_length) for s in series]
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        if len(x) == 0:
            raise SeriesTooShortError(
                f"no complete window of context {self.context_length} + prediction {self.prediction_length} in the training series"
            )
        return np.hstack([x, np.ones((len(x), 1))]), y

    @staticmethod
    def _solve(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
        penalty = alpha * np.eye(x.shape[1])
        penalty[-1, -1] = 0.0  # no penalty on the intercept
        return np.linalg.solve(x.T @ x + penalty, x.T @ y)

    def fit(self, series: Sequence[Series | np.ndarray]) -> "RidgeForecaster":
        """Fit on training series (arrays or :class:`Series`; NaN windows are skipped)."""
        values = [s.target if isinstance(s, Series) else np.asarray(s, dtype=np.float64) for s in series]
        h = self.prediction_length
        head = [v[:-h] for v in values if len(v) > h]
        tail = [v[-(self.context_length + h):] for v in values if len(v) > h]
        try:
            x_fit, y_fit = self._design(head)
            x_val, y_val = self._design(tail)
            errors = [np.mean((x_val @ self._solve(x_fit, y_fit, a) - y_val) ** 2) for a in self.alphas]
            self.alpha = self.alphas[int(np.argmin(errors))]
        except SeriesTooShortError:
            self.alpha = self.alphas[len(self.alphas) // 2]
        x, y = self._design(values)
        self.weights = self._solve(x, y, self.alpha)
        self.residuals = y - x @ self.weights
        return self

    def predict(self, pasts: Sequence[np.ndarray], num_samples: int = 100) -> np.ndarray:
        """Sample paths (B, num_samples, H): point forecast + bootstrapped residual vectors,
        in data units. Missing context values are replaced by the context mean."""
        if self.weights is None:
            raise RuntimeError("call fit() before predict()")
        rng = np.random.default_rng(self.seed)
        out = np.empty((len(pasts), num_samples, self.prediction_length))
        for b, past in enumerate(pasts):
            ctx = np.asarray(past, dtype=np.float64)[-self.context_length :]
            if len(ctx) < self.context_length:
                raise SeriesTooShortError(f"context {b} has {len(ctx)} values, the ridge model needs {self.context_length}")
            if np.isnan(ctx).all():
                raise ValueError(f"context {b} has no observed value")
            ctx = np.where(np.isnan(ctx), np.nanmean(ctx), ctx)
            scale = np.abs(ctx).mean() or 1.0
            point = np.append(ctx / scale, 1.0) @ self.weights
            draws = self.residuals[rng.integers(0, len(self.residuals), num_samples)]
            out[b] = (point + draws) * scale
        return out


# -- sample-path baselines -------------------------------------------------------------------------


def _path_pasts(pasts: Any) -> tuple[list[np.ndarray], bool]:
    """One past (1-D array, :class:`Series`) or several (sequence of them, 2-D array) as float64
    arrays, each checked: real, 1-D, finite or NaN (missing). Returns (pasts, single)."""
    if isinstance(pasts, Series):
        return [np.asarray(pasts.target, dtype=np.float64)], True
    single = not isinstance(pasts, (list, tuple)) and np.ndim(pasts) == 1
    items = [pasts] if single else list(pasts)
    if not items:
        raise ValueError("pasts is empty; give one series (T,) or several (B, T)")
    out = []
    for i, item in enumerate(items):
        values = item.target if isinstance(item, Series) else item
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"past {i} is not an array of real numbers (NaN = missing)") from None
        if arr.ndim != 1:
            raise ValueError(f"past {i} must be 1-D (T,), got shape {arr.shape}")
        if np.isinf(arr).any():
            raise ValueError(f"past {i} has an infinite value at index {int(np.flatnonzero(np.isinf(arr))[0])}; "
                             "use NaN for a missing value")
        out.append(arr)
    return out, single


def _rng(generator: Any) -> np.random.Generator:
    if generator is None or isinstance(generator, np.random.Generator):
        return np.random.default_rng(generator)
    if isinstance(generator, numbers.Integral) and not isinstance(generator, bool) and generator >= 0:
        return np.random.default_rng(int(generator))
    raise ValueError(f"generator must be a numpy.random.Generator, a non-negative int seed or None, "
                     f"got {generator!r}")


def random_walk(pasts: Any, prediction_length: int, num_samples: int = 100, *, window: int = 200,
                generator: np.random.Generator | int | None = None) -> np.ndarray:
    """Random walk with volatility: sample paths of the last value plus Gaussian increments,

        y_hat[T + h] = y[T] + sigma (eps_1 + ... + eps_h),   eps ~ N(0, 1),   h = 1 .. H,

    sigma = the sample standard deviation (ddof 1) of the first differences y_t - y_{t-1} over
    the last ``window`` values of the past. No drift.

    Missing values: a difference with a missing end is left out (a gap is not bridged), so
    sigma needs at least two pairs of consecutive observed values in the window. The walk
    starts from the last *observed* value; when the last g values of the past are missing,
    their g unobserved steps are drawn too (the spread at horizon h is sigma sqrt(g + h)).

    Args:
        pasts: one past (T,) or several (B pasts, ragged allowed); NaN = missing.
        prediction_length: horizon H.
        num_samples: paths per past.
        window: values used for the volatility.
        generator: ``numpy.random.Generator`` or int seed (None: fresh entropy). Pasts are
            drawn in order, ``num_samples x (g + H)`` normals each.

    Returns:
        float64 (num_samples, H) for one past, (B, num_samples, H) for several.
    """
    horizon = positive_int("prediction_length", prediction_length)
    n = positive_int("num_samples", num_samples)
    window = positive_int("window", window, minimum=3)
    items, single = _path_pasts(pasts)
    sigmas, starts, gaps = [], [], []
    for b, past in enumerate(items):
        observed = np.flatnonzero(~np.isnan(past))
        if len(observed) == 0:
            raise ValueError(f"past {b} has no observed value")
        diffs = np.diff(past[-window:])
        diffs = diffs[~np.isnan(diffs)]
        if len(diffs) < 2:
            raise ValueError(f"past {b}: {len(diffs)} pair(s) of consecutive observed values in its last {window} "
                             "values; the volatility needs at least 2 (give a longer past or a larger window)")
        sigmas.append(float(np.std(diffs, ddof=1)))
        starts.append(past[observed[-1]])
        gaps.append(len(past) - 1 - int(observed[-1]))
    rng = _rng(generator)
    out = np.empty((len(items), n, horizon))
    for b, (sigma, start, gap) in enumerate(zip(sigmas, starts, gaps)):
        steps = rng.standard_normal((n, gap + horizon)) * sigma
        out[b] = start + np.cumsum(steps, axis=1)[:, gap:]
    return out[0] if single else out


def seasonal_difference_naive(pasts: Any, prediction_length: int, season: int, num_samples: int = 100, *,
                              window: int | None = None,
                              generator: np.random.Generator | int | None = None) -> np.ndarray:
    """Seasonal naive with seasonal-difference noise (a seasonal random walk), as sample paths:

        y_hat[T + h] = y_hat[T + h - m] + d,   d drawn with replacement from
                       {y_t - y_{t-m}} over the last ``window`` values of the past,

    with m = ``season`` and y_hat = y on the past: steps within the first season start from the
    value one season back, later ones from the path's own value one season earlier, so the
    spread grows season by season. The differences are resampled as they are (their mean, a
    trend, is kept).

    Missing values: a seasonal difference with a missing end is left out (at least 2 observed
    ones are needed). When the value one season back is missing, the latest observed value of
    the same phase, k seasons back, is used with k differences drawn (as k seasonal steps); a
    phase with no observed value in the past is refused.

    Args:
        pasts: one past (T,) or several (B pasts, ragged allowed); NaN = missing.
        prediction_length: horizon H.
        season: m, e.g. ``seasonality(freq)``; 1 gives a bootstrapped random walk.
        num_samples: paths per past.
        window: values whose seasonal differences are drawn (default max(200, 4 m)).
        generator: ``numpy.random.Generator`` or int seed (None: fresh entropy).

    Returns:
        float64 (num_samples, H) for one past, (B, num_samples, H) for several.
    """
    horizon = positive_int("prediction_length", prediction_length)
    m = positive_int("season", season)
    n = positive_int("num_samples", num_samples)
    window = optional_positive_int("window", window, minimum=m + 2) or max(200, 4 * m)
    items, single = _path_pasts(pasts)
    plans = []
    for b, past in enumerate(items):
        recent = past[-window:]
        diffs = recent[m:] - recent[:-m]
        diffs = diffs[~np.isnan(diffs)]
        if len(diffs) < 2:
            raise ValueError(f"past {b}: {len(diffs)} observed seasonal difference(s) (lag {m}) in its last "
                             f"{window} values; at least 2 are needed (give a longer past or a larger window)")
        bases = []
        for h in range(min(m, horizon)):
            i, k = len(past) - m + h, 1
            while i >= 0 and np.isnan(past[i]):
                i, k = i - m, k + 1
            if i < 0:
                raise ValueError(f"past {b} has no observed value at the phase of forecast step {h + 1} "
                                 f"(positions {len(past) - m + h} - k {m}); give a longer past")
            bases.append((past[i], k))
        plans.append((diffs, bases))
    rng = _rng(generator)
    out = np.empty((len(items), n, horizon))
    for b, (diffs, bases) in enumerate(plans):
        for h in range(horizon):
            base, k = bases[h] if h < m else (out[b, :, h - m], 1)
            out[b, :, h] = base + diffs[rng.integers(0, len(diffs), (n, k))].sum(axis=1)
    return out[0] if single else out
