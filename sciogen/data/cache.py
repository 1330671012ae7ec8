"""Tensors cached by content: the prepared training data of a domain, built once.

A domain names what it prepared by a hash of everything that went into it
(:func:`content_key`) and keeps it under ``$SCIOGEN_CACHE/<domain>/<kind>/<key>.pt``
(:class:`TensorCache`). A file is written under a temporary name unique to the writer, in
the same folder, and renamed into place, so processes that build the same key at once
(every rank under torchrun) never see each other's half-written file; a file that cannot be
read (a copy cut short, a disk error) is rebuilt, with a message.

    >>> cache = TensorCache("crystals", "tensors")                             # doctest: +SKIP
    >>> tensors = cache.get(content_key([spec_json, *cif_texts]), build)        # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import torch

__all__ = ["TensorCache", "content_key"]


def content_key(parts: Iterable[str | bytes], length: int = 24) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``parts`` read one after another
    (strings as UTF-8; an iterator is read lazily)."""
    if isinstance(parts, (str, bytes)):
        parts = [parts]
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
    return digest.hexdigest()[:length]


class TensorCache:
    """A folder of ``{name: tensor or plain value}`` files, one per content key.

    Args:
        *folder: the folder under the dataset cache (``$SCIOGEN_CACHE``, see
            :func:`sciogen.data.cache_dir`), e.g. ``("crystals", "tensors")``.
        root: another base folder instead of the dataset cache.

    Files load with ``torch.load(weights_only=True)``: tensors, numbers, strings, and lists,
    tuples and dicts of them.
    """

    def __init__(self, *folder: str, root: str | Path | None = None):
        from .download import cache_dir

        self.folder = (Path(root) if root is not None else cache_dir()).joinpath(*folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.pt"

    def load(self, key: str) -> dict[str, Any] | None:
        """The stored dict, or None when there is none or it cannot be read (then a message
        on stderr says so, and the next :meth:`save` replaces it)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # a truncated or corrupted file: zip, pickle or I/O errors
            stored, reason = None, f"{type(err).__name__}: {str(err).splitlines()[0].split('. ')[0]}"
        else:
            reason = None if isinstance(stored, Mapping) else f"it holds a {type(stored).__name__}, not a dict"
        if reason is not None:
            print(f"sciogen: the cached file {path} cannot be read ({reason}); building it again", file=sys.stderr)
            return None
        return dict(stored)

    def save(self, key: str, value: Mapping[str, Any]) -> Path:
        """Write ``value`` under ``key``: to a temporary file unique to this writer in the same
        folder, then renamed into place (:func:`os.replace`, atomic); returns the path."""
        path = self.path(key)
        self.folder.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{path.name}.", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out:
                torch.save(dict(value), out)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def get(self, key: str, build: Callable[[], Mapping[str, Any]]) -> dict[str, Any]:
        """The stored dict of ``key``, else ``build()``, saved."""
        stored = self.load(key)
        if stored is None:
            stored = dict(build())
            self.save(key, stored)
        return stored
