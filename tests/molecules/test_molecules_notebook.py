"""notebooks/molecules.ipynb runs top to bottom (fast setting) from a folder outside the repository,
with QM9 in a dataset cache as the registry leaves it, and sciogen demo's molecules part writes its files."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..helpers import execute_notebook

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "molecules.ipynb"


def _shipped() -> bool:
    return (REPO / "sciogen" / "checkpoints" / "molecules-qm9.pt").is_file()


@pytest.fixture
def qm9_cache(sciogen_cache, shared_datasets) -> Path:
    """$SCIOGEN_CACHE holding QM9 (a link to the shared copy), as `--download` would leave it."""
    (sciogen_cache / "qm9").symlink_to(shared_datasets / "molecules" / "qm9", target_is_directory=True)
    return sciogen_cache


@pytest.mark.skipif(not _shipped(), reason="the shipped molecules/qm9 checkpoint is absent")
def test_notebook_executes_in_the_fast_setting_outside_the_repository(monkeypatch, qm9_cache, tmp_path):
    monkeypatch.setenv("SCIOGEN_FAST", "1")
    work = tmp_path / "work"
    text, images = execute_notebook(NOTEBOOK, work, timeout=900)
    assert images >= 3
    assert "novelty" in text  # QM9 was found in the cache
    assert (work / "runs" / "my-molecules" / "skipped.csv").is_file() and (work / "my_samples.smi").is_file()
    assert "'C1CC(': RDKit cannot read this SMILES" in text


@pytest.mark.skipif(not _shipped(), reason="the shipped molecules/qm9 checkpoint is absent")
def test_demo_writes_molecules_picture_and_metrics(tmp_path, qm9_cache, monkeypatch):
    from sciogen.molecules.demo import run_demo

    monkeypatch.chdir(tmp_path)  # any folder: QM9 comes from the dataset cache
    rows = run_demo(tmp_path / "out", quick=True)
    assert rows[0]["model"].startswith("molecules/qm9")
    assert 0.0 < rows[0]["validity"] <= 1.0 and 0.0 < rows[0]["novelty"] <= 1.0
    for name in ("molecules.sdf", "molecules.csv", "results.json", "molecules.png"):
        assert (tmp_path / "out" / name).is_file()
