"""GluonTS-native interfaces (sciogen.timeseries.gluonts_interop): ListDataset-style entries
in, SampleForecast out, SciogenPredictor under GluonTS's own make_evaluation_predictions and
Evaluator, and long-format frames. Tests that need gluonts skip without it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from sciogen.timeseries import Series, TimeSeriesError, TimeSeriesGenerator, evaluate
from sciogen.timeseries.config import TimeSeriesConfig, TSDataConfig, TSGuidanceConfig, TSModelConfig
from sciogen.timeseries.gluonts_interop import SciogenPredictor, from_gluonts, to_long_frame, to_sample_forecasts
from sciogen.timeseries.io import ForecastPaths

H = 8


def _entries(n=4, length=80, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return [{"start": pd.Period("2023-01-01 00:00", freq="h"), "item_id": f"s{i}",
             "target": 5.0 + np.sin(2 * np.pi * t / 24 + p) + 0.1 * rng.normal(size=length),
             "feat_static_cat": [i], "feat_dynamic_real": rng.normal(size=(2, length))}
            for i, p in enumerate(rng.uniform(0, 2 * np.pi, n))]


@pytest.fixture(scope="module")
def tiny():
    cfg = TimeSeriesConfig(
        data=TSDataConfig(freq="h", prediction_length=H, context_length=24, lags=[], normalization="standard"),
        model=TSModelConfig(hidden=16, blocks=1, state=8, step_dim=16),
        guidance=TSGuidanceConfig(solver="ddim", steps=5, scale=0.0, replace=True, num_samples=16),
    )
    cfg.train.steps, cfg.train.batch_size, cfg.train.progress, cfg.train.tensorboard = 20, 16, False, False
    cfg.train.warmup_steps, cfg.train.log_every = 5, 10
    torch.manual_seed(0)
    return TimeSeriesGenerator(cfg).fit(from_gluonts(_entries()))


def test_from_gluonts_reads_entries_and_names_bad_ones():
    series = from_gluonts(_entries(2))
    assert [s.item_id for s in series] == ["s0", "s1"] and len(series[0]) == 80
    assert series[0].freq == "h" and series[0].start == pd.Timestamp("2023-01-01")
    assert series[1].extra["feat_static_cat"] == [1] and series[1].extra["feat_dynamic_real"].shape == (2, 80)
    plain = from_gluonts([{"start": "2020-03-02", "target": [1.0, None, 3.0]}], freq="B")
    assert plain[0].freq == "B" and np.isnan(plain[0].target[1])
    with pytest.raises(TimeSeriesError, match="entry 0: start '2020-03-02' is not a pd.Period.*pass freq="):
        from_gluonts([{"start": "2020-03-02", "target": [1.0, 2.0]}])
    with pytest.raises(TimeSeriesError, match="entry 1 \\(item_id 'm'\\): target has shape \\(2, 3\\)"):
        from_gluonts([{"start": "2020-01-01", "target": [1.0]}, {"start": "2020-01-01", "item_id": "m",
                                                               "target": np.ones((2, 3))}], freq="D")
    bad = _entries(1)[0] | {"feat_dynamic_real": np.ones((2, 10))}
    with pytest.raises(TimeSeriesError, match="item_id 's0'.*feat_dynamic_real must be \\(num_features, T\\)"):
        from_gluonts([bad])
    with pytest.raises(TimeSeriesError, match="entry 0: a GluonTS entry is a dict with 'start' and 'target'"):
        from_gluonts([{"target": [1.0]}])


def test_long_frame_of_a_forecast():
    rng = np.random.default_rng(0)
    stamps = [pd.date_range("2024-01-01", periods=3, freq="D")] * 2
    paths = ForecastPaths(rng.normal(size=(2, 5, 3)), ["a", "b"], stamps)
    frame = to_long_frame(paths, quantiles=(0.1, 0.5, 0.9), samples=True)
    assert list(frame.columns) == ["item_id", "timestamp", "mean", "0.1", "0.5", "0.9",
                                   *(f"sample_{k}" for k in range(5))]
    assert list(frame["item_id"]) == ["a"] * 3 + ["b"] * 3 and frame["timestamp"].iloc[4] == stamps[1][1]
    np.testing.assert_allclose(frame["mean"].to_numpy(), np.asarray(paths).mean(1).reshape(-1))
    np.testing.assert_allclose(frame["0.5"].iloc[3:], np.sort(paths[1], axis=0)[2])  # GluonTS median: rank 2 of 5
    np.testing.assert_allclose(frame["sample_3"].iloc[:3], paths[0, 3])
    one = to_long_frame(np.ones((4, 2)))  # a plain array: item 0, steps 1 .. H
    assert list(one["timestamp"]) == [1, 2] and list(one["item_id"]) == [0, 0] and "sample_0" not in one
    with pytest.raises(ValueError, match="quantiles\\[0\\] must be a number strictly between 0 and 1"):
        to_long_frame(paths, quantiles=(1.5,))


def test_sample_forecasts_from_generator_paths(tiny):
    pytest.importorskip("gluonts")
    from gluonts.model.forecast import SampleForecast

    series = from_gluonts(_entries(2, seed=1))
    paths = tiny.forecast(series, H, 6, seed=0)
    forecasts = to_sample_forecasts(paths)
    assert all(isinstance(f, SampleForecast) for f in forecasts)
    assert forecasts[1].item_id == "s1" and forecasts[1].samples.shape == (6, H)
    assert forecasts[0].start_date == pd.Period("2023-01-04 08:00", freq="h")  # 80 hours after the start
    np.testing.assert_array_equal(forecasts[0].samples, paths[0])
    frame = to_long_frame(forecasts, quantiles=(0.5,))
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2023-01-04 08:00")
    with pytest.raises(ValueError, match="carry no timestamps"):
        to_sample_forecasts(np.asarray(paths))


def test_gluonts_evaluator_on_the_predictor_matches_sciogen_crps(tiny):
    """GluonTS's own backtest: make_evaluation_predictions + Evaluator on SciogenPredictor.
    Its mean_wQuantileLoss equals sciogen's CRPS on the same sample paths, and the paths are
    the generator's forecast of the truncated series with the predictor's seed."""
    pytest.importorskip("gluonts")
    from gluonts.dataset.common import ListDataset
    from gluonts.evaluation import Evaluator, make_evaluation_predictions

    dataset = ListDataset(_entries(4, seed=2), freq="h")
    predictor = SciogenPredictor(tiny)
    assert predictor.prediction_length == H and predictor.lead_time == 0
    forecast_it, truth_it = make_evaluation_predictions(dataset, predictor, num_samples=12)
    forecasts, truths = list(forecast_it), list(truth_it)
    agg, per_item = Evaluator(num_workers=0)(iter(truths), iter(forecasts), num_series=len(dataset))
    samples = np.stack([f.samples for f in forecasts])
    truth = np.stack([t.to_numpy().reshape(-1)[-H:] for t in truths])
    ours = evaluate(samples, truth)
    assert samples.shape == (4, 12, H) and list(per_item["item_id"]) == ["s0", "s1", "s2", "s3"]
    np.testing.assert_allclose(agg["mean_wQuantileLoss"], ours["CRPS"], rtol=1e-6)  # GluonTS: float32 targets
    np.testing.assert_allclose(agg["ND"], ours["ND"], rtol=1e-6)
    pasts = [Series(e["target"][:-H].astype(np.float32), e["start"], "h", e["item_id"]) for e in _entries(4, seed=2)]
    expected = tiny.forecast(pasts, H, 12, seed=0)  # ListDataset holds float32 targets
    np.testing.assert_allclose(samples, expected, rtol=1e-12)
    assert forecasts[2].start_date == pd.Period("2023-01-04 00:00", freq="h")  # 72 = 80 - 8 hours on


def test_predictor_applies_a_calibration(tiny):
    pytest.importorskip("gluonts")
    entries = _entries(3, seed=3)
    series = from_gluonts(entries)
    cal = tiny.calibrate(series, windows=2, num_samples=10, seed=0)
    got = list(SciogenPredictor(tiny, calibration=cal, seed=4).predict(entries))  # num_samples from the calibration
    raw = tiny.forecast(series, H, 10, seed=4)
    np.testing.assert_allclose(np.stack([f.samples for f in got]), cal.apply(raw))
    with pytest.raises(TypeError, match="takes dataset and num_samples"):
        next(SciogenPredictor(tiny).predict(entries, num_sample=3))
