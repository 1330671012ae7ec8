"""Reading and writing molecules: SMILES files, CSV, SDF; bad rows raise or are reported.

Readers return :class:`MoleculeRecords`: the parsed molecules with their record indices
in the file (0-based, header and blank lines not counted) and, with ``on_error="skip"``,
the list of skipped records with the reason — a warning says how many were skipped, so
rows are never dropped silently. ``on_error="keep"`` keeps ``None`` in place (for files of
generated samples, where an invalid molecule is data). With a ``spec``, every molecule is
also converted to a graph, so vocabulary and size errors are caught per record too.

    >>> recs = read_molecules("hits.csv", on_error="skip")          # doctest: +SKIP
    >>> recs.smiles[:2], [(s.index, s.reason) for s in recs.skipped]  # doctest: +SKIP

Formats by suffix: ``.smi`` / ``.txt`` (SMILES first on each line, optional name after
whitespace), ``.csv`` / ``.tsv`` (a ``smiles`` column, or ``column=``), ``.sdf``; any of
them gzipped (``.gz``).
"""

from __future__ import annotations

import csv
import gzip
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence, get_args

from rdkit import Chem
from torch_geometric.data import Data

from .representation import MoleculeError, MoleculeSpec, SmilesParseError, canonical_smiles, parse_smiles

__all__ = [
    "OnError",
    "Skipped",
    "MoleculeRecords",
    "read_molecules",
    "read_smiles",
    "read_csv",
    "read_sdf",
    "write_smiles",
    "write_sdf",
    "write_molecules",
]

OnError = Literal["raise", "skip", "keep"]
_SMILES_COLUMNS = ("smiles", "smile", "canonical_smiles", "smiles_string")


@dataclass
class Skipped:
    """A record left out: its index in the file, the item (SMILES or SDF title), why."""

    index: int
    item: str | None
    reason: str


@dataclass
class MoleculeRecords:
    """Molecules read from a file.

    Attributes:
        mols: RDKit molecules (None only with ``on_error="keep"``).
        indices: each molecule's record index in the file.
        smiles: canonical SMILES (None where ``mols`` is None).
        columns: other CSV columns / SDF properties, one list per name, aligned with ``mols``.
        graphs: graphs, when read with a ``spec`` (None where the molecule is None).
        skipped: the records left out with ``on_error="skip"``.
        source: the file.
    """

    mols: list[Any] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    smiles: list[str | None] = field(default_factory=list)
    columns: dict[str, list[Any]] = field(default_factory=dict)
    graphs: list[Data | None] | None = None
    skipped: list[Skipped] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return len(self.mols)

    def report(self) -> str:
        """One line per skipped record."""
        return "\n".join(f"{self.source}: record {s.index} ({s.item!r}): {s.reason}" for s in self.skipped)


def _check_on_error(on_error: str) -> None:
    if on_error not in get_args(OnError):
        raise ValueError(f"on_error={on_error!r}; allowed: {', '.join(get_args(OnError))}")


def _open_text(path: Path):
    return gzip.open(path, "rt", newline="") if path.suffix == ".gz" else open(path, newline="")


def _base_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


class _Collector:
    def __init__(self, source: str, on_error: str, spec: MoleculeSpec | None):
        _check_on_error(on_error)
        self.records = MoleculeRecords(source=source, graphs=[] if spec is not None else None)
        self.on_error, self.spec = on_error, spec

    def add(self, index: int, mol, item: str | None, error: MoleculeError | None, extra: dict[str, Any]) -> None:
        graph = None
        if error is None and self.spec is not None:
            try:
                graph = self.spec.to_graph(mol, index=index)
            except MoleculeError as err:
                error = err
        if error is not None:
            if self.on_error == "raise":
                raise error.located(self.records.source) from None
            if self.on_error == "skip":
                self.records.skipped.append(Skipped(index, item, error.reason))
                return
            mol = None
        r = self.records
        r.mols.append(mol)
        r.indices.append(index)
        r.smiles.append(canonical_smiles(mol) if mol is not None else None)
        for key, value in extra.items():
            r.columns.setdefault(key, [None] * (len(r.mols) - 1)).append(value)
        for key in r.columns:
            if len(r.columns[key]) < len(r.mols):
                r.columns[key].append(None)
        if r.graphs is not None:
            r.graphs.append(graph)

    def finish(self) -> MoleculeRecords:
        r = self.records
        if r.skipped:
            first = r.skipped[0]
            warnings.warn(
                f"{r.source}: skipped {len(r.skipped)} of {len(r.skipped) + len(r.mols)} records "
                f"(first: record {first.index} ({first.item!r}): {first.reason}); see .skipped / .report()",
                stacklevel=3,
            )
        return r


