"""notebooks/volumes.ipynb runs end to end (fast setting: 2 samples, 10 steps, no worker processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("monai")
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("matplotlib")

import sciogen  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "volumes.ipynb"


def test_notebook_runs(monkeypatch):
    if "volumes/brain-mri" not in sciogen.available():
        pytest.skip("the shipped volumes/brain-mri model is not in this checkout")
    monkeypatch.setenv("SCIOGEN_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "affine kept: True" in outputs and "label untouched: True" in outputs
    assert "outside the mask unchanged: True" in outputs
    diff = float(outputs.split("max |sciogen - MONAI| =")[1].split()[0])
    assert diff < 1e-3
