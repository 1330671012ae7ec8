"""Issue 22 in the timeseries domain: every numeric argument and input array of ``sample`` /
``forecast`` / ``impute`` is checked before any work; non-finite values during sampling raise
``FloatingPointError`` instead of reaching a result; forecast files keep the series' names and
dates (long format) and ``sciogen evaluate`` reads them back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sciogen.cli import main
from sciogen.timeseries import Series, TimeSeriesGenerator
from sciogen.timeseries import io as ts_io
from sciogen.timeseries.config import TimeSeriesConfig, TSDataConfig, TSGuidanceConfig, TSModelConfig
from sciogen.timeseries.io import read_forecast, write_forecast, write_truth

CONTEXT, HORIZON = 24, 6


def _generator() -> TimeSeriesGenerator:
    """An untrained, fully configured model (no lags): enough to check arguments and files."""
    torch.manual_seed(0)
    config = TimeSeriesConfig(
        data=TSDataConfig(freq="D", prediction_length=HORIZON, context_length=CONTEXT, lags=[],
                          normalization="standard"),
        model=TSModelConfig(hidden=8, blocks=1, state=4, step_dim=8),
        guidance=TSGuidanceConfig(solver="ddim", steps=2, scale=0.0, replace=True, num_samples=3),
    )
    config.sampling.steps, config.sampling.solver = 2, "ddim"
    return TimeSeriesGenerator(config)


@pytest.fixture()
def gen():
    return _generator()


@pytest.fixture()
def network_calls(gen):
    """Counts the calls of the sampling network (0 = refused before any work)."""
    calls = []
    handle = gen.sampling_model.register_forward_hook(lambda *a: calls.append(1))
    yield calls
    handle.remove()


def _past(n=40, seed=0) -> np.ndarray:
    return 5.0 + np.sin(np.arange(n) / 3.0) + 0.1 * np.random.default_rng(seed).normal(size=n)


def _with(value, at=-3) -> np.ndarray:
    past = _past().astype(np.asarray(value).dtype if np.iscomplexobj(value) else np.float64)
    past[at] = value
    return past


def _cli(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


# -- item 2: numeric arguments and input arrays, checked before any work --------------------------------


FORECAST_CASES = {
    "inf in an array": (lambda: (_with(np.inf),), {}, r"context must not contain infinities: inf at index 37"),
    "-inf in a 2-D array": (lambda: (np.stack([_past(), _with(-np.inf, 5)]),), {},
                            r"context must not contain infinities: -inf at index \(1, 5\)"),
    "inf in an un-indexed pd.Series": (lambda: (pd.Series(_with(np.inf)),), {}, r"context must not contain infinities"),
    "inf in a column of an un-indexed DataFrame": (lambda: (pd.DataFrame({"a": _past(), "b": _with(np.inf)}),), {},
                                                   r"context 'b' must not contain infinities"),
    "complex array": (lambda: (_past() + 1j,), {}, r"context holds complex numbers"),
    "complex dated pd.Series": (lambda: (pd.Series(_past() + 0j, index=pd.date_range("2024-01-01", periods=40)),),
                                {}, r"holds complex numbers"),
    "negative horizon": (lambda: (_past(), -5), {}, r"prediction_length must be >= 1 \(an integer\), got -5"),
    "zero horizon": (lambda: (_past(), 0), {}, r"prediction_length must be >= 1 \(an integer\), got 0"),
    "fractional horizon": (lambda: (_past(), 2.5), {}, r"prediction_length must be >= 1 \(an integer\), got 2.5"),
    "zero num_samples": (lambda: (_past(), HORIZON, 0), {}, r"num_samples must be >= 1 \(an integer\), got 0"),
    "zero steps": (lambda: (_past(),), {"steps": 0}, r"steps must be >= 1 \(an integer\), got 0"),
    "negative batch_size": (lambda: (_past(),), {"batch_size": -5}, r"batch_size must be >= 1 \(an integer\), got -5"),
    "NaN scale": (lambda: (_past(),), {"scale": float("nan")}, r"scale must be finite, got nan"),
    "negative scale": (lambda: (_past(),), {"scale": -1.0}, r"scale must be >= 0, got -1.0"),
    "eta above 1": (lambda: (_past(),), {"eta": 2.0}, r"eta must lie in \[0, 1\]"),
    "unknown solver": (lambda: (_past(),), {"solver": "heun"},
                       r"guidance solver must be one of ddpm, ddim, got 'heun'"),
    "unknown option": (lambda: (_past(),), {"stepz": 3}, r"unknown guidance options \['stepz'\]"),
    "fractional seed": (lambda: (_past(),), {"seed": 1.5}, r"seed must be an integer, got 1.5"),
    "huge values": (lambda: (_past() * 1e307,), {}, r"context 0: its values are too large to normalise"),
}


@pytest.mark.parametrize("case", sorted(FORECAST_CASES))
def test_forecast_refuses_bad_arguments_before_any_work(gen, network_calls, case):
    args, kwargs, message = FORECAST_CASES[case]
    with pytest.raises(ValueError, match=message):
        gen.forecast(*args(), **kwargs)
    assert not network_calls, "the network ran before the arguments were checked"


SAMPLE_CASES = {
    "length 0": ({"length": 0}, r"length must be >= 1 \(an integer\), got 0"),
    "negative length": ({"length": -3}, r"length must be >= 1 \(an integer\), got -3"),
    "n 0 with a context": ({"n": 0, "context": _past()}, r"n must be >= 1 \(an integer\), got 0"),
    "negative horizon": ({"context": _past(), "horizon": -5}, r"horizon must be >= 1 \(an integer\), got -5"),
    "zero horizon": ({"context": _past(), "horizon": 0}, r"horizon must be >= 1 \(an integer\), got 0"),
    "zero steps with a context": ({"context": _past(), "steps": 0}, r"steps must be >= 1 \(an integer\), got 0"),
    "zero steps": ({"steps": 0}, r"steps must be >= 1 \(an integer\), got 0"),
    "negative batch_size": ({"batch_size": -5}, r"batch_size must be >= 1 \(an integer\), got -5"),
    "inf in the context": ({"context": _with(np.inf)}, r"context must not contain infinities"),
}


@pytest.mark.parametrize("case", sorted(SAMPLE_CASES))
def test_sample_refuses_bad_arguments_before_any_work(gen, network_calls, case):
    options, message = SAMPLE_CASES[case]
    options = {"n": 2, **options}
    with pytest.raises(ValueError, match=message):
        gen.sample(options.pop("n"), **options)
    assert not network_calls


@pytest.mark.parametrize("kwargs, args, message", [
    ({}, (_with(np.inf),), r"series must not contain infinities: inf at index 37"),
    ({}, (_with(np.nan, 30) + 1j,), r"series holds complex numbers"),
    ({"num_samples": 0}, (_with(np.nan, 30),), r"num_samples must be >= 1 \(an integer\), got 0"),
    ({"steps": 0}, (_with(np.nan, 30),), r"steps must be >= 1 \(an integer\), got 0"),
])
def test_impute_refuses_bad_arguments_before_any_work(gen, network_calls, kwargs, args, message):
    with pytest.raises(ValueError, match=message):
        gen.impute(*args, **kwargs)
    assert not network_calls


def test_forecast_frame_refuses_quantiles_outside_zero_one(gen, network_calls):
    with pytest.raises(ValueError, match=r"quantiles\[1\] must lie strictly between 0 and 1, got 2.0"):
        gen.forecast_frame(_past(), quantiles=(0.5, 2.0))
    assert not network_calls


def test_valid_arguments_still_give_what_was_asked(gen):
    """The checks refuse, never fall back: the horizon, paths and length asked for are given."""
    paths = gen.forecast(_past(), 2 * HORIZON + 1, 4, seed=0)
    assert paths.shape == (4, 2 * HORIZON + 1) and np.isfinite(paths).all()
    assert gen.sample(2, length=7, seed=0).shape == (2, 7)
    with_missing = gen.forecast(_with(np.nan), HORIZON, 2, seed=0)  # NaN is a missing value, not an error
    assert np.isfinite(with_missing).all()


def test_cli_refuses_a_negative_horizon_and_writes_nothing(gen, tmp_path, capsys):
    checkpoint = gen.save(tmp_path / "ts.pt")
    pd.DataFrame({"v": _past()}).to_csv(tmp_path / "past.csv", index=False)
    out = tmp_path / "forecast.csv"
    for option, value in (("--horizon", -5), ("--horizon", 0), ("-n", 0), ("--steps", 0), ("--length", 0)):
        extra = () if option == "--length" else ("--context", tmp_path / "past.csv")
        n = () if option == "-n" else ("-n", 2)
        code, _, err = _cli(capsys, "sample", checkpoint, *n, *extra, option, value, "--out", out)
        flag = {"--horizon": "horizon", "-n": "n", "--steps": "steps", "--length": "length"}[option]
        assert code == 1 and f"{flag} must be >= 1 (an integer), got {value}" in err, err
        assert not out.exists()


# -- item 3: non-finite values during sampling ---------------------------------------------------------


def _nan_after(gen, calls: int):
    """Make the network return NaN from its ``calls``-th call on."""
    count = []

    def hook(module, inputs, output):
        count.append(1)
        return output * float("nan") if len(count) >= calls else output

    return gen.sampling_model.register_forward_hook(hook)


@pytest.mark.parametrize("what", ["forecast", "second block", "impute", "synthetic"])
@pytest.mark.parametrize("calls", [1, 2])
def test_nan_network_output_raises_naming_the_step(gen, what, calls):
    if what == "second block":
        calls += 2  # the first block's 2 steps pass; the NaN appears in the second block
    handle = _nan_after(gen, calls)
    try:
        with pytest.raises(FloatingPointError, match=r"non-finite values appeared at solver step \d"):
            if what in ("forecast", "second block"):
                gen.forecast(_past(), 2 * HORIZON if what == "second block" else HORIZON, 2, seed=0)
            elif what == "impute":
                gen.impute(_with(np.nan, 30), 2, seed=0)
            else:
                gen.sample(2, seed=0)
    finally:
        handle.remove()


def test_corrupt_window_stats_raise_instead_of_returning_nan_series(gen):
    """Synthetic series are put in data units with the checkpoint's window statistics: a NaN
    there used to give NaN series silently."""
    gen.window_stats = torch.tensor([[0.0, float("nan")]])
    with pytest.raises(FloatingPointError, match=r"non-finite values appeared in the synthetic series.*window_stats"):
        gen.sample(2, seed=0)


def test_overflow_back_in_data_units_raises(gen, monkeypatch):
    """A forecast that overflows when put back in data units never reaches the caller."""
    import sciogen.timeseries.forecast as forecast

    monkeypatch.setattr(forecast, "unnormalize", lambda x, loc, scale: x * float("inf"))
    with pytest.raises(FloatingPointError, match=r"the forecast of contexts 0 to 0 \(back in data units\)"):
        gen.forecast(_past(), HORIZON, 2, seed=0)


# -- item 5: forecast files keep the series' names and dates ---------------------------------------------


def _dated_context(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    stamps = pd.date_range("2024-03-01", periods=40, freq="D")  # the model's frequency
    frame = pd.DataFrame({"usd": _past(seed=1), "eur": _past(seed=2) + 1.0}, index=stamps).rename_axis("date")
    path = tmp_path / "past.csv"
    frame.to_csv(path)
    return path, frame


def test_cli_forecast_csv_is_long_with_the_inputs_names_and_dates(gen, tmp_path, capsys):
    checkpoint = gen.save(tmp_path / "ts.pt")
    context, frame = _dated_context(tmp_path)
    out = tmp_path / "forecast.csv"
    code, _, err = _cli(capsys, "sample", checkpoint, "-n", 3, "--context", context, "--horizon", 4, "--out", out)
    assert code == 0, err
    written = pd.read_csv(out)
    assert list(written.columns) == ["item_id", "timestamp", "sample_0", "sample_1", "sample_2"]
    assert list(written["item_id"]) == ["usd"] * 4 + ["eur"] * 4
    future = [str(d.date()) for d in pd.date_range(frame.index[-1], periods=5, freq="D")[1:]]  # the days after
    assert list(written["timestamp"]) == future * 2
    # the same paths as the Python call, and read back with their names and dates
    paths = gen.sample(3, context=str(context), horizon=4, seed=0)
    back = TimeSeriesGenerator.read_samples(out)
    assert isinstance(back, ts_io.ForecastPaths) and back.shape == (2, 3, 4)
    np.testing.assert_allclose(back, paths, rtol=1e-6)
    assert back.item_ids == ["usd", "eur"] and [str(t.date()) for t in back.timestamps[1]] == future
    # evaluate reads the new format back
    write_truth(np.ones((2, 4)) * 5.0, tmp_path / "truth.csv")
    code, text, err = _cli(capsys, "evaluate", "timeseries", out, "--truth", tmp_path / "truth.csv")
    assert code == 0 and "CRPS" in text, err


def test_forecast_without_names_or_dates_writes_positions_and_steps(gen, tmp_path):
    paths = gen.forecast(np.stack([_past(), _past(seed=3)]), 3, 2, seed=0)
    path = gen.write_samples(paths, tmp_path / "f.csv")
    written = pd.read_csv(path)
    assert list(written["item_id"]) == [0, 0, 0, 1, 1, 1] and list(written["timestamp"]) == [1, 2, 3] * 2
    back = read_forecast(path)
    np.testing.assert_allclose(back, paths, rtol=1e-6)
    assert back.timestamps is None


def test_python_forecast_of_series_objects_carries_their_names(gen, tmp_path):
    series = [Series(_past(seed=k), "2024-01-01", "D", f"shop{k}") for k in range(2)]
    paths = gen.forecast(series, 2, 2, seed=0)
    assert paths.item_ids == ["shop0", "shop1"]
    assert [str(t.date()) for t in paths.timestamps[0]] == ["2024-02-10", "2024-02-11"]  # 40 days after Jan 1
    written = pd.read_csv(gen.write_samples(paths, tmp_path / "f.csv"))
    assert list(written["item_id"]) == ["shop0", "shop0", "shop1", "shop1"]


def test_synthetic_and_earlier_forecast_files_are_still_told_apart(gen, tmp_path):
    synthetic = gen.sample(2, length=5, seed=0)
    path = gen.write_samples(synthetic, tmp_path / "synthetic.csv")
    assert pd.read_csv(path).columns[0] == "sample"
    back = TimeSeriesGenerator.read_samples(path)
    assert isinstance(back, torch.Tensor) and back.shape == (2, 5)
    old = tmp_path / "old.csv"  # the layout written before issue 22
    old.write_text("series,sample,1,2\n0,0,1.0,2.0\n0,1,1.5,2.5\n1,0,3.0,4.0\n1,1,3.5,4.5\n")
    np.testing.assert_array_equal(TimeSeriesGenerator.read_samples(old),
                                  [[[1.0, 2.0], [1.5, 2.5]], [[3.0, 4.0], [3.5, 4.5]]])


# -- item 9: clear errors instead of internals -----------------------------------------------------------


@pytest.mark.parametrize("text, message", [
    ("item_id,timestamp,sample_0\na,2024-01-01,1\na,2024-01-02,\n", r"line 3, column 'sample_0': nan is not a finite"),
    ("item_id,timestamp,sample_0\na,2024-01-01,1\na,2024-01-02,x\n", r"line 3, column 'sample_0': 'x' is not a finite"),
    ("item_id,timestamp,sample_0\na,1,1\na,2,2\nb,1,3\n",
     r"same number of forecast steps \(rows\), got 'a': 2, 'b': 1"),
    ("item_id,timestamp\na,1\n", r"needs the columns item_id, timestamp, sample_0"),
    ("", r"cannot read samples"),
    ("a,b\n1,2\n", r"not a file of time-series samples"),
])
def test_bad_sample_files_give_errors_naming_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        TimeSeriesGenerator.read_samples(path)


def test_cli_refuses_an_unknown_suffix_before_sampling(gen, tmp_path, capsys):
    checkpoint = gen.save(tmp_path / "ts.pt")
    code, _, err = _cli(capsys, "sample", checkpoint, "-n", 2, "--out", tmp_path / "x.parquet")
    assert code == 1 and "unknown output format '.parquet'; use a file ending in .csv" in err


def test_write_forecast_refuses_non_finite_paths_and_mismatched_names(tmp_path):
    paths = np.ones((2, 3))
    paths[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"forecast series 0, sample 1, step 3 is nan: not written"):
        write_forecast(paths, tmp_path / "f.csv")
    with pytest.raises(ValueError, match=r"2 item_ids for 1 forecast series"):
        write_forecast(np.ones((2, 3)), tmp_path / "f.csv", item_ids=["a", "b"])
    assert not (tmp_path / "f.csv").exists()


def test_truth_file_errors_name_the_file_and_cell(tmp_path):
    from sciogen.timeseries.io import read_truth

    with pytest.raises(ValueError, match=r"missing.csv: cannot read the truth"):
        read_truth(tmp_path / "missing.csv")
    bad = tmp_path / "truth.csv"
    bad.write_text("series,1,2,3\n0,1,x,2\n1,1,2,3\n")
    with pytest.raises(ValueError, match=r"truth.csv: line 2, column '2': 'x' is not a number"):
        read_truth(bad)
