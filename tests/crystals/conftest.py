"""The crystals tests need the crystals extra (pip install "sciogen[crystals]"); without it the folder is skipped, with the reason."""

import pytest

pytest.importorskip("pymatgen", reason="the crystals extra is not installed")
