"""The imaging tests need the imaging extra (pip install "sciogen[volumes]"); without it the folder is skipped, with the reason."""

import pytest

pytest.importorskip("monai", reason="the imaging extra is not installed")
pytest.importorskip("nibabel", reason="the imaging extra is not installed")
pytest.importorskip("SimpleITK", reason="the imaging extra is not installed")
