"""GluonTS-exact metrics and the baselines: reference values computed with gluonts 0.14.4's
``Evaluator`` (no gluonts needed to run these tests)."""

from __future__ import annotations

import numpy as np
import pytest

from sciogen.timeseries import read_gluonts, seasonality
from sciogen.timeseries.baselines import RidgeForecaster, random_walk, seasonal_naive
from sciogen.timeseries.metrics import (
    CRPS_SUM_QUANTILES,
    central_interval,
    crps_sum,
    evaluate,
    interval_coverage,
    sample_quantiles,
    seasonal_error,
    split_test_set,
)

# gluonts.evaluation.Evaluator()(...) on the data of _synthetic() (gluonts 0.14.4, pandas 2.x)
GLUONTS = {
    "mean_wQuantileLoss": 0.13560891156242963, "ND": 0.16601203319513047, "NRMSE": 0.2274801410627594,
    "MASE": 0.8880691271505956, "MSE": 5.120215038854035, "wQuantileLoss[0.1]": 0.08920886076632363,
    "wQuantileLoss[0.5]": 0.16601203319513047, "wQuantileLoss[0.9]": 0.0741233962807283,
    "Coverage[0.3]": 0.20959595959595959,
}


def _synthetic():
    rng = np.random.default_rng(0)
    b, s, h, p = 6, 37, 12, 50
    samples = rng.normal(size=(b, s, h)).cumsum(-1) + 10
    truth = rng.normal(size=(b, h)).cumsum(-1) + 10
    past = rng.normal(size=(b, p)).cumsum(-1) + 10
    truth[1, 3] = np.nan
    truth[2, :4] = np.nan
    past[0, 10] = np.nan
    return samples, truth, past


def test_metrics_equal_gluonts_evaluator_with_nans():
    samples, truth, past = _synthetic()
    ours = evaluate(samples, truth, past=list(past), freq="B")
    for key, value in GLUONTS.items():
        assert ours[key] == pytest.approx(value, rel=1e-10), key
    assert ours["CRPS"] == ours["mean_wQuantileLoss"]


def test_sample_quantile_index_rounds_half_to_even():
    samples = np.arange(10.0)[:, None]  # S = 10: index round(9 q)
    got = sample_quantiles(samples, [0.1, 0.5, 0.9])[:, 0]
    assert got.tolist() == [1.0, 4.0, 8.0]  # round(0.9) = 1, round(4.5) = 4, round(8.1) = 8


def test_one_sample_crps_equals_nd_and_perfect_forecast_is_zero():
    rng = np.random.default_rng(1)
    truth = rng.uniform(1, 2, size=(3, 5))
    point = truth + rng.normal(size=truth.shape) * 0.1
    m = evaluate(point[:, None], truth)
    assert m["CRPS"] == pytest.approx(m["ND"])
    assert evaluate(truth[:, None], truth)["CRPS"] == 0.0


def test_seasonal_error_falls_back_to_lag_one_for_short_pasts():
    assert seasonal_error(np.array([1.0, 2.0, 4.0]), 5) == pytest.approx(1.5)
    assert seasonal_error(np.array([1.0, 2.0, 3.0, 5.0, 9.0]), 2) == pytest.approx((2 + 3 + 6) / 3)


def test_seasonal_naive_repeats_the_last_season_and_skips_missing():
    past = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, np.nan])
    out = seasonal_naive([past], 5, season=3)[0, 0]
    assert out.tolist() == [5.0, 6.0, 4.0, 5.0, 6.0]  # the NaN takes the same phase one season earlier


def test_seasonal_naive_calibration_on_exchange_rate_nips(shared_datasets):
    """GluonTS SeasonalNaivePredictor + Evaluator give CRPS 0.0107, ND 0.0107, NRMSE 0.0159, MASE 1.6203."""
    data = read_gluonts(shared_datasets / "timeseries" / "exchange_rate_nips")
    pasts, truth = split_test_set(data.test, data.prediction_length)
    assert len(pasts) == 40
    m = evaluate(seasonal_naive(pasts, 30, seasonality(data.freq)), truth, past=pasts, freq=data.freq)
    assert round(m["CRPS"], 4) == 0.0107
    assert round(m["ND"], 4) == 0.0107
    assert round(m["NRMSE"], 4) == 0.0159
    assert round(m["MASE"], 4) == 1.6203
    last = evaluate(seasonal_naive(pasts[-8:], 30, 5), truth[-8:], past=pasts[-8:], freq="B")
    assert (round(last["CRPS"], 4), round(last["MASE"], 4)) == (0.0126, 1.6826)


def test_ridge_learns_a_linear_trend_and_spreads_with_its_residuals():
    rng = np.random.default_rng(0)
    t = np.arange(400.0)
    series = [10 + 0.05 * t + rng.normal(scale=0.1, size=t.size) for _ in range(3)]
    ridge = RidgeForecaster(10, 20).fit([s[:-10] for s in series])
    paths = ridge.predict([s[:-10] for s in series], 200)
    truth = np.stack([s[-10:] for s in series])
    assert paths.shape == (3, 200, 10)
    assert np.abs(paths.mean(1) - truth).mean() < 0.15
    assert evaluate(paths, truth)["CRPS"] < evaluate(np.full((3, 1, 10), truth[:, :1].mean()), truth)["CRPS"] / 2


