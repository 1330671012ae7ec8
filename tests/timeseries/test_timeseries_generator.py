"""TimeSeriesGenerator end to end on small synthetic series: fit, forecast, impute,
synthetic samples, save / load, CLI hooks, and that guidance learns something measurable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from sciogen.timeseries import Series, SeriesTooShortError, TimeSeriesGenerator, evaluate
from sciogen.timeseries.config import TimeSeriesConfig, TSDataConfig, TSGuidanceConfig, TSModelConfig
from sciogen.timeseries.io import read_forecast, write_truth


def _series(n=4, length=300, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return [Series(5.0 + np.sin(2 * np.pi * t / 24 + p) + 0.05 * rng.normal(size=length), "2023-01-01", "h", i)
            for i, p in enumerate(rng.uniform(0, 2 * np.pi, n))]


def _config(steps=60, **data):
    cfg = TimeSeriesConfig(
        data=TSDataConfig(prediction_length=12, context_length=36, normalization="standard", **data),
        model=TSModelConfig(hidden=16, blocks=1, state=8, step_dim=16),
        guidance=TSGuidanceConfig(solver="ddim", steps=10, scale=1.0, num_samples=8),
    )
    cfg.train.steps, cfg.train.batch_size, cfg.train.progress, cfg.train.tensorboard = steps, 16, False, False
    cfg.train.warmup_steps, cfg.train.log_every = 10, 10
    return cfg


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    return TimeSeriesGenerator(_config(steps=60)).fit(_series())


def test_settings_are_resolved_from_the_data(trained):
    d = trained.config.data
    assert d.freq == "h" and d.lags == [24, 48, 72, 96, 120, 144, 168, 336][:7]  # 336 + 48 > 300 values: dropped
    assert trained.channels == 8 and trained.model.channels == 8


def test_forecast_shapes_units_and_reproducibility(trained):
    series = _series(2, seed=1)
    one = trained.forecast(series[0].target[:-12], 12, 5, seed=3)
    assert one.shape == (5, 12) and np.isfinite(one).all()
    assert abs(np.median(one) - 5.0) < 2.0  # in the units of the context
    np.testing.assert_array_equal(one, trained.forecast(series[0].target[:-12], 12, 5, seed=3))
    several = trained.forecast([s.target for s in series], num_samples=4, seed=0)
    assert several.shape == (2, 4, 12)
    longer = trained.forecast(series[0].target, 30, 3, seed=0)  # beyond the trained horizon: block-wise
    assert longer.shape == (3, 30)
    frame = trained.forecast_frame(series[0].to_pandas(), 12, 8, seed=0)
    assert list(frame.columns[:3]) == ["mean", "0.05", "0.1"] and len(frame) == 12
    assert frame.index[0] == series[0].index()[-1] + pd.Timedelta(hours=1)
    with pytest.raises(SeriesTooShortError, match="context length 36"):
        trained.forecast(np.ones(20))


def test_impute_keeps_observed_values(trained):
    values = _series(1, seed=2)[0].target[:80].copy()
    values[40:50] = np.nan
    values[5] = np.nan
    out = trained.impute(values, num_samples=3, seed=0)
    observed = ~np.isnan(values)
    assert out.shape == (3, 80) and np.isfinite(out).all()
    np.testing.assert_array_equal(out[:, observed], np.broadcast_to(values[observed], (3, observed.sum())))


def test_synthetic_samples_and_save_load_round_trip(trained, tmp_path):
    x = trained.sample(3, length=48, steps=5, solver="ddim", seed=0)
    assert x.shape == (3, 48) and torch.isfinite(x).all()
    path = trained.save(tmp_path / "ts.pt")
    loaded = TimeSeriesGenerator.load(path, device="cpu")
    assert loaded.config.data.lags == trained.config.data.lags
    past = _series(1, seed=4)[0].target
    np.testing.assert_allclose(loaded.forecast(past, 12, 4, seed=1), trained.forecast(past, 12, 4, seed=1))


def test_cli_hooks_context_csv_forecast_and_evaluate(trained, tmp_path):
    s = _series(2, seed=5)
    frame = pd.DataFrame({"a": s[0].target, "b": s[1].target}, index=s[0].index()).rename_axis("time")
    frame.iloc[:-12].to_csv(tmp_path / "context.csv")
    samples = trained.sample(6, context=str(tmp_path / "context.csv"), horizon=12, seed=0)
    assert samples.shape == (2, 6, 12)
    trained.write_samples(samples, tmp_path / "forecast.csv")
    write_truth(frame.iloc[-12:].to_numpy().T, tmp_path / "truth.csv")
    np.testing.assert_allclose(read_forecast(tmp_path / "forecast.csv"), samples, rtol=1e-6)
    metrics = TimeSeriesGenerator.evaluate_samples(trained.read_samples(tmp_path / "forecast.csv"), str(tmp_path / "truth.csv"))
    assert 0 < metrics["CRPS"] < 1 and "NRMSE" in metrics


@pytest.mark.slow
def test_guidance_beats_unguided_samples_after_a_short_training():
    """A model trained for 600 steps forecasts a noisy sine much better with guidance than
    without it (same model, same noise): the guidance is doing its job. TSDiff's DDPM
    guidance (100 steps) and replacement of the context (10 DDIM steps) both do."""
    torch.manual_seed(0)
    gen = TimeSeriesGenerator(_config(steps=600)).fit(_series())
    test = _series(4, seed=7)
    pasts, truth = [s.target[:-12] for s in test], np.stack([s.target[-12:] for s in test])
    unguided = evaluate(gen.forecast(pasts, 12, 16, seed=0, scale=0.0), truth)["CRPS"]
    guided = evaluate(gen.forecast(pasts, 12, 16, seed=0, solver="ddpm", steps=100), truth)["CRPS"]
    replaced = evaluate(gen.forecast(pasts, 12, 16, seed=0, scale=0.0, replace=True), truth)["CRPS"]
    assert guided < 0.5 * unguided, (guided, unguided)
    assert replaced < 0.5 * unguided, (replaced, unguided)


def test_replacement_keeps_the_observed_context_exactly(trained):
    """With ``replace`` the observed entries of the sampled window equal the observations
    (guidance alone only pulls them close), and the forecast stays finite and varied."""
    from sciogen.timeseries.features import forecast_windows, make_state
    from sciogen.timeseries.forecast import guided_sample

    g = trained
    d = g.config.data
    pasts = [s.target[:-12] for s in _series(2, seed=3)]
    w = forecast_windows(pasts, d.context_length, d.prediction_length, g.max_lag)
    x_obs, mask, _, _ = make_state(w, g.lags, d.context_length, d.prediction_length, d.normalization)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        x = guided_sample(g.sampling_model.eval(), x_obs, mask, schedule=g.schedule, solver="ddim", steps=10,
                          scale=1.0, replace=True, generator=gen)
        loose = guided_sample(g.sampling_model.eval(), x_obs, mask, schedule=g.schedule, solver="ddim", steps=10,
                              scale=1.0, generator=torch.Generator().manual_seed(0))
    on = mask.bool()
    assert torch.allclose(x[on], x_obs[on], atol=1e-5)
    assert (loose[on] - x_obs[on]).abs().max() > 1e-3
    assert torch.isfinite(x).all() and x[:, -12:, 0].std() > 0
    paths = g.forecast(pasts, 12, 4, seed=0, replace=True)
    assert paths.shape == (2, 4, 12) and np.isfinite(paths).all()


def test_select_guidance_writes_the_best_candidate_into_the_config():
    torch.manual_seed(0)
    gen = TimeSeriesGenerator(_config(steps=30)).fit(_series())
    candidates = [{"scale": 0.0}, {"scale": 0.0, "replace": True}, {"scale": 4.0, "steps": 5}]
    scores = gen.select_guidance(_series(), candidates, windows=1, num_samples=4)
    assert [c for c, _ in scores] == candidates and all(np.isfinite(v) for _, v in scores)
    best = min(scores, key=lambda item: item[1])[0]
    g = gen.config.guidance
    assert all(getattr(g, k) == v for k, v in best.items())
    with pytest.raises(ValueError, match="unknown guidance options \\['scael'\\]"):
        gen.select_guidance(_series(), [{"scael": 1.0}])


def test_export_chooses_the_guidance_on_training_windows_and_keeps_an_example(trained, tmp_path):
    """``prepare_export`` (``sciogen export``): the forecasting defaults come from the candidates'
    CRPS on the training series, the example window from the data's test split; the S4D
    kernels stay float32 under ``half``."""
    from sciogen.timeseries.tables import SeriesData
    from sciogen.train.checkpoint import load_checkpoint

    series = _series()
    test = [Series(s.target[:-6], s.start, s.freq, s.item_id) for s in series]  # one test window each
    data = SeriesData(series, ["training"] * 4, "h", 12, test=test)
    candidates = ({"solver": "ddim", "steps": 4, "scale": 0.0, "replace": True},
                  {"solver": "ddim", "steps": 5, "scale": 0.5, "replace": False})
    trained.EXPORT_CANDIDATES = candidates  # an instance attribute: the class keeps its own
    out = load_checkpoint(trained.export(tmp_path / "ts.pt", half=True, data=data))
    guidance = out["config"]["guidance"]
    assert (guidance["steps"], guidance["replace"]) in {(4, True), (5, False)}
    assert out["metadata"]["example_truth"].shape == (4, 12)
    kernels = [k for k in out["model"] if ".kernel." in k and out["model"][k].is_floating_point()]
    assert kernels and all(out["model"][k].dtype == torch.float32 for k in kernels)
    assert any(v.dtype == torch.float16 for v in out["model"].values())
    del trained.EXPORT_CANDIDATES
