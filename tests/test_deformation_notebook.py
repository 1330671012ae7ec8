"""notebooks/deformation.ipynb runs end to end (fast setting: small volumes, no worker processes)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("monai")
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("matplotlib")

import sciogen  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "deformation.ipynb"


def test_notebook_runs(monkeypatch):
    if not {"deformation/brain-mri-2d", "deformation/brain-mri-3d"} <= set(sciogen.available()):
        pytest.skip("the shipped deformation models are not in this checkout")
    monkeypatch.setenv("SCIOGEN_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "affine kept: True" in outputs and "labels stay in the label set: True" in outputs
    assert os.environ["SCIOGEN_NOTEBOOK_FAST"] == "1"
