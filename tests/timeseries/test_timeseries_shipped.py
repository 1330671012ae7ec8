"""The shipped model: loads through sciogen.load, forecasts in the units of its context."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import sciogen
from sciogen import registry

SHIPPED = Path(__file__).resolve().parents[2] / "sciogen" / "checkpoints" / "timeseries-exchange_rate.pt"
pytestmark = pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped timeseries/exchange_rate checkpoint is absent")


def test_shipped_model_is_listed_and_loads():
    assert "timeseries/exchange_rate" in sciogen.available()
    if "timeseries" not in {d.name for d in registry.domains()}:
        pytest.skip("the 'timeseries' domain is not registered in sciogen/registry.py yet")
    gen = sciogen.load("timeseries/exchange_rate", device="cpu")
    assert type(gen).__name__ == "TimeSeriesGenerator"
    assert gen.config.data.freq == "B" and gen.prediction_length == 30


def test_shipped_model_forecasts_its_example_window():
    from sciogen.timeseries.demo import load_shipped

    gen = load_shipped()
    ex = gen.example
    last = ex["pasts"][0][-1]
    for options in ({}, {**gen.FAST_GUIDANCE, "steps": 5}):  # the model's own setting, the fast one
        paths = gen.forecast(ex["pasts"][0], 30, 4, seed=0, **options)
        assert paths.shape == (4, 30) and np.isfinite(paths).all()
        assert abs(np.median(paths[:, 0]) - last) < 0.02 * abs(last), options  # starts near the last observed rate
