"""Split-conformal correction of sample-path intervals (sciogen.timeseries.calibration)."""

from __future__ import annotations

import numpy as np
import pytest

from sciogen.timeseries.baselines import random_walk
from sciogen.timeseries.calibration import (
    ConformalCalibration,
    calibration_windows,
    conformal_scores,
    fit_conformal,
    fit_conformal_forecaster,
)
from sciogen.timeseries.metrics import central_interval, interval_coverage


def _five_paths(b: int, h: int) -> np.ndarray:
    """Paths 0, 1, 2, 3, 4 (shuffled) at every step: median 2; 50% interval [1, 3]; 80 and 90% [0, 4]."""
    rng = np.random.default_rng(0)
    return np.stack([rng.permutation(np.arange(5.0))[:, None].repeat(h, 1) for _ in range(b)])


def test_scores_and_factors_are_the_conformal_order_statistics():
    """Exact: nine values at distance 0.1 .. 0.9 from the median (alternating sides). 50%:
    half-width 1, r = 0.1 .. 0.9, factor = the ceil(10 x 0.5) = 5th smallest = 0.5; 80%: 8th =
    0.8 / 2 = 0.4 (half-width 2); 90%: 9th = 0.45."""
    d = np.arange(1, 10) / 10
    truth = (2 + d * (-1.0) ** np.arange(9))[:, None]
    samples = _five_paths(9, 1)
    np.testing.assert_allclose(np.sort(conformal_scores(samples, truth, 0.5)), d)
    np.testing.assert_allclose(np.sort(conformal_scores(samples, truth, 0.8)), d / 2)
    cal = fit_conformal(samples, truth)
    assert cal.levels == (0.5, 0.8, 0.9)
    np.testing.assert_allclose(cal.factors, [0.5, 0.4, 0.45])
    assert (cal.num_scores, cal.num_samples) == (9, 5)
    assert ConformalCalibration.from_dict(cal.to_dict()) == cal


def test_nan_truth_is_left_out_and_zero_width_is_scored():
    samples = _five_paths(2, 3)
    samples[1, :, 2] = 7.0  # one step with all paths equal: r = 0 at 7, inf elsewhere
    truth = np.array([[2.5, np.nan, 0.0], [np.nan, 4.0, 7.0]])
    np.testing.assert_allclose(conformal_scores(samples, truth, 0.5), [0.5, 2.0, 2.0, 0.0])
    truth[1, 2] = 6.0
    assert np.isinf(conformal_scores(samples, truth, 0.5)[-1])


def test_apply_moves_the_interval_bounds_to_the_scaled_ones_and_keeps_path_order():
    rng = np.random.default_rng(1)
    paths = rng.gamma(2.0, size=(4, 100, 6))  # skewed
    cal = ConformalCalibration((0.5, 0.8, 0.9), (1.5, 2.0, 2.5), 100, 100)
    out = cal.apply(paths)
    assert out.shape == paths.shape
    med = np.sort(paths, axis=1)[:, 50]
    for level, factor in zip(cal.levels, cal.factors):
        lo, hi = central_interval(paths, level)
        lo2, hi2 = central_interval(out, level)
        np.testing.assert_allclose(hi2, med + factor * (hi - med), atol=1e-12)
        np.testing.assert_allclose(lo2, med - factor * (med - lo), atol=1e-12)
    np.testing.assert_array_equal(np.argsort(out, axis=1, kind="stable"), np.argsort(paths, axis=1, kind="stable"))
    np.testing.assert_allclose(ConformalCalibration((0.5, 0.9), (1.0, 1.0), 1, 100).apply(paths), paths)
    np.testing.assert_allclose(cal.apply(paths[0]), out[0])


