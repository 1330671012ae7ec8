"""CIF files, folders of CIFs, CDVAE-format CSV files and extxyz files in and out.

    >>> recs = read_cdvae_csv("perov_5/test.csv", on_error="skip")   # doctest: +SKIP
    >>> recs.structures[0], recs.ids[0], recs.properties["heat_ref"][0], recs.skipped
    >>> write_structures(structures, "generated/")                   # doctest: +SKIP

A CDVAE CSV has the columns ``material_id``, ``cif`` and the properties (Perov-5:
``heat_all``, ``heat_ref``, ``dir_gap``, ``ind_gap``; MP-20: ``formation_energy_per_atom``,
``band_gap``, ...). CIFs are parsed with pymatgen's ``CifParser`` (``primitive=False``, as
CDVAE builds its crystals). With ``on_error="skip"`` a bad row is left out and listed in
``skipped`` with its row number and the reason; nothing is dropped silently. Extended XYZ
files are read with ASE (periodic frames only; numeric ``info`` keys and calculator
results such as ``energy`` become properties).
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

__all__ = ["CrystalRecords", "parse_cif", "parse_cif_blocks", "read_cif", "write_cif", "read_cdvae_csv",
           "read_unigenx_jsonl", "read_extxyz", "read_structures", "write_structures", "STRUCTURE_SUFFIXES",
           "OUTPUT_SUFFIXES", "SampleStructures", "read_samples"]

#: the file types :func:`read_structures` reads (a folder: its ``.cif`` files, recursively)
STRUCTURE_SUFFIXES = (".cif", ".csv", ".extxyz", ".xyz", ".jsonl")

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
        origins: (file, record index) of every structure, where known (row of a CSV, data
            block of a CIF, frame of an extxyz file; 1-based).
    """

    structures: list["Structure"]
    ids: list[str]
    properties: dict[str, list[float]] = field(default_factory=dict)
    skipped: list[tuple[int | str, str, str]] = field(default_factory=list)
    source: str = ""
    origins: list[tuple[str, int]] = field(default_factory=list)

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


def parse_cif_blocks(text: str, name: str = "CIF") -> list["Structure | CrystalError"]:
    """Every data block of CIF text: a Structure, or the :class:`CrystalError` saying why not
    (a block that does not parse, a disordered site). Raises :class:`CifParseError` when the
    text holds no data block at all."""
    from pymatgen.io.cif import CifFile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            blocks = list(CifFile.from_str(text).data.values())
    except Exception as exc:  # noqa: BLE001 - the CIF grammar errors of pymatgen vary
        raise CifParseError(f"{name}: the CIF does not parse ({type(exc).__name__}: {exc})") from None
    if not blocks or not text.strip():
        raise CifParseError(f"{name}: no CIF data block (an empty file, or not a CIF)")
    out: list = []
    for k, block in enumerate(blocks, start=1):
        where = f"{name} block {k}" if len(blocks) > 1 else name
        try:
            out.append(parse_cif(str(block), where))
        except CrystalError as exc:
            out.append(exc)
    return out


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


