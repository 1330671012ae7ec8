"""GluonTS-exact metrics and the baselines: reference values computed with gluonts 0.14.4's
``Evaluator`` (no gluonts needed to run these tests)."""

from __future__ import annotations

import numpy as np
import pytest

from sciogen.timeseries import read_gluonts, seasonality
from sciogen.timeseries.baselines import RidgeForecaster, seasonal_naive
from sciogen.timeseries.metrics import evaluate, sample_quantiles, seasonal_error, split_test_set

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
