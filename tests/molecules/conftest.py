"""The molecules tests need the molecules extra (pip install "sciogen[molecules]"); without it the folder is skipped, with the reason."""

import pytest

pytest.importorskip("rdkit", reason="the molecules extra is not installed")
pytest.importorskip("torch_geometric", reason="the molecules extra is not installed")