def read_cdvae_csv(path: str | Path, on_error: OnError = "raise", limit: int | None = None, *, column: str = "cif",
                   numeric: Sequence[str] = ()) -> CrystalRecords:
    """Structures of a CDVAE-format CSV (``material_id``, ``cif``, properties).

    Args:
        path: the CSV file.
        on_error: ``"raise"`` (a :class:`CrystalError` naming the row and id) or ``"skip"``
            (left out and reported in ``skipped``).
        limit: read only the first ``limit`` rows.
        column: the column holding the CIF text.
        numeric: columns that must hold numbers (or be empty: a missing value, NaN); a row
            with anything else there is an error (raised or skipped). Other columns become
            properties with NaN where they are not numbers.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error={on_error!r}; allowed: 'raise', 'skip'")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no CSV file at {path}")
    csv.field_size_limit(2**31 - 1)  # a CIF in one cell can pass csv's default 128 kB
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if not columns:
            raise CrystalError(f"{path}: the file is empty (a CSV with a header row and a '{column}' column of CIF text expected)")
        if column not in columns:
            hint = "name the column of CIF text with --column (data.column)" if column == "cif" else "check --column"
            raise CrystalError(f"{path}: no '{column}' column (columns: {', '.join(columns)}); {hint}")
        missing = [c for c in numeric if c not in columns]
        if missing:
            raise CrystalError(f"{path}: no column {', '.join(map(repr, missing))} to condition on "
                               f"(columns: {', '.join(columns)})")
        props = [c for c in columns if c not in ("", column, "material_id", "formula")]
        recs = CrystalRecords([], [], {c: [] for c in props}, [], str(path))
        for row_number, row in enumerate(reader, start=1):
            if limit is not None and row_number > limit:
                break
            ident = row.get("material_id") or str(row_number)
            try:
                for c in numeric:
                    if (row.get(c) or "").strip() and not math.isfinite(_float(row[c])) and row[c].strip().lower() != "nan":
                        raise CrystalError(f"{path.name} row {row_number} (material_id {ident}): "
                                           f"{c}={row[c]!r} is not a number")
                if not (row.get(column) or "").strip():
                    raise CifParseError(f"{path.name} row {row_number} (material_id {ident}): the '{column}' cell is empty")
                structure = parse_cif(row[column], f"{path.name} row {row_number} (material_id {ident})")
            except CrystalError as exc:
                if on_error == "raise":
                    raise
                recs.skipped.append((row_number, ident, str(exc)))
                continue
            recs.structures.append(structure)
            recs.ids.append(ident)
            recs.origins.append((str(path), row_number))
            for c in props:
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


def read_extxyz(path: str | Path, on_error: OnError = "raise") -> CrystalRecords:
    """Periodic structures of an extended XYZ file (ASE), one per frame.

    A frame without a full periodic cell (``pbc`` all True and a non-singular ``Lattice=``)
    is an error (raised or skipped); numeric scalars of a frame's ``info`` and of its
    calculator results (``energy``, ...) become properties (NaN where a frame lacks one).
    A frame that ASE cannot read ends the file: it is reported, and the frames after it too.
    """
    import ase.io
    import numpy as np
    from pymatgen.io.ase import AseAtomsAdaptor

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no extxyz file at {path}")
    recs = CrystalRecords([], [], {}, [], str(path))
    values: list[dict[str, float]] = []
    frames = ase.io.iread(str(path), index=":", format="extxyz")
    frame = 0
    while True:
        frame += 1
        where = f"{path.name} frame {frame}"
        try:
            atoms = next(frames)
        except StopIteration:
            break
        except Exception as exc:  # noqa: BLE001 - ASE raises many types for a malformed frame
            error = CrystalError(f"{where}: ASE cannot read it ({type(exc).__name__}: {exc}); "
                                 "the frames after it are not read")
            if on_error == "raise" or frame == 1:
                raise error from None
            recs.skipped.append((frame, str(frame), str(error)))
            break
        try:
            if not atoms.pbc.all() or abs(np.linalg.det(np.asarray(atoms.cell))) < 1e-6:
                raise CrystalError(f"{where}: not a periodic crystal (pbc={atoms.pbc.tolist()}, "
                                   f"cell volume {abs(np.linalg.det(np.asarray(atoms.cell))):.3g} Å^3); "
                                   "give the cell with Lattice=\"...\" and pbc=\"T T T\"")
            structure = AseAtomsAdaptor.get_structure(atoms)
        except CrystalError as exc:
            if on_error == "raise":
                raise
            recs.skipped.append((frame, str(frame), str(exc)))
            continue
        scalars = {k: float(v) for k, v in {**atoms.info, **(atoms.calc.results if atoms.calc else {})}.items()
                   if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)}
        recs.structures.append(structure)
        recs.ids.append(str(atoms.info.get("material_id", frame)))
        recs.origins.append((str(path), frame))
        values.append(scalars)
    names = sorted({k for v in values for k in v})
    recs.properties = {k: [v.get(k, math.nan) for v in values] for k in names}
    return recs


def read_structures(path: str | Path, on_error: OnError = "raise", *, column: str = "cif") -> CrystalRecords:
    """Structures from a CIF file (every data block), a folder of ``*.cif`` files (searched
    recursively), a CDVAE CSV (CIF text in ``column``), an extxyz file or UniGenX JSON lines."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() == ".cif" and not p.name.startswith("."))
        if not files:
            raise FileNotFoundError(f"{path} holds no .cif files")
        recs = CrystalRecords([], [], {}, [], str(path))
        for f in files:
            _add_cif_file(recs, f, on_error)
        return recs
    suffix = path.suffix.lower()
    if not path.is_file() and suffix in STRUCTURE_SUFFIXES:
        raise FileNotFoundError(f"no such file: {path}")
    if suffix == ".csv":
        return read_cdvae_csv(path, on_error, column=column)
    if suffix == ".cif":
        recs = CrystalRecords([], [], {}, [], str(path))
        _add_cif_file(recs, path, on_error)
        return recs
    if suffix in (".extxyz", ".xyz"):
        return read_extxyz(path, on_error)
    if suffix in (".jsonl", ".json"):
        return read_unigenx_jsonl(path, on_error)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    raise ValueError(f"{path}: expected a .cif file, a folder of .cif files, a CDVAE .csv, an .extxyz file or UniGenX .jsonl")


