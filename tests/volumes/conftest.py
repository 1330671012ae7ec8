"""The volumes tests need the volumes extra (pip install "sciogen[volumes]"); without it the folder is skipped, with the reason."""

import pytest

pytest.importorskip("monai", reason="the volumes extra is not installed")
pytest.importorskip("nibabel", reason="the volumes extra is not installed")
pytest.importorskip("SimpleITK", reason="the volumes extra is not installed")
