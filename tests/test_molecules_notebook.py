"""notebooks/molecules.ipynb runs top to bottom (fast setting) and sciogen demo's molecules part writes its files."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "molecules.ipynb"


def _shipped() -> bool:
    return (REPO / "sciogen" / "checkpoints" / "molecules-qm9.pt").is_file()


@pytest.mark.skipif(not _shipped(), reason="the shipped molecules/qm9 checkpoint is absent")
def test_notebook_executes_in_the_fast_setting(monkeypatch, shared_datasets):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("SCIOGEN_FAST", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 3


@pytest.mark.skipif(not _shipped(), reason="the shipped molecules/qm9 checkpoint is absent")
def test_demo_writes_molecules_picture_and_metrics(tmp_path, shared_datasets, monkeypatch):
    from sciogen.molecules.demo import run_demo

    monkeypatch.chdir(REPO)  # the demo finds ../shared/datasets/molecules/qm9 from the repository root
    rows = run_demo(tmp_path, quick=True)
    assert rows[0]["model"].startswith("molecules/qm9")
    assert 0.0 < rows[0]["validity"] <= 1.0 and 0.0 < rows[0]["novelty"] <= 1.0
    for name in ("molecules.sdf", "molecules.csv", "results.json", "molecules.png"):
        assert (tmp_path / name).is_file()