def _parse(smiles: str | None, index: int):
    try:
        if smiles is None or smiles.strip() in ("", "None"):
            raise SmilesParseError("empty SMILES (or 'None')", index=index, item=smiles)
        return parse_smiles(smiles, index=index), None
    except MoleculeError as err:
        return None, err


def read_smiles(path: str | Path, *, on_error: OnError = "raise", spec: MoleculeSpec | None = None) -> MoleculeRecords:
    """A SMILES file: one molecule per non-blank line, SMILES first, optional name after.

    A first line reading ``smiles`` (any case) is taken as a header.
    """
    path = Path(path)
    col = _Collector(str(path), on_error, spec)
    index = 0
    with _open_text(path) as handle:
        for n, line in enumerate(handle):
            parts = line.strip().split(maxsplit=1)
            if not parts:
                continue
            if n == 0 and parts[0].lower() in _SMILES_COLUMNS:
                continue
            mol, err = _parse(parts[0], index)
            extra = {"name": parts[1]} if len(parts) > 1 else {}
            col.add(index, mol, parts[0], err, extra)
            index += 1
    return col.finish()


def read_csv(
    path: str | Path, *, column: str | None = None, on_error: OnError = "raise", spec: MoleculeSpec | None = None, delimiter: str | None = None
) -> MoleculeRecords:
    """A CSV / TSV file with a SMILES column (found by name, or ``column=``).

    The other columns come back in ``records.columns`` (numbers as float, else strings).
    """
    path = Path(path)
    delimiter = delimiter or ("\t" if _base_suffix(path) == ".tsv" else ",")
    col = _Collector(str(path), on_error, spec)
    with _open_text(path) as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        fields = reader.fieldnames or []
        if column is None:
            column = next((f for f in fields if f.strip().lower() in _SMILES_COLUMNS), None)
            if column is None:
                raise ValueError(f"{path}: no SMILES column among {fields}; pass column=...")
        elif column not in fields:
            raise ValueError(f"{path}: no column {column!r}; columns: {fields}")
        for index, row in enumerate(reader):
            smiles = row.get(column)
            mol, err = _parse(smiles, index)
            extra = {k: _number(v) for k, v in row.items() if k != column and k is not None}
            col.add(index, mol, smiles, err, extra)
    return col.finish()


def _number(value: str | None):
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return value


def _sdf_blocks(path: Path) -> Iterator[str]:
    with _open_text(path) as handle:
        block: list[str] = []
        for line in handle:
            block.append(line)
            if line.startswith("$$$$"):
                yield "".join(block)
                block = []
        if "".join(block).strip():
            yield "".join(block)


def read_sdf(path: str | Path, *, on_error: OnError = "raise", spec: MoleculeSpec | None = None) -> MoleculeRecords:
    """An SDF file (V2000 / V3000); SD tags come back in ``records.columns``."""
    path = Path(path)
    col = _Collector(str(path), on_error, spec)
    for index, block in enumerate(_sdf_blocks(path)):
        title = block.splitlines()[0].strip() if block.strip() else None
        mol = Chem.MolFromMolBlock(block, sanitize=True, removeHs=False)
        err, extra = None, {}
        if mol is not None and mol.GetNumAtoms() == 0:
            mol, err = None, SmilesParseError("empty SDF record (no atoms)", index=index, item=title)
        elif mol is None:
            err = SmilesParseError("RDKit cannot parse or sanitize this SDF record", index=index, item=title)
        else:
            extra = {k: _number(v) for k, v in mol.GetPropsAsDict(includePrivate=False).items() if isinstance(v, str)}
            extra.update({k: v for k, v in mol.GetPropsAsDict(includePrivate=False).items() if not isinstance(v, str)})
            mol = Chem.RemoveHs(mol)
        col.add(index, mol, title or (Chem.MolToSmiles(mol) if mol is not None else None), err, extra)
    return col.finish()


