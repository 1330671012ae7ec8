"""How close synthetic series are to real ones: marginal, autocorrelation and predictive scores.

Synthetic samples (n, L) are compared with windows of L consecutive values of the real
series (the training data):

- ``marginal_w1``: Wasserstein-1 distance between the pooled values of the synthetic and of
  the real windows, each window standardised by its own mean and standard deviation (so the
  score compares shapes, not the levels that sampling borrows from training windows);
- ``acf_distance``: root mean square difference of the mean autocorrelation functions of
  the (standardised) windows at lags 1 .. max(1, L // 4);
- ``lps_synthetic`` / ``lps_real``: TSDiff's *linear predictive score* (Kollovieh et al.
  2023, Sec. 5.3): a ridge regression from the first L - H values of a window to its last
  H values, trained on the synthetic series (resp. on real training windows), tested on
  real held-out windows; the score is the ND (GluonTS's normalised deviation, equal to the
  CRPS of a point forecast) in data units. ``lps_ratio`` = synthetic / real: 1 means the
  synthetic series teach the linear model as much as the real ones.

Real windows for LPS: a GluonTS dataset's test entries (their last L values) against its
training series; for plain series, the last ``TEST_WINDOWS`` rolling windows of each series
(horizons H apart) are held out and the training windows end before them. Windows are
mean-scaled by their context (TSDiff), missing context values replaced by the context mean,
real training windows with missing values left out.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .representation import Series, SeriesTooShortError

__all__ = ["wasserstein1", "acf", "synthetic_metrics", "TEST_WINDOWS", "RIDGE_ALPHA"]

#: held-out rolling windows per series for the predictive score (as exchange_rate_nips' 5)
TEST_WINDOWS = 5
#: ridge penalty on mean-scaled windows
RIDGE_ALPHA = 1.0
#: at most this many real windows per statistic (a fixed-seed subsample)
MAX_WINDOWS = 10000


def wasserstein1(u: np.ndarray, v: np.ndarray) -> float:
    """Wasserstein-1 distance of two 1-D empirical distributions, ``integral |F_u - F_v|``.

    >>> wasserstein1(np.array([0.0, 1.0]), np.array([1.0, 2.0]))
    1.0
    """
    u, v = np.sort(np.asarray(u, np.float64).ravel()), np.sort(np.asarray(v, np.float64).ravel())
    grid = np.sort(np.concatenate([u, v]))
    cdf_u = np.searchsorted(u, grid[:-1], side="right") / len(u)
    cdf_v = np.searchsorted(v, grid[:-1], side="right") / len(v)
    return float(np.sum(np.abs(cdf_u - cdf_v) * np.diff(grid)))


def _standardise(windows: np.ndarray) -> np.ndarray:
    mean = np.nanmean(windows, axis=1, keepdims=True)
    std = np.nanstd(windows, axis=1, keepdims=True)
    floor = 1e-8 * np.maximum(np.nanmean(np.abs(windows), axis=1, keepdims=True), 1.0)
    return (windows - mean) / np.maximum(std, floor)


def acf(windows: np.ndarray, max_lag: int) -> np.ndarray:
    """Mean autocorrelation over windows at lags 1..max_lag. Shapes: (n, L) -> (max_lag,).

    Each window is standardised by its own mean and standard deviation; missing values are skipped."""
    z = _standardise(windows)
    out = []
    for lag in range(1, max_lag + 1):
        prod = z[:, lag:] * z[:, :-lag]
        out.append(np.nanmean(prod))
    return np.asarray(out)


def _windows(series: Sequence[np.ndarray], length: int, rng: np.random.Generator, limit: int = MAX_WINDOWS,
             end_before: Sequence[int] | None = None) -> np.ndarray:
    """Windows (k, length) of consecutive values (stride 1), a fixed-seed subsample of at most ``limit``."""
    index = []
    for j, values in enumerate(series):
        stop = len(values) if end_before is None else end_before[j]
        index += [(j, end) for end in range(length, stop + 1)]
    if not index:
        return np.empty((0, length))
    if len(index) > limit:
        index = [index[i] for i in np.sort(rng.choice(len(index), limit, replace=False))]
    return np.stack([np.asarray(series[j][end - length : end], np.float64) for j, end in index])


def _scaled(context: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean-scaled contexts with missing values set to the context mean; returns (x, scale)."""
    scale = np.nanmean(np.abs(context), axis=1)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    x = context / scale[:, None]
    fill = np.nanmean(x, axis=1, keepdims=True)
    return np.where(np.isnan(x), np.nan_to_num(fill), x), scale


def _ridge(windows: np.ndarray, horizon: int) -> np.ndarray:
    """Ridge weights (C + 1, H) from mean-scaled contexts to mean-scaled futures."""
    x, scale = _scaled(windows[:, :-horizon])
    y = windows[:, -horizon:] / scale[:, None]
    x1 = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    penalty = RIDGE_ALPHA * np.eye(x1.shape[1])
    penalty[-1, -1] = 0.0  # no penalty on the intercept
    return np.linalg.solve(x1.T @ x1 + penalty, x1.T @ y)


