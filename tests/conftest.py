"""Shared fixtures: the repository root and the shared datasets folder."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


@pytest.fixture
def shared_datasets() -> Path:
    """``../shared/datasets`` beside the repository; tests that need it skip without it."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATASETS} (clone with ../shared beside the repo)")
    return SHARED_DATASETS


@pytest.fixture(autouse=True)
def _one_thread():
    """Run each test on one intra-op thread, restored afterwards.

    The models in the tests are small: on a 2-core machine (CI's size) one thread avoids a
    thread hand-off per small op, which made them up to 30x slower when the cores were
    shared, and keeps timings and float reductions alike from run to run.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def sciogen_cache(tmp_path, monkeypatch) -> Path:
    """An empty dataset cache (``$SCIOGEN_CACHE``) for this test: link or copy what it needs into
    ``<cache>/<dataset name>/`` so the registry finds it as a user's download would be found."""
    cache = tmp_path / "sciogen-cache"
    cache.mkdir()
    monkeypatch.setenv("SCIOGEN_CACHE", str(cache))
    return cache
