"""notebooks/timeseries.ipynb runs top to bottom (fast setting) and sciogen demo's
time-series part writes its files."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "timeseries.ipynb"


def _shipped() -> bool:
    return (REPO / "sciogen" / "checkpoints" / "timeseries-exchange_rate.pt").is_file()


@pytest.mark.skipif(not _shipped(), reason="the shipped timeseries/exchange_rate checkpoint is absent")
def test_notebook_executes_in_the_fast_setting(monkeypatch, tmp_path, sciogen_cache, shared_datasets):
    """Run outside the repository, as a user of the installed package: a temporary working
    folder, and a dataset cache holding (links to) exchange_rate_nips as a download leaves it."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("matplotlib")
    (sciogen_cache / "exchange_rate_nips").mkdir()
    (sciogen_cache / "exchange_rate_nips" / "exchange_rate_nips.tar.gz").symlink_to(
        shared_datasets / "timeseries" / "exchange_rate_nips.tar.gz")
    monkeypatch.setenv("SCIOGEN_FAST", "1")
    work = tmp_path / "work"
    work.mkdir()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(work)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    text = "".join(o.get("text", "") for o in outputs)
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
