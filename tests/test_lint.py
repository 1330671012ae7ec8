"""The code style is checked in CI: ruff with the configuration in pyproject.toml (line length,
import order, pyflakes, one docstring style) over the package, the tests and the benchmarks."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.importorskip("ruff", reason="ruff (a test extra) is not installed")
        command = [sys.executable, "-m", "ruff"]
    else:
        command = [ruff]
    result = subprocess.run([*command, "check", "--no-cache", "sciogen", "tests", "benchmarks"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
