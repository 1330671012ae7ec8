"""Split-conformal correction of the central intervals of any forecaster's sample paths.

Conformalized quantile regression (Romano et al. 2019), made scale-free: on calibration
windows (the last windows of the training range, :func:`calibration_windows`) the forecaster's
paths give, per level c, the median ``med`` and the central interval ``[lo, hi]``
(:func:`sciogen.timeseries.metrics.central_interval`), and each observed true value y a score

    r = (y - med) / (hi - med)   if y >= med,      r = (med - y) / (med - lo)   otherwise

(y is inside the interval iff r <= 1; a zero half-width gives r = 0 at the median, inf
elsewhere). The factor ``lambda_c`` is the ceil((n + 1) c)-th smallest of the n scores, so that
the interval ``[med - lambda_c (med - lo), med + lambda_c (hi - med)]`` covers at least a
fraction c of the calibration values (split conformal; the finite-sample guarantee holds for
exchangeable scores, which values of one window only approximately are). ``lambda > 1``
widens, ``< 1`` narrows; scaling about the median keeps the interval's skew.

:meth:`ConformalCalibration.apply` turns the factors into corrected *sample paths*: at every
step the deviation of each path from the median is scaled by the factor of its rank (exactly
``lambda_c`` at the ranks that bound the c interval, interpolated between them, the innermost
and outermost factors beyond), then made monotone again. The corrected paths have exactly
the corrected intervals (where the factors grow with c), and go through the same metrics code.

Usable for any forecaster: ``fit_conformal(paths, truth)`` on arrays, or
``fit_conformal_forecaster(predict, train_series, H)`` with ``predict(pasts, H) -> (B, S, H)``.
Calibrate with the number of paths you will forecast with (the quantile ranks depend on it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sciogen.train.checks import positive_int

from .metrics import (
    COVERAGE_LEVELS,
    _as_batch,
    _level,
    central_interval,
    split_test_set,
)
from .representation import Series, rolling_windows

__all__ = ["ConformalCalibration", "conformal_scores", "fit_conformal", "calibration_windows",
           "fit_conformal_forecaster"]


def _median(ordered: np.ndarray) -> np.ndarray:
    """GluonTS's sample median of sorted paths (..., S, H) -> (..., H)."""
    return ordered[..., int(np.round((ordered.shape[-2] - 1) * 0.5)), :]


