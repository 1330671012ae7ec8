"""Forecast metrics exactly as GluonTS's ``Evaluator`` computes them (no gluonts needed).

For item i (one series and window) with truth ``y`` (H,), sample paths (S, H), NaN in the
truth masked (``ignore_invalid_values``):

    quantile forecast  q_hat(q) = sorted(samples)[round((S - 1) q)]        (SampleForecast.quantile)
    QL_i(q)            = 2 sum_h |(q_hat_h - y_h) ((y_h <= q_hat_h) - q)|
    abs_error_i        = sum_h |y_h - q_hat_h(0.5)|,    abs_target_sum_i = sum_h |y_h|
    MSE_i              = mean_h (y_h - mean_s samples)^2
    MASE_i             = mean_h |y_h - q_hat_h(0.5)| / seasonal_error_i,
    seasonal_error_i   = mean_t |x_t - x_{t-m}| over the past x, m = seasonality(freq)
                         (m = 1 when the past is not longer than m)

and over items:

    wQuantileLoss(q)   = sum_i QL_i(q) / sum_i abs_target_sum_i
    CRPS               = mean_wQuantileLoss = mean over q in 0.1, ..., 0.9
    ND                 = sum_i abs_error_i / sum_i abs_target_sum_i
    NRMSE              = sqrt(mean_i MSE_i) / mean_i mean_h |y_h|
    MASE               = mean_i MASE_i

Rounding is NumPy's (half to even), as in GluonTS. Beside them, calibration (not a GluonTS
metric): the central interval at level c of item i is [q_hat((1 - c) / 2), q_hat((1 + c) / 2)]
(the same quantile estimator), and

    IntervalCoverage[c] = #{(i, h): q_hat_lo <= y_h <= q_hat_hi} / #{(i, h): y_h observed}

pooled over items and steps, for c in 0.5, 0.8, 0.9 (:func:`interval_coverage`). With S = 100
paths these intervals hold exactly 50, 80 and 90 of the paths.

For D series forecast jointly, :func:`crps_sum` is GluonTS's ``MultivariateEvaluator``
``m_sum_mean_wQuantileLoss`` as TimeGrad (Rasul et al. 2021) reports it: the paths and the
truth summed over the D series at every step, then the mean weighted quantile loss of that
one aggregate series over the quantiles 0.05, 0.10, .., 0.95 (a step where any series is
missing is masked).
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from .representation import Series, seasonality, split_past_future

__all__ = ["QUANTILES", "COVERAGE_LEVELS", "CRPS_SUM_QUANTILES", "sample_quantiles", "central_interval",
           "interval_coverage", "crps_sum", "seasonal_error", "evaluate", "evaluate_dataset", "split_test_set"]

QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
COVERAGE_LEVELS = (0.5, 0.8, 0.9)
CRPS_SUM_QUANTILES = tuple(round(k / 20, 2) for k in range(1, 20))  # TimeGrad's MultivariateEvaluator


def sample_quantiles(samples: np.ndarray, quantiles: Sequence[float]) -> np.ndarray:
    """GluonTS sample quantiles. Shapes: samples (S, H) -> (len(quantiles), H)."""
    ordered = np.sort(np.asarray(samples, dtype=np.float64), axis=0)
    s = ordered.shape[0]
    return np.stack([ordered[int(np.round((s - 1) * q))] for q in quantiles])


def _level(level: float, what: str = "level") -> float:
    real = isinstance(level, (int, float, np.floating, np.integer)) and not isinstance(level, bool)
    if not real or not 0.0 < level < 1.0:
        raise ValueError(f"{what} must be a number strictly between 0 and 1 (e.g. 0.8 for the 80% interval), "
                         f"got {level!r}")
    return float(level)


def central_interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """The central interval at ``level`` of sample paths: the GluonTS sample quantiles at
    (1 - level) / 2 and (1 + level) / 2. Shapes: samples (..., S, H) -> two arrays (..., H)."""
    level = _level(level)
    ordered = np.sort(np.asarray(samples, dtype=np.float64), axis=-2)
    s = ordered.shape[-2]
    lo = ordered[..., int(np.round((s - 1) * (1.0 - level) / 2.0)), :]
    hi = ordered[..., int(np.round((s - 1) * (1.0 + level) / 2.0)), :]
    return lo, hi


def interval_coverage(samples: np.ndarray, truth: np.ndarray,
                      levels: Sequence[float] = COVERAGE_LEVELS) -> dict[float, float]:
    """Fraction of the observed true values inside the central intervals of the paths,
    ``{level: coverage}``, pooled over items and steps (NaN truth masked; module docstring).

    Shapes: samples (B, S, H) and truth (B, H), or (S, H) and (H,).
    """
    samples, truth = _as_batch(samples, truth)
    valid = ~np.isnan(truth)
    if not valid.any():
        raise ValueError("truth has no observed value; coverage needs at least one")
    out = {}
    for i, level in enumerate(levels):
        lo, hi = central_interval(samples, _level(level, f"levels[{i}]"))
        inside = (lo <= truth) & (truth <= hi)
        out[float(level)] = float(inside[valid].mean())
    return out


def seasonal_error(past: np.ndarray, season: int) -> float:
    """GluonTS's ``calculate_seasonal_error`` on a past with NaN masked."""
    past = np.asarray(past, dtype=np.float64)
    m = season if season < len(past) else 1
    diff = np.abs(past[:-m] - past[m:]) if len(past) > m else np.array([np.nan])
    return float(np.nanmean(diff)) if np.isfinite(diff).any() else float("nan")