def _add_cif_file(recs: CrystalRecords, path: Path, on_error: OnError) -> None:
    """Append every data block of the CIF file ``path`` to ``recs`` (ids: the stem, ``stem#k``)."""
    try:
        blocks = parse_cif_blocks(path.read_text(errors="replace"), str(path))
    except CrystalError as exc:
        blocks = [exc]
    for k, item in enumerate(blocks, start=1):
        ident = path.stem if len(blocks) == 1 else f"{path.stem}#{k}"
        if isinstance(item, CrystalError):
            if on_error == "raise":
                raise item
            recs.skipped.append((str(path), str(k), str(item)))
            continue
        recs.structures.append(item)
        recs.ids.append(ident)
        recs.origins.append((str(path), k))


class SampleStructures(list):
    """Structures read back from sample files, one entry per item: a Structure, or None where
    the item could not be read or the sample had failed; :attr:`unreadable` lists those
    (where, reason), so that evaluation scores them as invalid instead of dropping them."""

    def __init__(self, items=(), unreadable=()):
        super().__init__(items)
        self.unreadable: list[tuple[str, str]] = list(unreadable)


def read_samples(path: str | Path) -> SampleStructures:
    """Every item of sample files (anything :func:`read_structures` reads, e.g. what
    :func:`write_structures` wrote): the readable structures, then None for each item that
    could not be read (a CIF that does not parse, a disordered site, an empty ``cif`` cell)
    or that ``summary.csv`` of a folder lists as failed, named in ``unreadable``."""
    path = Path(path)
    recs = read_structures(path, on_error="skip")
    unreadable = [(f"{where}" if not isinstance(where, int) else f"{Path(recs.source).name} item {where}", reason)
                  for where, _, reason in recs.skipped]
    summary = path / "summary.csv" if path.is_dir() else None
    if summary is not None and summary.is_file():
        with open(summary, newline="") as handle:
            for row in csv.DictReader(handle):
                if "file" in row and not (row.get("file") or "").strip():
                    unreadable.append((f"{summary} index {row.get('index', '?')}",
                                       "the sample failed (no finite, non-degenerate lattice); no file was written"))
    return SampleStructures([*recs.structures, *[None] * len(unreadable)], unreadable)


