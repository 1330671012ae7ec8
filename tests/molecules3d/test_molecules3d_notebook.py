"""notebooks/molecules3d.ipynb runs top to bottom (fast setting) from a folder outside the repository, and
sciogen demo's molecules3d part writes its files; both use the shipped molecules3d/qm9-unigenx model."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..helpers import execute_notebook

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "molecules3d.ipynb"
SHIPPED = REPO / "sciogen" / "checkpoints" / "molecules3d-qm9-unigenx.pt"


@pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped molecules3d/qm9-unigenx checkpoint is absent")
def test_notebook_executes_in_the_fast_setting_outside_the_repository(monkeypatch, sciogen_cache, tmp_path):
    monkeypatch.setenv("SCIOGEN_FAST", "1")
    work = tmp_path / "work"
    text, images = execute_notebook(NOTEBOOK, work, timeout=900)
    assert images >= 2
    assert "atom_stability" in text and "COV-R" in text and "my_conformers.sfd" in text
    assert (work / "my_molecules.sdf").is_file() and (work / "glycerol_conformers.sdf").is_file()


@pytest.mark.skipif(not SHIPPED.is_file(), reason="the shipped molecules3d/qm9-unigenx checkpoint is absent")
def test_demo_writes_molecules_conformers_and_picture(tmp_path, monkeypatch):
    from sciogen.molecules3d.demo import run_demo

    monkeypatch.chdir(tmp_path)
    rows = run_demo(tmp_path / "out", quick=True)
    assert rows[0]["model"].startswith("molecules3d/qm9-unigenx") and 0.0 <= rows[0]["atom stability"] <= 1.0
    assert all(r["closest to ETKDG (A)"] >= 0.0 for r in rows[1:])
    for name in ("molecules3d.sdf", "conformers.sdf", "results.json", "molecules3d.png"):
        assert (tmp_path / "out" / name).is_file()