def read_molecules(path: str | Path, *, on_error: OnError = "raise", spec: MoleculeSpec | None = None, **kwargs) -> MoleculeRecords:
    """Read a SMILES, CSV / TSV or SDF file by its suffix (``.gz`` allowed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    suffix = _base_suffix(path)
    if suffix in (".smi", ".smiles", ".txt"):
        return read_smiles(path, on_error=on_error, spec=spec)
    if suffix in (".csv", ".tsv"):
        return read_csv(path, on_error=on_error, spec=spec, **kwargs)
    if suffix in (".sdf", ".sd", ".mol"):
        return read_sdf(path, on_error=on_error, spec=spec)
    raise ValueError(f"{path}: unknown molecule file type {suffix!r}; use .smi, .txt, .csv, .tsv or .sdf (optionally .gz)")


# -- writing ----------------------------------------------------------------------------------


def _as_mols(molecules: Sequence) -> list:
    out = []
    for m in molecules:
        if m is None or isinstance(m, Chem.Mol):
            out.append(m)
        elif isinstance(m, str):
            out.append(None if m.strip() in ("", "None") else Chem.MolFromSmiles(m))
        else:
            raise TypeError(f"cannot write a {type(m).__name__}; pass RDKit Mols or SMILES (None for invalid)")
    return out


def _open_write(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return gzip.open(path, "wt", newline="") if path.suffix == ".gz" else open(path, "w", newline="")


def write_smiles(molecules: Sequence, path: str | Path, *, columns: dict[str, Sequence] | None = None) -> Path:
    """Write canonical SMILES; invalid entries (None) are written as ``None`` to keep positions.

    ``.csv`` gets a ``smiles`` header and the extra ``columns``; ``.smi`` / ``.txt`` one SMILES a line.
    """
    path = Path(path)
    mols = _as_mols(molecules)
    smiles = [canonical_smiles(m) if m is not None else "None" for m in mols]
    with _open_write(path) as handle:
        if _base_suffix(path) == ".csv":
            writer = csv.writer(handle)
            names = list(columns or {})
            writer.writerow(["smiles", *names])
            for i, s in enumerate(smiles):
                writer.writerow([s, *[columns[n][i] for n in names]])  # type: ignore[index]
        else:
            handle.write("".join(s + "\n" for s in smiles))
    return path


def write_sdf(molecules: Sequence, path: str | Path, *, columns: dict[str, Sequence] | None = None) -> Path:
    """Write an SDF (2D coordinates computed); None entries are written as empty records
    titled ``invalid`` so record indices stay aligned with the input."""
    from rdkit.Chem import AllChem

    path = Path(path)
    mols = _as_mols(molecules)
    buffer = io.StringIO()
    writer = Chem.SDWriter(buffer)
    for i, m in enumerate(mols):
        mol = Chem.Mol(m) if m is not None else Chem.Mol()
        if m is None:
            mol.SetProp("_Name", "invalid")
        else:
            AllChem.Compute2DCoords(mol)
        for name, values in (columns or {}).items():
            mol.SetProp(name, str(values[i]))
        writer.write(mol)
    writer.close()
    with _open_write(path) as handle:
        handle.write(buffer.getvalue())
    return path


def write_molecules(molecules: Sequence, path: str | Path, **kwargs) -> Path:
    """Write by suffix: ``.sdf`` -> :func:`write_sdf`, otherwise :func:`write_smiles`."""
    path = Path(path)
    if _base_suffix(path) in (".sdf", ".sd"):
        return write_sdf(molecules, path, **kwargs)
    return write_smiles(molecules, path, **kwargs)
