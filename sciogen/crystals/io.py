"""CIF files, folders of CIFs and CDVAE-format CSV files in and out.

    >>> recs = read_cdvae_csv("perov_5/test.csv", on_error="skip")   # doctest: +SKIP
    >>> recs.structures[0], recs.ids[0], recs.properties["heat_ref"][0], recs.skipped
    >>> write_structures(structures, "generated/")                   # doctest: +SKIP

A CDVAE CSV has the columns ``material_id``, ``cif`` and the properties (Perov-5:
``heat_all``, ``heat_ref``, ``dir_gap``, ``ind_gap``; MP-20: ``formation_energy_per_atom``,
``band_gap``, ...). CIFs are parsed with pymatgen's ``CifParser`` (``primitive=False``, as
CDVAE builds its crystals). With ``on_error="skip"`` a bad row is left out and listed in
``skipped`` with its row number and the reason; nothing is dropped silently.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Sequence

from .representation import CifParseError, CrystalError, check_ordered

if TYPE_CHECKING:  # pragma: no cover
    from pymatgen.core import Structure

__all__ = ["CrystalRecords", "parse_cif", "read_cif", "write_cif", "read_cdvae_csv", "read_unigenx_jsonl",
           "read_structures", "write_structures"]

OnError = Literal["raise", "skip"]


@dataclass
class CrystalRecords:
    """Structures read from a file, with their ids, numeric properties and the skipped rows.

    Attributes:
        structures: pymatgen Structures.
        ids: one id per structure (``material_id`` or the file name).
        properties: {column: list of floats (NaN where empty)} aligned with ``structures``.
        skipped: (row or file, id, reason) of every input left out with ``on_error="skip"``.
        source: where the records came from.
    """

    structures: list["Structure"]
    ids: list[str]
    properties: dict[str, list[float]] = field(default_factory=dict)
    skipped: list[tuple[int | str, str, str]] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return len(self.structures)


def parse_cif(text: str, name: str = "CIF") -> "Structure":
    """One ordered Structure from CIF text; :class:`CifParseError` / :class:`PartialOccupancyError`
    name ``name`` on failure."""
    from pymatgen.io.cif import CifParser

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structures = CifParser(io.StringIO(text)).parse_structures(primitive=False)
    except Exception as exc:  # CifParser raises ValueError, KeyError, IndexError, ...
        raise CifParseError(f"{name}: the CIF does not parse ({type(exc).__name__}: {exc})") from None
    if not structures:
        raise CifParseError(f"{name}: the CIF holds no structure")
    check_ordered(structures[0], name)
    return structures[0]


def read_cif(path: str | Path) -> "Structure":
    """The (first) structure of a CIF file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no CIF file at {path}")
    return parse_cif(path.read_text(), str(path))


def write_cif(structure: "Structure", path: str | Path, symprec: float | None = None) -> Path:
    """Write ``structure`` with pymatgen's ``CifWriter`` (``symprec``: symmetrise first)."""
    from pymatgen.io.cif import CifWriter

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = str(CifWriter(structure, symprec=symprec))
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_text(text)
    tmp.replace(path)
    return path