#: what :func:`write_structures` writes: one file of many structures, or a folder (no suffix)
OUTPUT_SUFFIXES = (".cif", ".csv", ".extxyz")


def write_structures(structures: Sequence["Structure | None"], path: str | Path, prefix: str = "sample") -> Path:
    """Write structures to exactly ``path``; the suffix picks the format.

    - no suffix: a folder of ``<prefix>_<i>.cif`` files and a ``summary.csv`` (index, file,
      formula, atoms, volume Å^3, density g/cm^3; a failed sample (None) has an empty file);
    - ``.cif``: one CIF with a data block ``<prefix>_<i>`` per structure;
    - ``.csv``: a CDVAE CSV (``material_id`` = the sample's index, ``cif``, formula, atoms,
      volume, density), one row per sample, the ``cif`` cell empty for a failed one;
    - ``.extxyz``: one extended XYZ frame per structure (ASE; ``material_id`` = the index).

    Failed samples (None) cannot be written as CIF blocks or frames: they are left out and
    counted on stderr. Other suffixes raise a ValueError listing the known ones.
    """
    import sys

    from pymatgen.io.cif import CifWriter

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix and suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"{path}: unknown output format {path.suffix!r}; use a file ending in "
                         f"{', '.join(OUTPUT_SUFFIXES)} or a folder (no suffix)")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: the folder {path.parent} does not exist")
    rows = []
    for i, s in enumerate(structures):
        if s is None:
            rows.append({"index": i, "file": "", "formula": "", "atoms": 0, "volume": "", "density": "", "cif": ""})
            continue
        rows.append({"index": i, "file": f"{prefix}_{i:05d}.cif", "formula": s.composition.reduced_formula,
                     "atoms": len(s), "volume": f"{s.volume:.4f}", "density": f"{float(s.density):.4f}",
                     "cif": str(CifWriter(s))})
    failed = sum(1 for r in rows if not r["cif"])
    if failed and suffix in (".cif", ".extxyz"):
        print(f"sciogen: {failed} of {len(rows)} samples failed (no finite, non-degenerate lattice) and are not in "
              f"{path.name}; a .csv or a folder lists them", file=sys.stderr)
    if suffix == ".csv":
        _write_csv(path, [{"material_id": r["index"], "cif": r["cif"], "formula": r["formula"], "atoms": r["atoms"],
                           "volume": r["volume"], "density": r["density"]} for r in rows])
    elif suffix == ".cif":
        blocks = [r["cif"].replace("data_", f"data_{prefix}_{r['index']:05d}_", 1) for r in rows if r["cif"]]
        _write_text(path, "\n".join(blocks))
    elif suffix == ".extxyz":
        _write_extxyz(path, [(r["index"], s) for r, s in zip(rows, structures) if r["cif"]])
    else:
        if path.is_dir() and any(path.glob(f"{prefix}_*.cif")) or (path / "summary.csv").exists():
            raise FileExistsError(f"{path} already holds samples ({prefix}_*.cif, summary.csv); choose another "
                                  "folder (sciogen sample replaces it with --force)")
        path.mkdir(exist_ok=True)
        for r in rows:
            if r["cif"]:
                (path / r["file"]).write_text(r["cif"])
        _write_csv(path / "summary.csv", [{k: v for k, v in r.items() if k != "cif"} for r in rows])
    return path


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(text)
    tmp.replace(path)


def _write_extxyz(path: Path, items: list[tuple[int, "Structure"]]) -> None:
    import ase.io
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = []
    for index, structure in items:
        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.info = {"material_id": f"sample_{index:05d}"}
        frames.append(atoms)
    tmp = path.with_name(path.name + ".part")
    ase.io.write(str(tmp), frames, format="extxyz")
    tmp.replace(path)


def _write_csv(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", newline="") as handle:
        fields = list(rows[0]) if rows else ["index"]
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