def _nd(weights: np.ndarray, tests: np.ndarray, horizon: int) -> float:
    x, scale = _scaled(tests[:, :-horizon])
    pred = (np.concatenate([x, np.ones((len(x), 1))], axis=1) @ weights) * scale[:, None]
    truth = tests[:, -horizon:]
    ok = ~np.isnan(truth)
    return float(np.abs(truth - pred)[ok].sum() / max(np.abs(truth)[ok].sum(), 1e-12))


def synthetic_metrics(samples: np.ndarray, train: Sequence[Series | np.ndarray], *, horizon: int | None = None,
                      test: Sequence[Series | np.ndarray] = (), seed: int = 0) -> dict[str, float]:
    """Scores of synthetic series (n, L) against real series (module docstring).

    Args:
        samples: synthetic series (n, L) in data units.
        train: the real series (the training data).
        horizon: H of the predictive score (default: max(1, L // 5), the last fifth, which is
            the prediction length for windows of context 4 x H).
        test: a GluonTS test set (entries whose last H values are the truth); empty: hold out
            the last windows of ``train``.
        seed: of the real-window subsample.

    Returns:
        ``marginal_w1``, ``acf_distance``, ``lps_synthetic``, ``lps_real``, ``lps_ratio``,
        ``lps_horizon``, ``lps_real_train_windows`` / ``lps_test_windows`` (the real windows the
        ridge baseline trained on / all scores were tested on: few training windows make
        ``lps_real`` a weak baseline), ``num_synthetic``, ``num_real_windows``.
    """
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 2 or samples.shape[1] < 3:
        raise ValueError(f"synthetic series must be (n, L) with L >= 3, got shape {samples.shape}")
    if not np.isfinite(samples).all():
        bad = int(np.flatnonzero(~np.isfinite(samples).all(axis=1))[0])
        raise ValueError(f"synthetic series {bad} has NaN or infinite values")
    n, length = samples.shape
    horizon = int(horizon or max(1, length // 5))
    if not 1 <= horizon < length:
        raise ValueError(f"the predictive score needs 1 <= horizon < length, got horizon {horizon}, length {length}")
    values = [np.asarray(s.target if isinstance(s, Series) else s, np.float64) for s in train]
    rng = np.random.default_rng(seed)
    real = _windows(values, length, rng)
    if len(real) < 2:
        longest = max((len(v) for v in values), default=0)
        raise SeriesTooShortError(
            f"the reference series are too short for windows of the synthetic length {length} (the longest has "
            f"{longest} values); sample shorter series (--length) or give longer reference series"
        )
    real = real[np.isfinite(real).mean(axis=1) >= 0.5]
    max_lag = max(1, length // 4)
    out = {
        "marginal_w1": wasserstein1(_finite(_standardise(samples)), _finite(_standardise(real))),
        "acf_distance": float(np.sqrt(np.mean((acf(samples, max_lag) - acf(real, max_lag)) ** 2))),
    }
    tests, fit_real = _predictive_split(values, test, length, horizon, rng)
    out["lps_synthetic"] = _nd(_ridge(samples, horizon), tests, horizon)
    out["lps_real"] = _nd(_ridge(fit_real, horizon), tests, horizon) if len(fit_real) else float("nan")
    out["lps_ratio"] = out["lps_synthetic"] / out["lps_real"] if out["lps_real"] > 0 else float("nan")
    out.update(lps_horizon=float(horizon), lps_real_train_windows=float(len(fit_real)),
               lps_test_windows=float(len(tests)), num_synthetic=float(n), num_real_windows=float(len(real)))
    return out


def _finite(x: np.ndarray) -> np.ndarray:
    return x[np.isfinite(x)]


def _predictive_split(values, test, length, horizon, rng) -> tuple[np.ndarray, np.ndarray]:
    """(real test windows, real training windows without missing values), both (k, length)."""
    if len(test):
        tests = [np.asarray(t.target if isinstance(t, Series) else t, np.float64)[-length:] for t in test]
        tests = np.stack([t for t in tests if len(t) == length]) if any(len(t) == length for t in tests) else None
        fit = _windows(values, length, rng)
    else:
        tests, ends = [], []
        for v in values:
            k = max(0, min(TEST_WINDOWS, (len(v) - length) // horizon + 1))
            tests += [v[len(v) - i * horizon - length : len(v) - i * horizon] for i in range(k)]
            ends.append(len(v) - k * horizon)
        tests = np.stack(tests) if tests else None
        fit = _windows(values, length, rng, end_before=ends)
    if tests is None:
        raise SeriesTooShortError(f"no reference series has {length} values for a test window of the predictive score")
    fit = fit[np.isfinite(fit).all(axis=1)] if len(fit) else fit
    return tests, fit