def test_conformal_brings_held_out_coverage_to_nominal():
    """A miscalibrated forecaster of N(0, 1) values: its paths have std 0.5 (overconfident) or 2
    (underconfident). Fitted on 300 windows x 10 steps, the correction brings the coverage on
    3,000 other values to within 0.04 of each level (std error ~0.01), from >= 0.18 away."""
    rng = np.random.default_rng(2)
    for spread in (0.5, 2.0):
        cal_paths, cal_truth = rng.normal(size=(300, 100, 10)) * spread, rng.normal(size=(300, 10))
        test_paths, test_truth = rng.normal(size=(300, 100, 10)) * spread, rng.normal(size=(300, 10))
        before = interval_coverage(test_paths, test_truth)
        cal = fit_conformal(cal_paths, cal_truth)
        after = interval_coverage(cal.apply(test_paths), test_truth)
        for level in (0.5, 0.8, 0.9):
            assert abs(before[level] - level) > 0.08
            assert abs(after[level] - level) < 0.04, (spread, level, after[level])
        assert all(f > 1.5 for f in cal.factors) if spread < 1 else all(f < 0.7 for f in cal.factors)


def test_fit_conformal_forecaster_on_training_windows_of_a_random_walk():
    """A forecaster whose random-walk paths have half the series' volatility, calibrated on the
    last 10 windows of 20 training series, covers the 60 later (held-out) windows near nominal."""
    rng = np.random.default_rng(3)
    series = [np.cumsum(rng.normal(0, 1.0, 700)) for _ in range(20)]
    train = [s[:-60] for s in series]

    def narrow(pasts, horizon):
        paths = random_walk(pasts, horizon, 100, generator=4)
        return np.stack([p[-1] + 0.5 * (q - p[-1]) for p, q in zip(pasts, paths)])

    pasts, truth = calibration_windows(train, 10, 3)
    assert len(pasts) == 60 and truth.shape == (60, 10)
    np.testing.assert_array_equal(truth[-1], train[-1][-10:])
    cal = fit_conformal_forecaster(narrow, train, 10, num_windows=10)
    test_pasts = [s[: len(s) - 60 + 10 * k] for k in range(6) for s in series]
    test_truth = np.stack([s[len(s) - 60 + 10 * k : len(s) - 50 + 10 * k] for k in range(6) for s in series])
    paths = narrow(test_pasts, 10)
    before, after = interval_coverage(paths, test_truth), interval_coverage(cal.apply(paths), test_truth)
    for level in (0.5, 0.8, 0.9):
        assert abs(after[level] - level) < abs(before[level] - level)
        assert abs(after[level] - level) < 0.1


@pytest.mark.parametrize("levels, match", [((0.5, 1.0), "levels"), ((0.0,), "levels"), (("a",), "levels"),
                                           ((), "empty")])
def test_fit_refuses_bad_levels(levels, match):
    with pytest.raises(ValueError, match=match):
        fit_conformal(_five_paths(20, 3), np.full((20, 3), 2.0), levels)


def test_fit_refuses_bad_inputs():
    samples, truth = _five_paths(20, 3), np.full((20, 3), 2.0)
    with pytest.raises(ValueError, match="too few"):
        fit_conformal(samples[:1, :, :1], truth[:1, :1], (0.9,))
    with pytest.raises(ValueError, match="zero width"):
        fit_conformal(samples[:, :1], truth + 1.0)  # one path per forecast
    bad = samples.copy()
    bad[3, 0, 0] = np.nan
    with pytest.raises(ValueError, match="item 3"):
        fit_conformal(bad, truth)
    with pytest.raises(ValueError, match="expected samples"):
        fit_conformal(samples, truth[:, :2])
    with pytest.raises(ValueError, match="inf"):
        fit_conformal(samples, np.full((20, 3), np.inf))
    with pytest.raises(ValueError, match="factor"):
        ConformalCalibration.from_dict({"levels": [0.5, 0.8], "factors": [1.0], "num_scores": 9, "num_samples": 5})
    with pytest.raises(ValueError, match="increase"):
        ConformalCalibration.from_dict({"levels": [0.8, 0.5], "factors": [1.0, 1.0], "num_scores": 9,
                                        "num_samples": 5})
    cal = fit_conformal(samples, truth)
    with pytest.raises(ValueError, match="shape"):
        cal.apply(np.ones(5))
    with pytest.raises(ValueError, match="NaN"):
        cal.apply(bad)
    with pytest.raises(ValueError, match="num_windows"):
        calibration_windows([np.arange(100.0)], 10, 0)
