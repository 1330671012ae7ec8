"""notebooks/volumes.ipynb runs end to end outside the repository (fast setting: 2 samples,
10 steps, no worker processes), with the MNI152 template from a dataset cache, not ../shared."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("matplotlib")

import sciogen  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "volumes.ipynb"
MNI = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


def test_notebook_runs(monkeypatch, tmp_path, sciogen_cache, shared_datasets):
    if "volumes/brain-mri" not in sciogen.available():
        pytest.skip("the shipped volumes/brain-mri model is not in this checkout")
    (sciogen_cache / "mni152_2009").mkdir()
    (sciogen_cache / "mni152_2009" / MNI).symlink_to(shared_datasets / "volumes" / "nilearn_0.14.1" / MNI)
    monkeypatch.setenv("SCIOGEN_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    work = tmp_path / "work"
    work.mkdir()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(work)}})
    client.execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "affine kept: True" in outputs and "label untouched: True" in outputs
    assert "outside the mask unchanged: True" in outputs
    diff = float(outputs.split("max |sciogen - MONAI| =")[1].split()[0])
    assert diff < 1e-3
    assert "kept 4 volumes; skipped:" in outputs and "broken.nii.gz [0]: cannot read it as a volume" in outputs
    assert not (sciogen_cache / "_archives").exists()  # nothing was downloaded