def test_interval_coverage_on_a_constructed_example():
    """Paths 0..4 at every step (S = 5): the 50% interval is [sorted[round(1)], sorted[round(3)]] =
    [1, 3], the 80% and 90% ones [0, 4] (round(0.4) = round(0.2) = 0). Seven observed values
    (one NaN masked): inside [1, 3]: 1, 2; inside [0, 4]: 1, 3.5, 2, 0, 4 -> 2/7, 5/7, 5/7."""
    rng = np.random.default_rng(0)
    samples = np.stack([rng.permutation(np.arange(5.0))[:, None].repeat(4, 1) for _ in range(2)])
    truth = np.array([[1.0, 3.5, -1.0, 2.0], [np.nan, 0.0, 4.0, 5.0]])
    lo, hi = central_interval(samples, 0.5)
    assert lo.tolist() == [[1.0] * 4] * 2 and hi.tolist() == [[3.0] * 4] * 2
    cov = interval_coverage(samples, truth)
    assert cov == {0.5: 2 / 7, 0.8: 5 / 7, 0.9: 5 / 7}
    m = evaluate(samples, truth)
    assert (m["IntervalCoverage[0.5]"], m["IntervalCoverage[0.8]"], m["IntervalCoverage[0.9]"]) == (2 / 7, 5 / 7, 5 / 7)
    # 100 paths 1..100: the 80% interval holds exactly 80 of them (sorted[10] .. sorted[89])
    paths = np.arange(1.0, 101.0)[:, None]
    assert interval_coverage(paths, np.array([10.5]), (0.8,)) == {0.8: 0.0}
    assert interval_coverage(paths, np.array([11.0]), (0.8,)) == {0.8: 1.0}
    assert interval_coverage(paths, np.array([90.0]), (0.8,)) == {0.8: 1.0}
    assert interval_coverage(paths, np.array([90.5]), (0.8,)) == {0.8: 0.0}


def test_interval_coverage_refuses_bad_levels_and_empty_truth():
    samples = np.zeros((1, 5, 3))
    for bad in (0.0, 1.0, 80, "0.8", True):
        with pytest.raises(ValueError, match="levels"):
            interval_coverage(samples, np.zeros((1, 3)), (bad,))
    with pytest.raises(ValueError, match="no observed value"):
        interval_coverage(samples, np.full((1, 3), np.nan))
    with pytest.raises(ValueError, match="expected samples"):
        interval_coverage(samples, np.zeros((2, 3)))


def test_crps_sum_scores_the_sum_of_the_series():
    """Exact: one path, D = 2, H = 2: truth sums (4, 6), path sums (2, 2); every quantile is the
    path, so CRPS-sum = sum |error| / sum |truth| = 6 / 10. One series: the univariate CRPS over
    TimeGrad's 19 quantiles. A step where one series is missing is masked."""
    truth = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert crps_sum(np.ones((1, 2, 2)), truth) == pytest.approx(0.6)
    assert CRPS_SUM_QUANTILES == tuple(np.round(np.arange(0.05, 0.96, 0.05), 2))
    rng = np.random.default_rng(0)
    samples, target = rng.normal(size=(3, 50, 1, 8)) + 5, rng.normal(size=(3, 1, 8)) + 5
    assert crps_sum(samples, target) == pytest.approx(
        evaluate(samples[:, :, 0], target[:, 0], quantiles=CRPS_SUM_QUANTILES)["CRPS"], rel=1e-12)
    truth[0, 1] = np.nan  # step 2: masked; step 1: |4 - 2| / 4
    assert crps_sum(np.ones((1, 2, 2)), truth) == pytest.approx(0.5)


def test_crps_sum_rewards_joint_paths_that_per_series_crps_cannot_tell_apart():
    """Two series whose errors cancel (paths truth + e and truth - e): the joint paths sum to the
    truth exactly (CRPS-sum 0); the same marginal paths paired at random do not, while the
    per-series CRPS is the same for both."""
    rng = np.random.default_rng(1)
    truth = rng.uniform(1, 2, size=(4, 2, 10))
    e = rng.normal(scale=0.1, size=(4, 100, 1, 10))
    joint = truth[:, None] + np.concatenate([e, -e], axis=2)
    shuffled = joint.copy()
    shuffled[:, :, 1] = joint[:, rng.permutation(100), 1]
    assert crps_sum(joint, truth) < 1e-12
    assert crps_sum(shuffled, truth) > 0.01
    for d in range(2):
        assert evaluate(joint[:, :, d], truth[:, d])["CRPS"] == evaluate(shuffled[:, :, d], truth[:, d])["CRPS"]
    with pytest.raises(ValueError, match="expected samples"):
        crps_sum(joint, truth[:, :1])


def test_random_walk_crps_sum_on_exchange_rate_nips(shared_datasets):
    """Issue 27: the random walk with volatility (independent per series, 100 paths) scores
    CRPS-sum 0.0045-0.0048 for the 8 series jointly; seed 0 gives 0.00457 (the test set is 8
    series window by window)."""
    data = read_gluonts(shared_datasets / "timeseries" / "exchange_rate_nips")
    pasts, truth = split_test_set(data.test, data.prediction_length)
    paths = random_walk(pasts, 30, 100, generator=0).reshape(5, 8, 100, 30).transpose(0, 2, 1, 3)
    assert 0.0045 <= crps_sum(paths, truth.reshape(5, 8, 30)) <= 0.0048