def _checked_paths(samples: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    samples, truth = _as_batch(samples, truth)
    if not np.isfinite(samples).all():
        b = int(np.argwhere(~np.isfinite(samples))[0, 0])
        raise ValueError(f"the sample paths of item {b} hold NaN or inf; calibration needs finite paths")
    if np.isinf(truth).any():
        raise ValueError("truth holds inf; use NaN for a missing value")
    return samples, truth


def conformal_scores(samples: np.ndarray, truth: np.ndarray, level: float) -> np.ndarray:
    """The scores r (module docstring) of every observed true value for the ``level`` interval.

    Shapes: samples (B, S, H) and truth (B, H) (or (S, H) and (H,)) -> (n,), n = observed values.
    """
    samples, truth = _checked_paths(samples, truth)
    lo, hi = central_interval(samples, level)
    med = _median(np.sort(samples, axis=-2))
    valid = ~np.isnan(truth)
    y, lo, hi, med = truth[valid], lo[valid], hi[valid], med[valid]
    above = y >= med
    dev = np.where(above, y - med, med - y)
    half = np.where(above, hi - med, med - lo)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(half > 0, dev / np.where(half > 0, half, 1.0), np.where(dev > 0, np.inf, 0.0))
    return r


@dataclass(frozen=True)
class ConformalCalibration:
    """Interval correction factors ``lambda_c`` per level c (module docstring).

    Attributes:
        levels: the calibrated central levels, increasing (e.g. 0.5, 0.8, 0.9).
        factors: lambda_c, one per level (> 1 widens the level's interval, < 1 narrows it).
        num_scores: calibration values (observed true values) per level.
        num_samples: paths per forecast on the calibration windows.
    """

    levels: tuple[float, ...]
    factors: tuple[float, ...]
    num_scores: int
    num_samples: int

    def _rank_factors(self, s: int) -> np.ndarray:
        """The factor of each sorted rank 0 .. S-1 (1 at the median rank)."""
        mid = int(np.round((s - 1) * 0.5))
        ranks = np.arange(s)
        out = np.ones(s)
        for side, sign in (("hi", 1.0), ("lo", -1.0)):
            knots: dict[int, float] = {}
            for level, factor in zip(self.levels, self.factors):
                k = int(np.round((s - 1) * (1.0 + sign * level) / 2.0))
                knots[k] = max(factor, knots.get(k, 0.0))  # ranks shared by two levels: the wider
            ks = np.array(sorted(knots))
            fs = np.array([knots[k] for k in ks])
            part = ranks > mid if sign > 0 else ranks < mid
            out[part] = np.interp(ranks[part], ks, fs)  # constant beyond the outer knots
        return out

    def apply(self, samples: Any) -> np.ndarray:
        """Corrected sample paths. Shapes: (S, H) -> (S, H), (B, S, H) -> (B, S, H).

        At each step, the path of sorted rank k moves to ``med + f_k (y_k - med)`` (f: the
        factor of its rank), then ranks above the median take the running maximum outward and
        ranks below the running minimum, so the order of the paths is kept."""
        arr = np.asarray(samples, dtype=np.float64)
        if arr.ndim not in (2, 3) or arr.shape[-2] < 1 or arr.shape[-1] < 1:
            raise ValueError(f"expected sample paths (S, H) or (B, S, H), got shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError("the sample paths hold NaN or inf; calibration needs finite paths")
        order = np.argsort(arr, axis=-2, kind="stable")
        ordered = np.take_along_axis(arr, order, axis=-2)
        s = arr.shape[-2]
        mid = int(np.round((s - 1) * 0.5))
        med = ordered[..., mid : mid + 1, :]
        f = self._rank_factors(s)[:, None]
        moved = med + f * (ordered - med)
        upper = np.maximum.accumulate(moved[..., mid:, :], axis=-2)
        lower = np.flip(np.minimum.accumulate(np.flip(moved[..., : mid + 1, :], axis=-2), axis=-2), axis=-2)
        moved = np.concatenate([lower[..., :mid, :], upper], axis=-2)
        out = np.empty_like(arr)
        np.put_along_axis(out, order, moved, axis=-2)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"levels": list(self.levels), "factors": list(self.factors), "num_scores": self.num_scores,
                "num_samples": self.num_samples}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConformalCalibration:
        levels = tuple(_level(v, "levels") for v in d["levels"])
        factors = tuple(float(v) for v in d["factors"])
        if len(levels) != len(factors) or not levels or not all(np.isfinite(factors)) or min(factors) < 0:
            raise ValueError(f"a calibration needs one finite factor >= 0 per level, got {d!r}")
        if list(levels) != sorted(set(levels)):
            raise ValueError(f"calibration levels must increase, got {list(levels)}")
        return cls(levels, factors, int(d["num_scores"]), int(d["num_samples"]))


def fit_conformal(samples: Any, truth: Any, levels: Sequence[float] = COVERAGE_LEVELS) -> ConformalCalibration:
    """Fit the interval factors on calibration forecasts (module docstring).

    Args:
        samples: (B, S, H) paths of B calibration windows (or (S, H) for one).
        truth: (B, H) their true values; NaN = unknown (left out).
        levels: central levels to calibrate, each in (0, 1).

    Raises:
        ValueError: too few observed values for a level (n must be >= c / (1 - c), e.g. 9 for
            0.9), or a level whose intervals have zero width where the truth lies outside them
            (no factor can widen them: the forecaster gave one path, or identical paths).
    """
    levels = sorted({_level(v, f"levels[{i}]") for i, v in enumerate(levels)})
    if not levels:
        raise ValueError("levels is empty; give central levels such as (0.5, 0.8, 0.9)")
    samples, truth = _checked_paths(samples, truth)
    factors, n = [], 0
    for level in levels:
        r = np.sort(conformal_scores(samples, truth, level))
        n = len(r)
        k = math.ceil((n + 1) * level)
        if k > n:
            raise ValueError(f"{n} observed calibration values are too few for the {level:g} interval: split "
                             f"conformal needs at least {math.ceil(level / (1 - level))}; add calibration windows")
        if not np.isfinite(r[k - 1]):
            raise ValueError(f"the {level:g} intervals have zero width where the truth lies outside them "
                             f"({int(np.isinf(r).sum())} of {n} values): scaling cannot widen them; give more "
                             "than one distinct path per step")
        factors.append(float(r[k - 1]))
    return ConformalCalibration(tuple(levels), tuple(factors), n, int(samples.shape[1]))


def calibration_windows(series: Sequence[Series | np.ndarray], prediction_length: int,
                        num_windows: int = 5) -> tuple[list[np.ndarray], np.ndarray]:
    """The last ``num_windows`` rolling windows of ``prediction_length`` steps of each (training)
    series, as (pasts, truth (num_windows x B, H)), window by window like a ``*_nips`` test set.
    Arrays are taken as series of any frequency (only their values are used)."""
    horizon = positive_int("prediction_length", prediction_length)
    num_windows = positive_int("num_windows", num_windows)
    items = [s if isinstance(s, Series) else Series(np.asarray(s, dtype=np.float64), "2000-01-01", "D")
             for s in series]
    if not items:
        raise ValueError("no series to take calibration windows from")
    return split_test_set(rolling_windows(items, horizon, num_windows), horizon)


def fit_conformal_forecaster(predict: Callable[[list[np.ndarray], int], np.ndarray],
                             series: Sequence[Series | np.ndarray], prediction_length: int, *,
                             num_windows: int = 5,
                             levels: Sequence[float] = COVERAGE_LEVELS) -> ConformalCalibration:
    """Forecast the last ``num_windows`` windows of the training ``series`` with
    ``predict(pasts, prediction_length) -> (B, S, H)`` (any forecaster; each window sees only
    the values before it) and fit the factors on them (:func:`fit_conformal`)."""
    pasts, truth = calibration_windows(series, prediction_length, num_windows)
    return fit_conformal(np.asarray(predict(pasts, prediction_length), dtype=np.float64), truth, levels)
