"""The deformation tests need the deformation extra (pip install "sciogen[volumes]"); without it the folder is skipped, with the reason."""

import pytest

pytest.importorskip("monai", reason="the deformation extra is not installed")
pytest.importorskip("nibabel", reason="the deformation extra is not installed")
pytest.importorskip("SimpleITK", reason="the deformation extra is not installed")
