"""Readers (GluonTS folders and archives, LSTNet, pandas), windows and input errors."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest
import torch

from sciogen.timeseries import (
    NonMonotonicIndexError,
    Series,
    SeriesTooShortError,
    UnknownFrequencyError,
    from_pandas,
    lags_for_freq,
    load_exchange_rate_nips,
    read_gluonts,
    read_lstnet,
    rolling_windows,
    seasonality,
    split_past_future,
    to_pandas,
)
from sciogen.timeseries.features import WindowDataset, lag_channels, make_state


def test_frequencies_follow_gluonts_and_tsdiff():
    assert [seasonality(f) for f in ("B", "H", "h", "2H", "D", "W", "M", "Q", "15min")] == [5, 24, 24, 12, 1, 1, 12, 4, 96]
    assert lags_for_freq("B") == [30 * i for i in range(1, 13)] == lags_for_freq("D")
    assert lags_for_freq("H") == [24 * i for i in (1, 2, 3, 4, 5, 6, 7, 14, 21, 28)]
    assert lags_for_freq("W") == []
    with pytest.raises(UnknownFrequencyError, match="unknown frequency 'fortnightly'"):
        seasonality("fortnightly")


def _write_gluonts(root, gz: bool):
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    (root / "metadata.json").write_text(json.dumps({"freq": "H", "prediction_length": 3}))
    rows = [{"start": "2021-01-01 00:00:00", "target": [1.0, 2.0, "NaN", 4.0, 5.0], "item_id": "a"},
            {"start": "2021-01-02 05:00:00", "target": [7.0, None, 9.0, 10.0], "item_id": "b"}]
    text = "\n".join(json.dumps(r) for r in rows) + "\n"
    if gz:
        with gzip.open(root / "train" / "data.json.gz", "wt") as handle:
            handle.write(text)
    else:
        (root / "train" / "data.json").write_text(text)
    (root / "test" / "data.json").write_text(text)


@pytest.mark.parametrize("gz", [False, True])
def test_read_gluonts_folder_keeps_missing_values(tmp_path, gz):
    _write_gluonts(tmp_path, gz)
    data = read_gluonts(tmp_path)
    assert (data.freq, data.prediction_length, len(data.train), len(data.test)) == ("h", 3, 2, 2)
    a, b = data.train
    assert np.isnan(a.target[2]) and np.isnan(b.target[1]) and a.item_id == "a"
    assert b.index()[0] == pd.Timestamp("2021-01-02 05:00") and b.future_index(1)[0] == pd.Timestamp("2021-01-02 09:00")


def test_exchange_rate_nips_folder_and_archive_agree(shared_datasets):
    root = shared_datasets / "timeseries"
    folder = read_gluonts(root / "exchange_rate_nips")
    archive = load_exchange_rate_nips(root / "exchange_rate_nips.tar.gz")
    assert (folder.freq, folder.prediction_length, len(folder.train), len(folder.test)) == ("B", 30, 8, 40)
    assert [len(s) for s in folder.test[::8]] == [6101, 6131, 6161, 6191, 6221]
    for x, y in zip(folder.test, archive.test):
        np.testing.assert_allclose(x.target, y.target)
    # the rolling test windows are the GluonTS ones, rebuilt from the longest entries
    rebuilt = rolling_windows(folder.test[-8:], 30, 5)
    assert [len(s) for s in rebuilt] == [len(s) for s in folder.test]
    np.testing.assert_allclose(rebuilt[3].target, folder.test[3].target)
    # the LSTNet raw file holds the same values
    raw = read_lstnet(root / "lstnet_raw" / "exchange_rate.txt.gz")
    assert len(raw) == 8 and len(raw[0]) == 7588
    np.testing.assert_allclose(raw[2].target[:6071], folder.train[2].target, rtol=1e-6)


def test_pandas_round_trip_wide_long_and_gaps():
    idx = pd.date_range("2022-03-01", periods=6, freq="D")
    wide = pd.DataFrame({"x": np.arange(6.0), "y": np.arange(6.0) * 2}, index=idx)
    series = from_pandas(wide)
    assert [s.item_id for s in series] == ["x", "y"] and series[0].freq == "D"
    pd.testing.assert_frame_equal(to_pandas(series), wide, check_freq=False)
    long = wide.stack().rename("target").rename_axis(["timestamp", "item_id"]).reset_index()
    assert [s.item_id for s in from_pandas(long, "D")] == ["x", "y"]
    gappy = pd.Series([1.0, 2.0, 4.0], index=pd.to_datetime(["2022-01-03", "2022-01-04", "2022-01-06"]))
    filled = from_pandas(gappy, "D")[0]
    assert np.isnan(filled.target[2]) and len(filled) == 4  # a gap is a missing value, not interpolated


def test_specific_errors():
    with pytest.raises(NonMonotonicIndexError, match="not strictly increasing"):
        from_pandas(pd.Series([1.0, 2.0, 3.0], index=pd.to_datetime(["2022-01-02", "2022-01-01", "2022-01-03"])))
    with pytest.raises(UnknownFrequencyError, match="cannot infer the frequency"):
        from_pandas(pd.Series([1.0, 2.0, 3.0], index=pd.to_datetime(["2022-01-01", "2022-01-02", "2022-01-05"])))
    with pytest.raises(UnknownFrequencyError):
        Series([1.0], "2022-01-01", "not-a-freq")
    with pytest.raises(SeriesTooShortError):
        split_past_future(Series([1.0, 2.0], "2022-01-01", "D"), 2)
    with pytest.raises(SeriesTooShortError, match="lower data.context_length"):
        WindowDataset([Series(np.ones(10), "2022-01-01", "D")], 8, 4, 0)


def test_lags_and_normalisation():
    values = torch.arange(20.0)[None]
    lags = lag_channels(values, [1, 5], 10)
    assert lags.shape == (1, 10, 2)
    assert lags[0, 0].tolist() == [9.0, 5.0] and lags[0, -1].tolist() == [18.0, 14.0]
    window = torch.tensor([[np.nan, 2.0, 4.0, 6.0, np.nan, 0.0]], dtype=torch.float64)  # lag 1, context 3, horizon 2
    x, mask, loc, scale = make_state(window, [1], 3, 2, "mean")
    assert loc.item() == 0 and scale.item() == pytest.approx(4.0)  # mean |value| of the context 2, 4, 6
    assert x[0, :, 0].tolist() == pytest.approx([0.5, 1.0, 1.5, 0.0, 0.0])
    assert mask[0, :, 0].tolist() == [1, 1, 1, 0, 1] and mask[0, :, 1].tolist() == [0, 1, 1, 1, 0]
    x, _, loc, scale = make_state(window, [1], 3, 2, "standard")
    assert loc.item() == pytest.approx(4.0) and scale.item() == pytest.approx(np.std([2.0, 4.0, 6.0]))
    # "last": the scale of "standard", centred on the last observed past value (missing
    # values skipped), so the forecast origin is 0
    x, _, loc, scale = make_state(window, [1], 3, 2, "last")
    assert loc.item() == pytest.approx(6.0) and scale.item() == pytest.approx(np.std([2.0, 4.0, 6.0]))
    assert x[0, 2, 0].item() == 0.0
    gappy = torch.tensor([[1.0, 3.0, np.nan, np.nan, 0.0]], dtype=torch.float64)  # context 3, horizon 2
    _, _, loc, _ = make_state(gappy, [], 3, 2, "last")
    assert loc.item() == pytest.approx(3.0)
    with pytest.raises(ValueError, match="allowed: mean, standard, last"):
        make_state(window, [1], 3, 2, "median")


def test_window_dataset_pads_the_lag_history_with_missing_values():
    s = Series(np.arange(30.0), "2022-01-01", "D")
    ds = WindowDataset([s], 8, 4, max_lag=10)
    assert len(ds) == 30 - 12 + 1
    first = ds[0]
    assert first.shape == (22,) and torch.isnan(first[:10]).all() and first[10:].tolist() == list(range(12))
