"""The sample-path baselines: random walk with volatility and seasonal naive with
seasonal-difference noise (sciogen.timeseries.baselines)."""

from __future__ import annotations

import numpy as np
import pytest

from sciogen.timeseries import read_gluonts
from sciogen.timeseries.baselines import random_walk, seasonal_difference_naive
from sciogen.timeseries.metrics import evaluate, split_test_set


def _walk(sigma: float, n: int, seed: int) -> np.ndarray:
    return 5.0 + np.cumsum(np.random.default_rng(seed).normal(0.0, sigma, n))


# -- random walk with volatility -------------------------------------------------------------------


def test_random_walk_paths_have_the_series_volatility():
    """On a synthetic random walk (sigma 0.3) the paths' increments have the volatility of the
    last 200 steps: per-step std within 2% (60,000 increments: std error 0.3%), spread at
    horizon h = sigma sqrt(h), and every path starts from the last value."""
    past = _walk(0.3, 1000, seed=0)
    sigma_hat = np.std(np.diff(past[-200:]), ddof=1)
    assert abs(sigma_hat / 0.3 - 1) < 0.15  # 199 differences: std error 5%
    paths = random_walk(past, 30, 2000, generator=1)
    assert paths.shape == (2000, 30)
    steps = np.diff(np.concatenate([np.full((2000, 1), past[-1]), paths], axis=1), axis=1)
    assert abs(steps.std() / sigma_hat - 1) < 0.02
    assert abs(steps.mean()) < 4 * sigma_hat / np.sqrt(steps.size)  # no drift
    for h in (1, 10, 30):
        assert abs(paths[:, h - 1].std() / (sigma_hat * np.sqrt(h)) - 1) < 0.08  # 2000 paths: std error 1.6%


def test_random_walk_uses_the_last_window_only():
    """Volatility 1 for 800 steps, then 0.1: the paths follow the recent 0.1, not the overall."""
    rng = np.random.default_rng(2)
    past = np.cumsum(np.concatenate([rng.normal(0, 1.0, 800), rng.normal(0, 0.1, 200)]))
    step = random_walk(past, 1, 4000, generator=3)[:, 0] - past[-1]
    assert 0.08 < step.std() < 0.12
    wide = random_walk(past, 1, 4000, window=1000, generator=3)[:, 0] - past[-1]
    assert wide.std() > 0.5


def test_random_walk_equals_its_formula_with_missing_values():
    """Exact: differences with a NaN end are left out, the walk starts from the last observed
    value and the 2 missing final steps are drawn too; same seed, same normals."""
    past = np.array([1.0, 1.5, np.nan, 2.5, 2.0, 3.0, 2.0, np.nan, np.nan])
    sigma = np.std([0.5, -0.5, 1.0, -1.0], ddof=1)
    expected = 2.0 + np.cumsum(np.random.default_rng(7).standard_normal((50, 2 + 4)) * sigma, axis=1)[:, 2:]
    np.testing.assert_allclose(random_walk(past, 4, 50, generator=7), expected, rtol=0, atol=1e-12)


def test_random_walk_seeds_batches_and_shapes():
    pasts = [_walk(0.2, 300, seed=s) for s in range(3)]
    a = random_walk(pasts, 12, 20, generator=5)
    assert a.shape == (3, 20, 12)
    np.testing.assert_array_equal(a, random_walk(pasts, 12, 20, generator=np.random.default_rng(5)))
    np.testing.assert_array_equal(a[0], random_walk(pasts[0], 12, 20, generator=5))  # the first past draws first
    assert not np.allclose(a, random_walk(pasts, 12, 20, generator=6))
    assert random_walk(np.stack(pasts), 12, 20, generator=5).shape == (3, 20, 12)


@pytest.mark.parametrize("kwargs, match", [
    ({"prediction_length": 0}, "prediction_length"),
    ({"num_samples": 0}, "num_samples"),
    ({"window": 2}, "window"),
    ({"generator": "seed"}, "generator"),
    ({"generator": -1}, "generator"),
])
def test_random_walk_refuses_bad_arguments(kwargs, match):
    args = {"prediction_length": 5, "num_samples": 10, **kwargs}
    with pytest.raises(ValueError, match=match):
        random_walk(_walk(0.1, 50, 0), **args)


@pytest.mark.parametrize("past, match", [
    (np.full(20, np.nan), "no observed value"),
    (np.array([1.0, np.nan, 2.0, np.nan, 3.0]), "consecutive observed"),
    (np.array([1.0, 2.0, np.inf, 3.0]), "infinite value at index 2"),
    (np.ones((3, 4)), "1-D"),
    (["a", "b", "c"], "real numbers"),
])
def test_random_walk_refuses_bad_pasts(past, match):
    with pytest.raises(ValueError, match=match):
        random_walk([np.arange(10.0), past], 5, 10)
    with pytest.raises(ValueError, match="empty"):
        random_walk([], 5, 10)


