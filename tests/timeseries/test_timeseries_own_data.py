"""Your own series, end to end: `sciogen train timeseries --data FILE` for each accepted format,
`sciogen sample` from the run folder, `sciogen evaluate` of its output against the training file,
and the errors / skipped-series reports of bad files."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import sciogen
from sciogen.cli import main
from sciogen.data.records import RecordLog
from sciogen.timeseries import Series, TimeSeriesGenerator
from sciogen.timeseries.representation import default_prediction_length
from sciogen.timeseries.synthetic import synthetic_metrics, wasserstein1
from sciogen.timeseries.tables import read_series

from ..helpers import run_sciogen

TINY = ["model.hidden=8", "model.blocks=1", "model.state=4", "model.step_dim=8", "train.batch_size=8",
        "train.steps=3", "train.checkpoint_every=3", "train.log_every=1"]
SETS = [arg for item in TINY for arg in ("--set", item)]
LENGTH, ITEMS = 120, 3


def _frame(items=ITEMS, length=LENGTH, seed=0) -> pd.DataFrame:
    """A long table: item_id, timestamp (daily), target (a weekly cycle plus noise)."""
    rng = np.random.default_rng(seed)
    stamps = pd.date_range("2024-01-01", periods=length, freq="D")
    parts = [pd.DataFrame({"item_id": f"shop{k}", "timestamp": stamps,
                           "target": 10 + np.sin(2 * np.pi * np.arange(length) / 7 + k) + 0.1 * rng.normal(size=length)})
             for k in range(items)]
    return pd.concat(parts, ignore_index=True)


def _wide(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.pivot(index="timestamp", columns="item_id", values="target")


def _train(data: Path, tmp_path: Path, *extra: str):
    run = tmp_path / f"run-{data.name.replace('.', '-')}"
    result = run_sciogen("train", "timeseries", "--data", data, "--run-dir", run, *SETS, *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return run, result


def _cli(capsys, *args) -> tuple[int, str, str]:
    """`sciogen ARGS` in this process (same code path as the shell, without a new interpreter)."""
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _metrics(text: str) -> dict[str, float]:
    return {k: float(v) for k, v in (line.split() for line in text.strip().splitlines())}


# -- one shared run: a long CSV with garbage among the good series -------------------------------


@pytest.fixture(scope="module")
def long_run(tmp_path_factory):
    """A long CSV: 3 good series, one with a word among its values, one too short, one with an
    infinite value, one empty cell (a missing value, kept); trained from the shell."""
    folder = tmp_path_factory.mktemp("long")
    frame = _frame().astype({"target": object})
    frame.loc[5, "target"] = ""  # a missing value: kept as NaN
    bad_word = _frame(1, seed=1).assign(item_id="typo").astype({"target": object})
    bad_word.loc[17, "target"] = "12,5"
    short = _frame(1, length=20, seed=2).assign(item_id="short")
    infinite = _frame(1, seed=3).assign(item_id="broken").astype({"target": object})
    infinite.loc[3, "target"] = "inf"
    path = folder / "sales.csv"
    pd.concat([frame, bad_word, short, infinite]).to_csv(path, index=False)
    run, result = _train(path, folder, "--prediction-length", "10")
    return folder, path, run, result


def test_long_csv_trains_on_the_good_series_and_reports_the_others(long_run):
    folder, path, run, result = long_run
    assert "3 series of 120 to 120 values, frequency D; prediction length 10, context 40" in result.stderr
    assert "kept as missing" in result.stderr and "'shop0' at position(s) 5" in result.stderr
    rows = list(csv.DictReader((run / "skipped.csv").open()))
    reasons = {r["index"]: r["reason"] for r in rows}
    assert set(reasons) == {"typo", "short", "broken"}
    assert reasons["typo"].startswith(f"line {3 * LENGTH + 17 + 2}: '12,5' is not a number")  # header = line 1
    assert "20 values, fewer than one training window: context 40 + prediction 10 = 50" in reasons["short"]
    assert "infinite" in reasons["broken"] and all(r["source"].endswith("sales.csv") for r in rows)
    assert "skipped 3" in result.stderr


def test_sample_and_evaluate_synthetic_series_against_the_training_file(long_run, capsys):
    folder, path, run, _ = long_run
    out = folder / "synthetic.csv"
    code, _, err = _cli(capsys, "sample", run, "-n", "6", "--steps", "3", "--out", out)
    assert code == 0, err
    samples = TimeSeriesGenerator.read_samples(out)
    assert isinstance(samples, torch.Tensor) and samples.shape == (6, 50)
    code, text, err = _cli(capsys, "evaluate", "timeseries", out, "--reference", path)
    assert code == 0, err
    metrics = _metrics(text)
    assert {"marginal_w1", "acf_distance", "lps_synthetic", "lps_real", "lps_ratio"} <= set(metrics)
    assert metrics["lps_horizon"] == 10 and metrics["num_synthetic"] == 6  # a fifth of the window = the horizon
    assert all(np.isfinite(v) for v in metrics.values())
    # the run folder as the reference: the data it trained on, and its prediction length
    code, text_run, err = _cli(capsys, "evaluate", "timeseries", out, "--reference", run)
    assert code == 0, err
    assert _metrics(text_run) == metrics
    # without a reference: what to pass
    code, _, err = _cli(capsys, "evaluate", "timeseries", out)
    assert code == 1 and "scoring synthetic series needs the real ones: --reference my.csv" in err


def test_forecasts_are_still_scored_against_the_truth(long_run, capsys):
    folder, path, run, _ = long_run
    context = _wide(_frame()).iloc[:100]
    context.to_csv(folder / "context.csv")
    pd.DataFrame({"series": range(ITEMS), **{str(h + 1): _wide(_frame()).iloc[100 + h].to_numpy() for h in range(10)}}
                 ).to_csv(folder / "truth.csv", index=False)
    code, _, err = _cli(capsys, "sample", run, "-n", "4", "--steps", "3", "--context", folder / "context.csv",
                        "--out", folder / "forecast.csv")
    assert code == 0, err
    code, text, err = _cli(capsys, "evaluate", "timeseries", folder / "forecast.csv", "--truth", folder / "truth.csv")
    assert code == 0, err
    assert {"CRPS", "ND", "NRMSE"} <= set(_metrics(text))


# -- the other formats, each trained from the shell ------------------------------------------------


@pytest.mark.parametrize("kind", ["wide_csv", "parquet", "jsonl"])
def test_each_format_trains_samples_and_evaluates(kind, tmp_path, capsys):
    frame = _frame()
    extra: tuple[str, ...] = ("--prediction-length", "10")
    if kind == "wide_csv":
        path = tmp_path / "wide.csv"
        _wide(frame).rename_axis("Date").to_csv(path)  # a time column named Date, one column per series
    elif kind == "parquet":
        path = tmp_path / "long.parquet"
        frame.rename(columns={"item_id": "unique_id", "timestamp": "ds", "target": "y"}).to_parquet(path)
    else:
        path = tmp_path / "train.jsonl.gz"
        with gzip.open(path, "wt") as f:
            for item, g in frame.groupby("item_id"):
                f.write(json.dumps({"start": "2024-01-01", "target": g["target"].tolist(), "item_id": item}) + "\n")
            f.write('{"start": "2024-01-01", "target": [1, "n/a?", 3]}\n')
        extra += ("--freq", "D")
    run, result = _train(path, tmp_path, *extra)
    assert "3 series of 120 to 120 values, frequency D" in result.stderr
    if kind == "jsonl":
        assert list(csv.reader((run / "skipped.csv").open()))[1][:2] == [str(path), "?"]
    out = tmp_path / "synthetic.csv"
    assert _cli(capsys, "sample", run, "-n", "4", "--steps", "2", "--out", out)[0] == 0
    # JSON lines carry no timestamps, so the reference is the run folder (it knows the frequency)
    code, text, err = _cli(capsys, "evaluate", "timeseries", out, "--reference", run if kind == "jsonl" else path)
    assert code == 0, err
    assert np.isfinite(_metrics(text)["marginal_w1"])


def test_pandas_series_through_sciogen_fit(tmp_path, monkeypatch):
    monkeypatch.setenv("SCIOGEN_CACHE", str(tmp_path / "cache"))
    hours = pd.date_range("2024-03-01", periods=200, freq="h")
    load = pd.Series(5 + np.sin(2 * np.pi * np.arange(200) / 24), index=hours, name="load")
    gen = sciogen.fit("timeseries", data=load, run_dir=tmp_path / "run", overrides=TINY)
    d = gen.config.data
    assert (d.freq, d.prediction_length, d.context_length) == ("h", 20, 80)  # a day, at most a tenth of 200
    synthetic = gen.sample(3, steps=2, seed=0)
    assert synthetic.shape == (3, 100)
    assert gen.evaluate(synthetic)["lps_horizon"] == 20
    assert gen.forecast(load, num_samples=2, seed=0, **gen.FAST_GUIDANCE).shape == (2, 20)


# -- bad files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, message", [
    ("", "is empty: expected a header line"),
    ("item_id,timestamp,target\n", "holds no rows (columns: item_id, timestamp, target)"),
    ("item_id,step,target\na,1,2\na,2,3\n", "no timestamp column among the columns ['item_id', 'step', 'target']"),
    ("item_id,timestamp,low,high\na,2024-01-01,1,2\n", "found the columns ['item_id', 'timestamp', 'low', 'high']"),
    ("date,x\n2024-01-01,1\n2024-01-02,2\n2024-01-05,3\n2024-01-06,4\n", "cannot infer the frequency"),
])
def test_bad_files_are_refused_with_the_reason(text, message, tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    code, _, err = _cli(capsys, "train", "timeseries", "--data", path, "--run-dir", tmp_path / "run", *SETS)
    assert code == 1 and message in err, err


def test_irregular_stamps_train_with_freq_and_gaps_become_missing_values():
    stamps = pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-04", "2024-01-05"])
    data = read_series(pd.DataFrame({"timestamp": stamps, "x": [1.0, 2.0, 4.0, 5.0]}), freq="D")
    np.testing.assert_array_equal(data.series[0].target, [1.0, 2.0, np.nan, 4.0, 5.0])
    assert "'x' at position(s) 2" in data.missing_summary()
    log = RecordLog()
    off_grid = pd.DataFrame({"timestamp": stamps + pd.Timedelta(hours=1) * np.array([0, 0, 1, 0]), "x": [1.0] * 4})
    with pytest.raises(ValueError, match="no usable series"):
        read_series(off_grid, freq="D", log=log)
    assert "not on the D grid" in log.skipped[0].reason


def test_duplicate_stamps_and_missing_ids_are_reported_by_item(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("id,date,value\na,2024-01-01,1\na,2024-01-01,2\na,2024-01-02,3\nb,2024-01-01,1\n"
                    "b,2024-01-02,2\nb,2024-01-03,3\n,2024-01-04,9\n")
    log = RecordLog()
    data = read_series(path, log=log)
    assert [s.item_id for s in data.series] == ["b"] and data.freq == "D"
    reasons = {r.index: r.reason for r in log.skipped}
    assert reasons["a"] == "line 2 and line 3: two values at the same time 2024-01-01 00:00:00"
    assert reasons["?"].startswith("line 8: no item id")


def test_no_data_uses_the_registry_copy_else_names_download(tmp_path, sciogen_cache, shared_datasets, capsys):
    code, _, err = _cli(capsys, "train", "timeseries", "--run-dir", tmp_path / "run", *SETS)
    assert code == 1 and "exchange_rate_nips is not in the dataset cache" in err and "--download" in err
    (sciogen_cache / "exchange_rate_nips").mkdir()
    (sciogen_cache / "exchange_rate_nips" / "exchange_rate_nips.tar.gz").symlink_to(
        shared_datasets / "timeseries" / "exchange_rate_nips.tar.gz")
    gen, _ = sciogen.registry.prepare_run("timeseries", None, TINY)
    d = gen.config.data
    assert (d.dataset, d.freq, d.prediction_length, d.context_length) == ("exchange_rate_nips", "B", 30, 120)
    synthetic = torch.as_tensor(np.stack([s.target[:150] for s in gen._train_series]), dtype=torch.float32)
    metrics = TimeSeriesGenerator.evaluate_samples(synthetic, "exchange_rate_nips")
    assert metrics["lps_horizon"] == 30 and metrics["num_real_windows"] == 10000  # a fixed-seed subsample
    assert np.isfinite(metrics["lps_ratio"]) and metrics["lps_real"] < 0.05  # exchange rates: ND of about 1%


def test_options_the_domain_does_not_take_are_named(tmp_path, capsys):
    path = tmp_path / "x.csv"
    _frame().to_csv(path, index=False)
    code, _, err = _cli(capsys, "train", "timeseries", "--data", path, "--covariates", path, *SETS)
    assert code == 1 and "--covariates is not an option of the 'timeseries' domain" in err


# -- the synthetic-series scores ------------------------------------------------------------------


def test_scores_separate_real_windows_from_noise():
    rng = np.random.default_rng(0)
    t = np.arange(600)
    train = [Series(10 + np.sin(2 * np.pi * t / 12 + p) + 0.05 * rng.normal(size=600), "2024-01-01", "D", k)
             for k, p in enumerate(rng.uniform(0, 6, 4))]
    real = np.stack([s.target[i : i + 60] for s in train for i in range(0, 500, 37)])
    noise = 10 + rng.normal(size=real.shape)
    good, bad = synthetic_metrics(real, train, horizon=12), synthetic_metrics(noise, train, horizon=12)
    assert good["marginal_w1"] < 0.1 < bad["marginal_w1"]
    assert good["acf_distance"] < 0.1 < bad["acf_distance"]
    # 56 real windows teach the ridge less than the 2,000 of the training series, noise far less
    assert good["lps_ratio"] < 3 and bad["lps_ratio"] > 4 * good["lps_ratio"]
    assert wasserstein1(np.array([0.0, 1.0]), np.array([1.0, 2.0])) == pytest.approx(1.0)


def test_default_prediction_length_follows_the_frequency_and_the_data():
    assert default_prediction_length("B")[0] == 30 and default_prediction_length("h")[0] == 24
    assert default_prediction_length("15min")[0] == 96 and default_prediction_length("MS")[0] == 12
    horizon, rule = default_prediction_length("D", 100)
    assert horizon == 10 and "a tenth of the median series length 100" in rule
