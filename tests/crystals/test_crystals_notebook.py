"""notebooks/crystals.ipynb runs top to bottom (fast setting) from a folder outside the repository, with
Perov-5 in a dataset cache as the registry leaves it, and sciogen demo's crystals part writes its files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..helpers import execute_notebook

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "crystals.ipynb"


def _shipped() -> bool:
    return (REPO / "sciogen" / "checkpoints" / "crystals-perov5.pt").is_file()


def _link_perov5(cache: Path, shared: Path) -> None:
    """$SCIOGEN_CACHE/perov_5 holding links to the shared Perov-5 files, as `--download` would leave them."""
    (cache / "perov_5").mkdir()
    for name in ("val.csv", "test.csv"):
        (cache / "perov_5" / name).symlink_to(shared / "crystals" / "perov_5" / name)


@pytest.mark.skipif(not _shipped(), reason="the shipped crystals/perov5 checkpoint is absent")
def test_notebook_executes_in_the_fast_setting_outside_the_repository(monkeypatch, shared_datasets, sciogen_cache, tmp_path):
    _link_perov5(sciogen_cache, shared_datasets)
    monkeypatch.setenv("SCIOGEN_FAST", "1")
    work = tmp_path / "work"
    text, images = execute_notebook(NOTEBOOK, work, timeout=900)
    assert images >= 3
    assert "match_rate" in text and "structural_validity" in text
    skipped = (work / "runs" / "my-crystals" / "skipped.csv").read_text()
    assert "my_crystals.csv,65," in skipped and "does not parse" in skipped  # the broken row, by its index


@pytest.mark.skipif(not _shipped(), reason="the shipped crystals/perov5 checkpoint is absent")
def test_demo_writes_structures_picture_and_metrics(tmp_path, shared_datasets, sciogen_cache, monkeypatch):
    from sciogen.crystals.demo import run_demo

    _link_perov5(sciogen_cache, shared_datasets)  # the demo finds Perov-5's test file in the dataset cache
    monkeypatch.chdir(tmp_path)
    rows = run_demo(tmp_path, quick=True)
    assert rows[0]["task"].startswith("CSP SrTiO3") and 0.0 <= rows[0]["structural validity"] <= 1.0
    assert any("match rate" in r for r in rows)
    assert len(list((tmp_path / "csp_SrTiO3").glob("*.cif"))) == 4
    assert (tmp_path / "denovo" / "summary.csv").is_file() and (tmp_path / "crystals.png").is_file()
    assert json.loads((tmp_path / "results.json").read_text())["model"] == "crystals/perov5"
