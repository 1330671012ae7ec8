"""notebooks/deformation.ipynb runs top to bottom (fast setting) from a folder outside the repository,
with the MNI152 template in a dataset cache as the registry leaves it (no ../shared at run time)."""

from __future__ import annotations

from pathlib import Path

import pytest

import sciogen  # noqa: E402

from ..helpers import execute_notebook

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "deformation.ipynb"
MNI_FILES = [f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz" for kind in ("t1", "gm", "wm")]


@pytest.fixture
def mni_cache(sciogen_cache, shared_datasets) -> Path:
    """$SCIOGEN_CACHE holding mni152_2009 (links to the shared copy), as `sciogen.data.fetch` would leave it."""
    folder = sciogen_cache / "mni152_2009"
    folder.mkdir()
    for name in MNI_FILES:
        (folder / name).symlink_to(shared_datasets / "volumes" / "nilearn_0.14.1" / name)
    return sciogen_cache


def test_notebook_executes_in_the_fast_setting_outside_the_repository(monkeypatch, mni_cache, tmp_path):
    if not {"deformation/brain-mri-2d", "deformation/brain-mri-3d"} <= set(sciogen.available()):
        pytest.skip("the shipped deformation models are not in this checkout")
    monkeypatch.setenv("SCIOGEN_FAST", "1")
    work = tmp_path / "work"
    text, images = execute_notebook(NOTEBOOK, work, timeout=600)
    assert images >= 2
    assert "affine kept: True" in text and "labels stay in the label set: True" in text
    assert "broken.nii.gz,0,cannot read it" in text  # the own-data cell's bad file, reported by index
    assert (work / "runs" / "my-deformation" / "skipped.csv").is_file()
    assert len(list((work / "my_samples").glob("*_ddf.nii.gz"))) == 2
