"""notebooks/timeseries.ipynb runs top to bottom (fast setting) and sciogen demo's
time-series part writes its files."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..helpers import execute_notebook

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "timeseries.ipynb"


def _shipped() -> bool:
    return (REPO / "sciogen" / "checkpoints" / "timeseries-exchange_rate.pt").is_file()


@pytest.mark.skipif(not _shipped(), reason="the shipped timeseries/exchange_rate checkpoint is absent")
def test_notebook_executes_in_the_fast_setting(monkeypatch, tmp_path, sciogen_cache, shared_datasets):
    """Run outside the repository, as a user of the installed package: a temporary working
    folder, and a dataset cache holding (links to) exchange_rate_nips as a download leaves it."""
    (sciogen_cache / "exchange_rate_nips").mkdir()
    (sciogen_cache / "exchange_rate_nips" / "exchange_rate_nips.tar.gz").symlink_to(
        shared_datasets / "timeseries" / "exchange_rate_nips.tar.gz")
    monkeypatch.setenv("SCIOGEN_FAST", "1")
    work = tmp_path / "work"
    text, images = execute_notebook(NOTEBOOK, work, timeout=600)
    assert images >= 1
    assert "shop1" in text and "is not a number" in text  # the own-data cell reports the garbled series
    assert not (sciogen_cache / "_archives").exists()  # nothing was downloaded


@pytest.mark.slow
@pytest.mark.skipif(not _shipped(), reason="the shipped timeseries/exchange_rate checkpoint is absent")
def test_demo_writes_forecasts_picture_and_metrics(tmp_path):
    from sciogen.timeseries.demo import run_demo

    rows = run_demo(tmp_path, quick=True)
    assert {r["model"].split(" ")[0] for r in rows} >= {"timeseries/exchange_rate", "Seasonal"}
    assert all(0 < r["CRPS"] < 1 for r in rows)
    for name in ("forecast.csv", "truth.csv", "results.json", "timeseries.png"):
        assert (tmp_path / name).is_file()
