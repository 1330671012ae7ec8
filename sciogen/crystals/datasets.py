"""The CDVAE benchmarks (Perov-5, Carbon-24, MP-20, MPTS-52) and user files as crystals.

    >>> recs = read_own_crystals("my_cifs/", log=RecordLog())   # doctest: +SKIP

    >>> recs = load_cdvae("perov_5", "test", path="my_copies/perov_5")   # doctest: +SKIP
    >>> recs = load_cdvae("mp_20", "train", download=True)      # cached download, SHA-256 checked

Every benchmark has a dataset card (``sciogen/datasets/<name>.yaml``) with the official
URLs of CDVAE's CSV files and their checksums; :func:`load_cdvae` reads a local copy
(``path``) or the cache, and downloads only with ``download=True``.
:func:`crystal_tensors` converts records to a padded :class:`CrystalTensors` batch and caches
it under ``$SCIOGEN_CACHE/crystals/tensors`` (Niggli reduction of a few thousand cells
takes a while). :func:`read_own_crystals` reads a user's files (or Structures) and
:func:`usable_tensors` converts them, reporting every record it cannot use in a
:class:`~sciogen.data.records.RecordLog` (file, record index, reason).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Sequence

import torch

from sciogen.data.cache import TensorCache, content_key

from .io import CrystalRecords, read_cdvae_csv, read_structures
from .representation import MAX_Z, CrystalError, CrystalSpec, CrystalTensors, check_ordered, to_tensors

if TYPE_CHECKING:  # pragma: no cover
    from sciogen.data.records import RecordLog

__all__ = ["load_cdvae", "load_crystals", "crystal_tensors", "read_own_crystals", "usable_tensors",
           "DEFAULT_MAX_ATOMS", "OWN_SUFFIXES"]

#: the name of the CDVAE CSV a list of Structures is cached as (``$SCIOGEN_CACHE/crystals/own``)
STRUCTURES_PREFIX = "structures-"

#: the files ``--data`` takes (a folder: its ``.cif`` files, searched recursively)
OWN_SUFFIXES = (".cif", ".csv", ".extxyz", ".xyz")

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
                raise FileNotFoundError(
                    f"the {name} file {file} is not in the dataset cache ({folder}); add --download to fetch it "
                    f"(checksummed; download=True in Python), or put a copy of the file there")
            folder = fetch(name, files=[file], allow_unverified=allow_unverified)
    return read_cdvae_csv(folder / file, on_error=on_error, limit=limit)


def load_crystals(dataset: str, split: str = "train", path: str | Path | None = None, limit: int | None = None,
                  on_error: Literal["raise", "skip"] = "raise", download: bool = False) -> CrystalRecords:
    """A benchmark split (:func:`load_cdvae`) or, with ``dataset="file"``, the structures at ``path``."""
    if dataset == "file":
        recs = read_structures(path, on_error=on_error)
        if limit is not None:
            recs.structures, recs.ids = recs.structures[:limit], recs.ids[:limit]
        return recs
    return load_cdvae(dataset, split, path=path, limit=limit, on_error=on_error, download=download)


def read_own_crystals(data: Any, log: "RecordLog", *, column: str = "cif", conditions: Sequence[str] = (),
                      limit: int | None = None) -> CrystalRecords:
    """A user's crystals, every unreadable record reported in ``log`` (file, index, reason).

    Args:
        data: a folder (its ``.cif`` files, recursively), a ``.cif`` / CDVAE ``.csv`` /
            ``.extxyz`` file, a glob, a list of these, or a list of pymatgen Structures
            (their ``properties`` dicts give the condition values).
        column: the CSV column of CIF text.
        conditions: property names every source must provide (CSV columns, extxyz info keys,
            Structure properties); a missing value is NaN (trained with the null condition).
        limit: keep only the first ``limit`` crystals.

    Returns:
        The readable structures with ``origins`` (file, 1-based record index) and a property
        list per condition. Raises when a file lacks the CIF column or a condition entirely.
    """
    from sciogen.data.records import expand_paths

    if _is_structure_list(data):
        recs = _structure_records(list(data), log)
    else:
        if isinstance(data, (str, Path)) and Path(data).expanduser().is_dir():
            files = expand_paths(data, (".cif",), "CIF files")
        else:
            files = expand_paths(data, OWN_SUFFIXES, "crystal files (.cif, .csv, .extxyz)")
        key = (tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files), column, tuple(conditions))
        if key not in _READ:  # sciogen train reads the files twice (config, then training): parse them once
            _READ.clear()
            _READ[key] = _read_files(files, str(data), column, conditions)
        recs, skipped = _READ[key]
        recs = dataclasses.replace(recs, structures=list(recs.structures), ids=list(recs.ids),
                                   origins=list(recs.origins), properties={k: list(v) for k, v in recs.properties.items()})
        for source, index, reason in skipped:
            log.skip(source, index, reason)
    if limit is not None:
        recs.structures, recs.ids, recs.origins = recs.structures[:limit], recs.ids[:limit], recs.origins[:limit]
        recs.properties = {k: v[:limit] for k, v in recs.properties.items()}
    return recs


_READ: dict[tuple, tuple[CrystalRecords, list[tuple[Path, int | str, str]]]] = {}


def _read_files(files: list[Path], source: str, column: str, conditions: Sequence[str]):
    """The records of ``files`` and the (file, index, reason) of those that could not be read."""
    recs = CrystalRecords([], [], {c: [] for c in conditions}, [], source)
    skipped = []
    for f in files:
        part = _read_file(f, column, conditions)
        cached = f.name.startswith(STRUCTURES_PREFIX)  # a list of Structures (own_data_config): name its items
        for where, ident, reason in part.skipped:
            if cached:
                skipped.append(("structures", int(ident), reason.partition(": ")[2] or reason))
            else:
                skipped.append((f, where if isinstance(where, int) else ident, _reason(reason, f)))
        if cached:
            part.origins = [("structures", int(i)) for i in part.ids]
        for c in conditions:
            if c not in part.properties:
                have = ", ".join(sorted(part.properties)) or "none"
                raise CrystalError(f"{f}: no values of {c!r} to condition on (its numeric properties: {have}); "
                                   "conditions come from a CSV column or an extxyz info key")
            recs.properties[c] += part.properties[c]
        recs.structures += part.structures
        recs.ids += part.ids
        recs.origins += part.origins
    return recs, skipped


def _reason(message: str, path: Path) -> str:
    """``message`` without its leading ``<file> [row n] (material_id x): `` (the log names the file)."""
    head, sep, rest = message.partition(": ")
    if not sep or not (head.startswith(str(path)) or head.startswith(path.name)):
        return message
    ident = head[head.find("(material_id "):] if "(material_id " in head else ""
    return f"{rest} {ident}".strip()


def _is_structure_list(data: Any) -> bool:
    if isinstance(data, (str, Path)):
        return False
    try:
        items = list(data)
    except TypeError:
        raise TypeError(f"data must be a path, a list of paths or a list of pymatgen Structures, "
                        f"got {type(data).__name__}") from None
    return any(not isinstance(x, (str, Path)) for x in items)


def _read_file(path: Path, column: str, conditions: Sequence[str]) -> CrystalRecords:
    if path.suffix.lower() == ".csv":
        return read_cdvae_csv(path, on_error="skip", column=column, numeric=conditions)
    return read_structures(path, on_error="skip")


def _structure_records(items: list, log: "RecordLog") -> CrystalRecords:
    """Records of a list of Structures; anything else in the list is reported and left out."""
    from pymatgen.core import Structure

    recs = CrystalRecords([], [], {}, [], "structures")
    values: list[dict] = []
    for i, s in enumerate(items):
        if not isinstance(s, Structure):
            log.skip("structures", i, f"not a pymatgen Structure ({type(s).__name__})")
            continue
        recs.structures.append(s)
        recs.ids.append(str(i))
        recs.origins.append(("structures", i))
        values.append(getattr(s, "properties", None) or {})
    names = sorted({k for v in values for k, x in v.items() if _number(x) is not None})
    recs.properties = {k: [_number(v.get(k)) if _number(v.get(k)) is not None else math.nan for v in values] for k in names}
    return recs


def _number(x: Any) -> float | None:
    if isinstance(x, bool):
        return None
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _tensor_key(records: CrystalRecords, spec: CrystalSpec, niggli: bool, **extra) -> str:
    """The content key of ``records`` as tensors of ``spec`` (the structures' JSON, the settings)."""
    head = json.dumps({"spec": spec.to_dict(), "niggli": niggli, "v": 1, **extra})
    return content_key(itertools.chain([head], (s.to_json() for s in records.structures)))


def usable_tensors(records: CrystalRecords, spec: CrystalSpec, log: "RecordLog", niggli: bool = True,
                   cache: bool = True) -> tuple[CrystalTensors, list[int]]:
    """Padded tensors of the records the model can represent, and their indices in ``records``.

    Each structure is converted alone; one that cannot be (partial occupancy, more than
    ``spec.max_atoms`` atoms, an element outside the vocabulary, a degenerate cell) is
    reported in ``log`` with its origin and left out. Cached by content as
    :func:`crystal_tensors`.
    """
    store = TensorCache("crystals", "tensors")
    key = _tensor_key(records, spec, niggli, usable=1)
    origins = records.origins or [(records.source, i) for i in range(len(records))]
    stored = store.load(key) if cache else None
    if stored is not None:
        kept, reasons = stored.pop("kept").tolist(), stored.pop("reasons")
        for i, reason in reasons:
            log.skip(origins[i][0], origins[i][1], reason)
        return CrystalTensors(**stored), kept
    parts, kept, reasons = [], [], []
    for i, s in enumerate(records.structures):
        source, index = origins[i]
        name = f"{source} [{index}]"
        try:
            check_ordered(s, name)
            bad = sorted({site.specie.symbol for site in s if not 1 <= getattr(site.specie, "Z", 0) <= MAX_Z})
            if bad:
                raise CrystalError(f"{name}: unknown element(s) {', '.join(bad)} (the model knows H .. Fm, Z = 1 .. {MAX_Z})")
            if not s.volume > 1e-3 * len(s):
                raise CrystalError(f"{name}: degenerate cell (volume {s.volume:.3g} Å^3 for {len(s)} atoms)")
            parts.append(to_tensors([s], spec, niggli=niggli, names=[name]))
            kept.append(i)
        except (CrystalError, ValueError, ZeroDivisionError) as exc:  # pymatgen's Niggli raises ValueError
            reason = str(exc).removeprefix(f"{name}: ")
            reasons.append((i, reason))
            log.skip(source, index, reason)
    if not parts:
        empty = torch.zeros(0, spec.max_atoms, dtype=torch.long)
        return CrystalTensors(empty - 1, torch.zeros(0, spec.max_atoms, 3), torch.zeros(0, 3, 3), empty[:, 0]), []
    tensors = CrystalTensors(*(torch.cat([getattr(p, k) for p in parts]) for k in _TENSORS))
    if cache:
        store.save(key, {**_state(tensors), "kept": torch.tensor(kept, dtype=torch.long), "reasons": reasons})
    return tensors, kept


def crystal_tensors(records: CrystalRecords, spec: CrystalSpec, niggli: bool = True,
                    cache: bool = True) -> CrystalTensors:
    """Canonical (Niggli-reduced) padded tensors of ``records``, cached by content
    (:class:`sciogen.data.cache.TensorCache` under ``$SCIOGEN_CACHE/crystals/tensors``)."""

    def build() -> dict[str, torch.Tensor]:
        names = [f"{records.source} id {i}" for i in records.ids]
        return _state(to_tensors(records.structures, spec, niggli=niggli, names=names))

    if not cache:
        return CrystalTensors(**build())
    return CrystalTensors(**TensorCache("crystals", "tensors").get(_tensor_key(records, spec, niggli), build))


_TENSORS = ("types", "frac", "lattice", "num_atoms")


def _state(tensors: CrystalTensors) -> dict[str, torch.Tensor]:
    return {k: getattr(tensors, k) for k in _TENSORS}
