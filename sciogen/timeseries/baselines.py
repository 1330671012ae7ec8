"""Baseline forecasters, measured with the same metrics code as the diffusion model.

- :func:`seasonal_naive`: GluonTS's ``SeasonalNaivePredictor``: the forecast repeats the
  last season, ``y_hat[T + k] = y[T - m + (k mod m)]``, m = :func:`seasonality` of the
  frequency; one sample path. A missing seasonal value is taken from the latest observed
  value of the same phase; a past shorter than m is forecast by its mean.
- :class:`RidgeForecaster`: a linear map from the mean-scaled last ``context_length`` values
  to the next ``prediction_length`` (TSDiff's "Linear" baseline, fitted in closed form with
  an L2 penalty chosen on a hold-out), made probabilistic by adding residual vectors drawn
  from its own training residuals (so the spread grows with the horizon as the errors do).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .representation import Series, SeriesTooShortError

__all__ = ["seasonal_naive", "RidgeForecaster"]


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