def _as_batch(samples, truth) -> tuple[np.ndarray, np.ndarray]:
    samples = np.asarray(samples, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if samples.ndim == 2 and truth.ndim == 1:
        samples, truth = samples[None], truth[None]
    if samples.ndim != 3 or truth.ndim != 2 or samples.shape[0] != truth.shape[0] or samples.shape[2] != truth.shape[1]:
        raise ValueError(
            f"expected samples (B, S, H) and truth (B, H) (or (S, H) and (H,)), got {samples.shape} and {truth.shape}"
        )
    return samples, truth


def evaluate(
    samples: np.ndarray,
    truth: np.ndarray,
    *,
    past: Sequence[np.ndarray] | None = None,
    freq: str | None = None,
    season: int | None = None,
    quantiles: Sequence[float] = QUANTILES,
    coverage_levels: Sequence[float] = COVERAGE_LEVELS,
) -> dict[str, float]:
    """GluonTS aggregate metrics of sample forecasts and interval coverage (module docstring).

    Args:
        samples: (B, S, H) sample paths (or (S, H) for one item).
        truth: (B, H) true values, NaN where unknown (masked).
        past: B arrays of the values before each window (for MASE); optional.
        freq: frequency for the MASE seasonality (or give ``season``).
        quantiles: the quantile levels of the weighted quantile loss.
        coverage_levels: the central intervals whose coverage is reported.

    Returns:
        ``CRPS`` (= ``mean_wQuantileLoss``), ``ND``, ``NRMSE``, ``MSE``, ``abs_error``,
        ``abs_target_sum``, ``wQuantileLoss[q]``, ``Coverage[q]`` (GluonTS's: the fraction of
        values below the q quantile), ``IntervalCoverage[c]`` (:func:`interval_coverage`) and,
        with a past, ``MASE``.
    """
    samples, truth = _as_batch(samples, truth)
    valid = ~np.isnan(truth)
    y = np.where(valid, truth, 0.0)
    qf = np.stack([sample_quantiles(s, quantiles) for s in samples])  # (B, Q, H)
    median = np.stack([sample_quantiles(s, [0.5])[0] for s in samples])
    mean = samples.mean(axis=1)
    v = valid[:, None, :]
    q = np.asarray(quantiles)[None, :, None]
    ql = 2.0 * np.sum(np.abs((qf - y[:, None]) * ((y[:, None] <= qf) - q)) * v, axis=2)  # (B, Q)
    abs_target_sum = np.sum(np.abs(y) * valid, axis=1)
    abs_error = np.sum(np.abs(y - median) * valid, axis=1)
    count = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mse = np.sum((y - mean) ** 2 * valid, axis=1) / count
        abs_target_mean = abs_target_sum / count
        coverage = np.sum((y[:, None] < qf) * v, axis=2) / count[:, None]
    total_target = abs_target_sum.sum()
    out = {
        "MSE": float(np.nanmean(mse)),
        "abs_error": float(abs_error.sum()),
        "abs_target_sum": float(total_target),
        "abs_target_mean": float(np.nanmean(abs_target_mean)),
    }
    out["RMSE"] = float(np.sqrt(out["MSE"]))
    out["NRMSE"] = out["RMSE"] / out["abs_target_mean"]
    out["ND"] = float(out["abs_error"] / total_target)
    wql = ql.sum(axis=0) / total_target
    for level, value, cov in zip(quantiles, wql, np.nanmean(coverage, axis=0)):
        out[f"wQuantileLoss[{level}]"] = float(value)
        out[f"Coverage[{level}]"] = float(cov)
    out["mean_wQuantileLoss"] = float(np.mean(wql))
    out["CRPS"] = out["mean_wQuantileLoss"]
    if coverage_levels:
        for level, cov in interval_coverage(samples, truth, coverage_levels).items():
            out[f"IntervalCoverage[{level}]"] = cov
    if past is not None:
        m = season if season is not None else (seasonality(freq) if freq else 1)
        errs = np.array([seasonal_error(p, m) for p in past])
        with np.errstate(invalid="ignore", divide="ignore"):
            mase = (abs_error / count) / errs
        out["MASE"] = float(np.nanmean(mase))
    return out


def crps_sum(samples: np.ndarray, truth: np.ndarray, quantiles: Sequence[float] = CRPS_SUM_QUANTILES) -> float:
    """CRPS-sum of joint forecasts of D series (module docstring): the paths summed over the
    series, scored as one series. Paths of univariate models taken together treat the series
    as independent.

    Shapes: samples (B, S, D, H) (B forecast windows, S joint paths, D series) and truth
    (B, D, H); or (S, D, H) and (D, H) for one window.
    """
    samples = np.asarray(samples, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if samples.ndim == 3 and truth.ndim == 2:
        samples, truth = samples[None], truth[None]
    if samples.ndim != 4 or truth.ndim != 3 or samples.shape[:1] + samples.shape[2:] != truth.shape:
        raise ValueError(f"expected samples (B, S, D, H) and truth (B, D, H) (or (S, D, H) and (D, H)), "
                         f"got {samples.shape} and {truth.shape}")
    return evaluate(samples.sum(axis=2), truth.sum(axis=1), quantiles=quantiles, coverage_levels=())["CRPS"]


def split_test_set(test: Sequence[Series], prediction_length: int) -> tuple[list[np.ndarray], np.ndarray]:
    """A GluonTS test set -> (pasts, truth (B, H)): each entry's last ``prediction_length``
    values are the truth, everything before is the past."""
    pasts, truth = [], []
    for entry in test:
        past, future = split_past_future(entry, prediction_length)
        pasts.append(past.target)
        truth.append(future)
    return pasts, np.stack(truth)


def evaluate_dataset(
    predict: Callable[[list[np.ndarray], int], np.ndarray],
    test: Sequence[Series],
    prediction_length: int,
    freq: str,
    *,
    quantiles: Sequence[float] = QUANTILES,
    coverage_levels: Sequence[float] = COVERAGE_LEVELS,
) -> dict[str, float]:
    """Forecast every test window with ``predict(pasts, prediction_length) -> (B, S, H)`` and
    return the GluonTS metrics plus ``seconds`` (wall time) and ``seconds_per_series``."""
    pasts, truth = split_test_set(test, prediction_length)
    start = time.perf_counter()
    samples = np.asarray(predict(pasts, prediction_length))
    seconds = time.perf_counter() - start
    out = evaluate(samples, truth, past=pasts, freq=freq, quantiles=quantiles, coverage_levels=coverage_levels)
    out["seconds"] = seconds
    out["seconds_per_series"] = seconds / len(pasts)
    out["num_series"] = len(pasts)
    out["num_samples"] = int(samples.shape[1])
    return out
