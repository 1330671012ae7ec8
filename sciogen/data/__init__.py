"""Datasets: a registry read from the dataset cards, and cached, checksummed downloads.

    >>> from sciogen import data
    >>> "perov_5" in data.dataset_names()
    True
    >>> data.card("perov_5").domain
    'crystals'

``data.fetch(name, path=...)`` checks a local copy; ``data.fetch(name)`` downloads into
the cache (``$SCIOGEN_CACHE``) and verifies every file's SHA-256. The domain adapters'
loaders build on it, and keep the tensors they prepare from it in :mod:`.cache` (content
hashed; imported on first use, so this package loads without torch).
"""

from .download import ChecksumError, cache_dir, download_url, extract_member, fetch, git_blob_sha1, sha256sum
from .registry import DatasetCard, DatasetFile, card, cards, dataset_names

__all__ = [
    "DatasetCard", "DatasetFile", "card", "cards", "dataset_names",
    "ChecksumError", "cache_dir", "download_url", "extract_member", "fetch", "git_blob_sha1", "sha256sum",
    "TensorCache", "content_key",
]


def __getattr__(name: str):
    if name in ("TensorCache", "content_key"):  # torch is needed only here
        from . import cache

        return getattr(cache, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
