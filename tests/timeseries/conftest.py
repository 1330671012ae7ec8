"""The time-series tests need the timeseries extra (pip install "sciogen[timeseries]");
without it the folder is skipped, with the reason."""

import pytest

pytest.importorskip("pandas", reason="the timeseries extra is not installed")