def test_random_walk_reproduces_the_issue_on_exchange_rate_nips(shared_datasets):
    """Issue 27 measured CRPS 0.0072 (40 windows, 100 paths); seed 0 gives 0.00724."""
    folder = shared_datasets / "timeseries" / "exchange_rate_nips"
    if not folder.is_dir():
        pytest.skip(f"exchange_rate_nips not found at {folder}")
    data = read_gluonts(folder)
    pasts, truth = split_test_set(data.test, data.prediction_length)
    crps = evaluate(random_walk(pasts, 30, 100, generator=0), truth)["CRPS"]
    assert round(crps, 4) == 0.0072


# -- seasonal naive with seasonal-difference noise -------------------------------------------------


def _seasonal(n: int, season: int, noise: float, seed: int) -> np.ndarray:
    t = np.arange(n)
    return 10 + 3 * np.sin(2 * np.pi * t / season) + np.random.default_rng(seed).normal(0, noise, n)


def test_seasonal_difference_naive_draws_seasonal_differences_exactly():
    """Every step within the first season is the value one season back plus one observed
    seasonal difference; later steps add one difference to the path's own value a season back."""
    m = 7
    past = _seasonal(300, m, 0.5, seed=0)
    recent = past[-200:]
    diffs = recent[m:] - recent[:-m]
    paths = seasonal_difference_naive(past, 20, m, 500, generator=1)
    assert paths.shape == (500, 20)
    first = paths[:, :m] - past[len(past) - m:]
    later = paths[:, m:] - paths[:, :-m]
    for step in (first, later):
        assert np.isin(np.round(step, 9), np.round(diffs, 9)).all()


def test_seasonal_difference_naive_follows_the_season_and_its_spread():
    """Seasonal series (period 7, iid noise 0.5): the median path follows the season (error
    below the noise), the spread is the seasonal differences' std (0.5 sqrt 2) in the first
    season and sqrt(2) times that in the second; it beats the random walk's CRPS there."""
    m, noise = 7, 0.5
    series = _seasonal(314, m, noise, seed=2)
    past, future = series[:300], series[300:]
    paths = seasonal_difference_naive(past, 14, m, 4000, generator=3)
    pattern = 10 + 3 * np.sin(2 * np.pi * np.arange(300, 314) / m)
    assert np.abs(np.median(paths, axis=0) - pattern).mean() < noise
    sd = noise * np.sqrt(2)
    assert abs(paths[:, :m].std(axis=0).mean() / sd - 1) < 0.15
    assert abs(paths[:, m:].std(axis=0).mean() / (sd * np.sqrt(2)) - 1) < 0.15
    rw = random_walk(past, 14, 4000, generator=3)
    assert evaluate(paths, future)["CRPS"] < 0.5 * evaluate(rw, future)["CRPS"]


def test_seasonal_difference_naive_missing_value_one_season_back():
    """The value one season back is missing: the same phase two seasons back is used, with two
    differences drawn (each step minus that value is a sum of two observed differences)."""
    m = 4
    past = _seasonal(120, m, 0.3, seed=4)
    past[-m] = np.nan  # the base of forecast step 1
    recent = past[-200:]
    diffs = recent[m:] - recent[:-m]
    diffs = diffs[~np.isnan(diffs)]
    paths = seasonal_difference_naive(past, 1, m, 200, generator=5)[:, 0]
    pairs = np.round((diffs[:, None] + diffs[None, :]).ravel(), 9)
    assert np.isin(np.round(paths - past[-2 * m], 9), pairs).all()
    assert not np.isin(np.round(paths - past[-2 * m], 9), np.round(diffs, 9)).all()


def test_seasonal_difference_naive_seeds_and_bad_inputs():
    past = _seasonal(100, 5, 0.2, seed=6)
    a = seasonal_difference_naive([past, past[:80]], 8, 5, 30, generator=9)
    assert a.shape == (2, 30, 8)
    np.testing.assert_array_equal(a, seasonal_difference_naive([past, past[:80]], 8, 5, 30, generator=9))
    with pytest.raises(ValueError, match="season"):
        seasonal_difference_naive(past, 8, 0, 30)
    with pytest.raises(ValueError, match="window"):
        seasonal_difference_naive(past, 8, 5, 30, window=6)
    with pytest.raises(ValueError, match="seasonal difference"):
        seasonal_difference_naive(past[:6], 8, 5, 30)
    no_phase = past.copy()
    no_phase[-5::-5] = np.nan  # every value at the phase of step 1
    with pytest.raises(ValueError, match="phase of forecast step 1"):
        seasonal_difference_naive([past, no_phase], 8, 5, 30)
