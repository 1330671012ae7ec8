"""The 3D molecules tests need the molecules extra (pip install "sciogen[molecules]"); without it the folder is skipped, with the reason."""

from __future__ import annotations

import functools

import pytest

pytest.importorskip("rdkit", reason="the molecules extra (RDKit) is not installed")
pytest.importorskip("torch_geometric", reason="the molecules extra (torch-geometric) is not installed")


@functools.lru_cache(maxsize=4)
def _qm9_test_split(folder: str, limit: int):
    from sciogen.molecules3d import load_qm9_3d

    return load_qm9_3d("test", path=folder, limit=limit)


@pytest.fixture
def qm9_folder(shared_datasets):
    """The shared QM9 folder (qm9_xyz.csv.gz, qm9_properties.csv.gz)."""
    return shared_datasets / "molecules" / "qm9"


@pytest.fixture
def qm9_1000(qm9_folder):
    """The first 1,000 molecules of QM9's DiGress test split with DFT geometries (read once per session)."""
    return _qm9_test_split(str(qm9_folder), 1000)
