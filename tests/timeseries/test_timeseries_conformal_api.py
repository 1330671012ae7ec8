"""The conformal option of the forecast API: ``gen.calibrate(series)`` ->
``gen.forecast(..., calibration=cal)`` / ``gen.forecast_frame(..., calibration=cal)``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from sciogen.timeseries import ConformalCalibration, Series, TimeSeriesGenerator
from sciogen.timeseries.baselines import random_walk
from sciogen.timeseries.config import TimeSeriesConfig, TSDataConfig, TSGuidanceConfig, TSModelConfig
from sciogen.timeseries.metrics import interval_coverage, split_test_set
from sciogen.timeseries.representation import rolling_windows

H, CONTEXT = 10, 30


class _UnderDispersed(TimeSeriesGenerator):
    """The generator's API with its sampler replaced by a random walk with 0.3 times the
    series' volatility: a forecaster whose intervals are far too narrow."""

    def _forecast_blocks(self, pasts, horizon, n, generator, opts):
        seed = int(torch.randint(2**31, (1,), generator=generator))
        walk = random_walk(pasts, horizon, n, generator=seed)
        last = np.array([p[~np.isnan(p)][-1] for p in pasts])[:, None, None]
        return last + 0.3 * (walk - last)


def _config(**data) -> TimeSeriesConfig:
    cfg = TimeSeriesConfig(
        data=TSDataConfig(freq="D", prediction_length=H, context_length=CONTEXT, normalization="standard", **data),
        model=TSModelConfig(hidden=16, blocks=1, state=8, step_dim=16),
        guidance=TSGuidanceConfig(solver="ddim", steps=5, scale=0.0, replace=True, num_samples=50),
    )
    cfg.train.steps, cfg.train.batch_size, cfg.train.progress, cfg.train.tensorboard = 20, 16, False, False
    cfg.train.warmup_steps, cfg.train.log_every = 5, 10
    return cfg


def _walks(n: int, length: int, seed: int) -> list[Series]:
    rng = np.random.default_rng(seed)
    return [Series(100.0 + np.cumsum(rng.normal(size=length)), "2020-01-01", "D", f"s{i}") for i in range(n)]


@pytest.fixture(scope="module")
def narrow():
    return _UnderDispersed(_config(lags=[]))


def test_calibration_moves_coverage_to_nominal_for_an_under_dispersed_forecaster(narrow):
    """Calibrated on the last 5 windows of the training range of 60 random walks, tested on
    the 3 windows after it (never seen): 80% coverage goes from ~0.28 to within 0.05 of 0.8
    (0.79-0.83 over seeds 0-4), and each level ends nearer its nominal value than before."""
    full = _walks(60, CONTEXT + 8 * H, seed=0)
    train = [s.slice(len(s) - 3 * H) for s in full]
    cal = narrow.calibrate(train, windows=5, num_samples=50, seed=1)
    assert isinstance(cal, ConformalCalibration) and cal.num_samples == 50 and cal.num_scores == 60 * 5 * H
    assert min(cal.factors) > 2.0  # a third of the spread: widened about threefold
    pasts, truth = split_test_set(rolling_windows(full, H, 3), H)
    raw = interval_coverage(narrow.forecast(pasts, H, 50, seed=2), truth)
    fixed = interval_coverage(narrow.forecast(pasts, H, 50, seed=2, calibration=cal), truth)
    assert raw[0.8] < 0.45, raw
    assert abs(fixed[0.8] - 0.8) < 0.05, fixed
    for level in (0.5, 0.8, 0.9):
        assert abs(fixed[level] - level) < abs(raw[level] - level), (level, raw, fixed)


def test_forecast_with_calibration_is_the_corrected_raw_forecast(narrow):
    """Same seed: the calibrated paths are exactly ``cal.apply`` of the raw ones, names and
    dates kept; forecast_frame's quantiles are those of the corrected paths."""
    series = _walks(3, CONTEXT + 5 * H, seed=3)
    cal = narrow.calibrate(series, windows=3, num_samples=20, seed=0)
    raw = narrow.forecast(series, H, 20, seed=5)
    fixed = narrow.forecast(series, H, 20, seed=5, calibration=cal)
    np.testing.assert_allclose(fixed, cal.apply(raw), rtol=0, atol=0)
    assert fixed.item_ids == ["s0", "s1", "s2"] and fixed.timestamps[0][0] == series[0].future_index(1)[0]
    frame = narrow.forecast_frame(series[0], H, 20, seed=5, calibration=cal, quantiles=(0.1, 0.9))
    plain = narrow.forecast_frame(series[0], H, 20, seed=5, quantiles=(0.1, 0.9))
    assert list(frame.columns) == ["mean", "0.1", "0.9"] and isinstance(frame.index, pd.DatetimeIndex)
    assert ((frame["0.9"] - frame["0.1"]) > (plain["0.9"] - plain["0.1"])).all()  # factors > 1 widen


def test_calibration_arguments_are_checked(narrow):
    series = _walks(2, CONTEXT + 4 * H, seed=4)
    cal = narrow.calibrate(series, windows=3, num_samples=20, seed=0)
    with pytest.raises(ValueError, match="fitted on forecasts of 20 paths; forecast with num_samples=20"):
        narrow.forecast(series, H, 30, calibration=cal)
    with pytest.raises(TypeError, match="calibration must be a ConformalCalibration"):
        narrow.forecast(series, H, 20, calibration={"levels": [0.8]})
    with pytest.raises(ValueError, match="unknown guidance options \\['scael'\\]"):
        narrow.calibrate(series, windows=3, scael=1.0)
    with pytest.raises(ValueError, match="too few for the 0.95 interval"):
        narrow.calibrate(series[:1], windows=1, num_samples=20, levels=(0.95,))


def test_calibrate_on_a_trained_tsdiff_model():
    """The real sampler (a tiny TSDiff, 20 training steps): calibrate gives finite factors per
    level and forecast(calibration=) applies them."""
    torch.manual_seed(0)
    series = _walks(4, 150, seed=6)
    gen = TimeSeriesGenerator(_config()).fit(series)
    cal = gen.calibrate(series, windows=2, num_samples=8, seed=0)
    assert cal.levels == (0.5, 0.8, 0.9) and all(np.isfinite(cal.factors)) and cal.num_scores == 4 * 2 * H
    raw = gen.forecast(series, H, 8, seed=1)
    np.testing.assert_allclose(gen.forecast(series, H, 8, seed=1, calibration=cal), cal.apply(raw))