def _float(value: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def read_cdvae_csv(path: str | Path, on_error: OnError = "raise", limit: int | None = None) -> CrystalRecords:
    """Structures of a CDVAE-format CSV (``material_id``, ``cif``, properties).

    Args:
        path: the CSV file.
        on_error: ``"raise"`` (a :class:`CrystalError` naming the row and id) or ``"skip"``
            (left out and reported in ``skipped``).
        limit: read only the first ``limit`` rows.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error={on_error!r}; allowed: 'raise', 'skip'")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no CSV file at {path}")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if "cif" not in columns:
            raise CrystalError(f"{path}: no 'cif' column (columns: {', '.join(columns)}); expected CDVAE's format")
        numeric = [c for c in columns if c not in ("", "cif", "material_id", "formula")]
        recs = CrystalRecords([], [], {c: [] for c in numeric}, [], str(path))
        for row_number, row in enumerate(reader, start=1):
            if limit is not None and row_number > limit:
                break
            ident = row.get("material_id") or str(row_number)
            try:
                structure = parse_cif(row["cif"], f"{path.name} row {row_number} (material_id {ident})")
            except CrystalError as exc:
                if on_error == "raise":
                    raise
                recs.skipped.append((row_number, ident, str(exc)))
                continue
            recs.structures.append(structure)
            recs.ids.append(ident)
            for c in numeric:
                recs.properties[c].append(_float(row.get(c)))
    return recs


def read_unigenx_jsonl(path: str | Path, on_error: OnError = "raise") -> CrystalRecords:
    """Structures of UniGenX's JSON-lines records (``material_id``, ``lattice`` 3 x 3 rows in Å,
    ``sites`` with ``element`` and ``fractional_coordinates``); other numeric fields become
    properties."""
    import json

    from pymatgen.core import Lattice, Structure

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no JSON-lines file at {path}")
    recs = CrystalRecords([], [], {}, [], str(path))
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        ident = str(line_number)
        try:
            row = json.loads(line)
            ident = str(row.get("material_id", line_number))
            sites = row["sites"]
            structure = Structure(Lattice(row["lattice"]), [x["element"] for x in sites],
                                  [x["fractional_coordinates"] for x in sites])
        except (ValueError, KeyError, TypeError) as exc:
            if on_error == "raise":
                raise CrystalError(f"{path.name} line {line_number} (material_id {ident}): not a UniGenX crystal record "
                                   f"({type(exc).__name__}: {exc})") from None
            recs.skipped.append((line_number, ident, str(exc)))
            continue
        recs.structures.append(structure)
        recs.ids.append(ident)
    return recs


def read_structures(path: str | Path, on_error: OnError = "raise") -> CrystalRecords:
    """Structures from a CIF file, a folder of ``*.cif`` files, a CDVAE CSV or UniGenX JSON lines."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.cif"))
        if not files:
            raise FileNotFoundError(f"{path} holds no .cif files")
        recs = CrystalRecords([], [], {}, [], str(path))
        for f in files:
            try:
                recs.structures.append(read_cif(f))
                recs.ids.append(f.stem)
            except CrystalError as exc:
                if on_error == "raise":
                    raise
                recs.skipped.append((f.name, f.stem, str(exc)))
        return recs
    if path.suffix.lower() == ".csv":
        return read_cdvae_csv(path, on_error)
    if path.suffix.lower() == ".cif":
        return CrystalRecords([read_cif(path)], [path.stem], {}, [], str(path))
    if path.suffix.lower() in (".jsonl", ".json"):
        return read_unigenx_jsonl(path, on_error)
    raise ValueError(f"{path}: expected a .cif file, a folder of .cif files, a CDVAE .csv or UniGenX .jsonl")


def write_structures(structures: Sequence["Structure | None"], path: str | Path, prefix: str = "sample") -> Path:
    """Write structures as ``<prefix>_<i>.cif`` files into the folder ``path`` with a
    ``summary.csv`` (index, file, formula, atoms, volume Å^3, density g/cm^3; failed samples
    (None) get an empty file column), or as one CDVAE CSV when ``path`` ends in ``.csv``.
    """
    from pymatgen.io.cif import CifWriter

    path = Path(path)
    rows = []
    for i, s in enumerate(structures):
        if s is None:
            rows.append({"index": i, "file": "", "formula": "", "atoms": 0, "volume": "", "density": "", "cif": ""})
            continue
        rows.append({"index": i, "file": f"{prefix}_{i:05d}.cif", "formula": s.composition.reduced_formula,
                     "atoms": len(s), "volume": f"{s.volume:.4f}", "density": f"{float(s.density):.4f}",
                     "cif": str(CifWriter(s))})
    if path.suffix.lower() == ".csv":
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_csv(path, [{"material_id": r["index"], "cif": r["cif"], "formula": r["formula"]} for r in rows if r["cif"]])
        return path
    path.mkdir(parents=True, exist_ok=True)
    for r in rows:
        if r["cif"]:
            tmp = path / (r["file"] + ".part")
            tmp.write_text(r["cif"])
            tmp.replace(path / r["file"])
    _write_csv(path / "summary.csv", [{k: v for k, v in r.items() if k != "cif"} for r in rows])
    return path


def _write_csv(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".csv.part")
    with open(tmp, "w", newline="") as handle:
        fields = list(rows[0]) if rows else ["index"]
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
