"""The CDVAE benchmarks (Perov-5, Carbon-24, MP-20, MPTS-52) and user files as crystals.

    >>> recs = load_cdvae("perov_5", "test", path="../shared/datasets/crystals/perov_5")   # doctest: +SKIP
    >>> recs = load_cdvae("mp_20", "train", download=True)      # cached download, SHA-256 checked

Every benchmark has a dataset card (``sciogen/datasets/<name>.yaml``) with the official
URLs of CDVAE's CSV files and their checksums; :func:`load_cdvae` reads a local copy
(``path``) or the cache, and downloads only with ``download=True``.
:func:`crystal_tensors` converts records to a padded :class:`CrystalTensors` batch and caches
it under ``$SCIOGEN_CACHE/crystals/tensors`` (Niggli reduction of a few thousand cells
takes a while).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import torch

from .io import CrystalRecords, read_cdvae_csv, read_structures
from .representation import CrystalSpec, CrystalTensors, to_tensors

__all__ = ["load_cdvae", "load_crystals", "crystal_tensors", "DEFAULT_MAX_ATOMS"]

#: the largest cell of each benchmark (CDVAE's max_atoms)
DEFAULT_MAX_ATOMS = {"perov_5": 5, "carbon_24": 24, "mp_20": 20, "mpts_52": 52}


def load_cdvae(name: str, split: Literal["train", "val", "test"] = "train", *, path: str | Path | None = None,
               download: bool = False, allow_unverified: bool = False, on_error: Literal["raise", "skip"] = "raise",
               limit: int | None = None) -> CrystalRecords:
    """One split of a CDVAE benchmark as :class:`CrystalRecords`.

    Args:
        name: ``perov_5``, ``carbon_24``, ``mp_20`` or ``mpts_52``.
        split: ``train``, ``val`` or ``test``.
        path: a local folder holding ``<split>.csv`` (checked against the card's SHA-256).
        download: fetch into the cache when it is not there.
        allow_unverified: accept a download whose card has no checksum (SHA-256 or Git blob id).
        on_error, limit: see :func:`~sciogen.crystals.io.read_cdvae_csv`.
    """
    from sciogen.data import cache_dir, fetch

    if name not in DEFAULT_MAX_ATOMS:
        raise ValueError(f"unknown crystal benchmark {name!r}; allowed: {', '.join(DEFAULT_MAX_ATOMS)}")
    if split not in ("train", "val", "test"):
        raise ValueError(f"split={split!r}; allowed: train, val, test")
    file = f"{split}.csv"
    if path is not None:
        folder = fetch(name, path=path, files=[file])
    else:
        folder = cache_dir() / name
        if not (folder / file).is_file():
            if not download:
                raise FileNotFoundError(f"{name} {file} is not in {folder}: pass path= (a local copy) or download=True")
            folder = fetch(name, files=[file], allow_unverified=allow_unverified)
    return read_cdvae_csv(folder / file, on_error=on_error, limit=limit)


def load_crystals(dataset: str, split: str = "train", path: str | Path | None = None, limit: int | None = None,
                  on_error: Literal["raise", "skip"] = "raise") -> CrystalRecords:
    """A benchmark split (:func:`load_cdvae`) or, with ``dataset="file"``, the structures at ``path``."""
    if dataset == "file":
        recs = read_structures(path, on_error=on_error)
        if limit is not None:
            recs.structures, recs.ids = recs.structures[:limit], recs.ids[:limit]
        return recs
    return load_cdvae(dataset, split, path=path, limit=limit, on_error=on_error)


def crystal_tensors(records: CrystalRecords, spec: CrystalSpec, niggli: bool = True, cache: bool = True) -> CrystalTensors:
    """Canonical (Niggli-reduced) padded tensors of ``records``, cached by content."""
    from sciogen.data import cache_dir

    digest = hashlib.sha256()
    digest.update(json.dumps({"spec": spec.to_dict(), "niggli": niggli, "v": 1}).encode())
    for s in records.structures:
        digest.update(s.to_json().encode())
    file = cache_dir() / "crystals" / "tensors" / f"{digest.hexdigest()[:24]}.pt"
    if cache and file.is_file():
        return CrystalTensors(**torch.load(file, weights_only=True))
    names = [f"{records.source} id {i}" for i in records.ids]
    tensors = to_tensors(records.structures, spec, niggli=niggli, names=names)
    if cache:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(".part")
        torch.save({k: getattr(tensors, k) for k in ("types", "frac", "lattice", "num_atoms")}, tmp)
        tmp.replace(file)
    return tensors
