"""Reading and writing molecules: SMILES files, CSV, SDF; bad rows raise or are reported.

Readers return :class:`MoleculeRecords`: the parsed molecules with their record indices
in the file (0-based, header and blank lines not counted) and, with ``on_error="skip"``,
the list of skipped records with the reason — a warning says how many were skipped, so
rows are never dropped silently. ``on_error="keep"`` keeps ``None`` in place (for files of
generated samples, where an invalid molecule is data). With a ``spec``, every molecule is
also converted to a graph, so vocabulary and size errors are caught per record too.

    >>> recs = read_molecules("hits.csv", on_error="skip")          # doctest: +SKIP
    >>> recs.smiles[:2], [(s.index, s.reason) for s in recs.skipped]  # doctest: +SKIP

Formats by suffix: ``.smi`` / ``.smiles`` / ``.txt`` (SMILES first on each line,
optional name after whitespace, an optional ``smiles`` header line), ``.csv`` / ``.tsv``
and ``.parquet`` (a SMILES column found by name, case-insensitive: see
:data:`SMILES_COLUMNS`, or ``column=``), ``.sdf`` (SD tags become columns); any text
format gzipped (``.gz``). Every record also carries where it was: ``line N`` (1-based, as
an editor shows it) for text files, ``row N`` (0-based, as pandas shows it) for parquet,
``record N (line L)`` (0-based, as ``Chem.SDMolSupplier(...)[N]``) for SDF.
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
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
    "read_parquet",
    "SMILES_COLUMNS",
    "MOLECULE_SUFFIXES",
    "write_smiles",
    "write_sdf",
    "write_molecules",
]

OnError = Literal["raise", "skip", "keep"]
#: names of a SMILES column, matched case-insensitively, in order of preference
SMILES_COLUMNS = ("smiles", "canonical_smiles", "isomeric_smiles", "smi", "smile", "smiles_string", "mol_smiles")
_SMILES_COLUMNS = SMILES_COLUMNS
#: the file names :func:`read_molecules` reads (``.gz`` allowed for the text formats)
MOLECULE_SUFFIXES = (".smi", ".smiles", ".txt", ".csv", ".tsv", ".parquet", ".sdf", ".sd", ".mol",
                     ".smi.gz", ".smiles.gz", ".txt.gz", ".csv.gz", ".tsv.gz", ".sdf.gz", ".sd.gz")


@dataclass
class Skipped:
    """A record left out: its index in the file, the item (SMILES or SDF title), why, and
    where it is (``"line 4"``, ``"row 3"``, ``"record 2 (line 57)"``; None when unknown)."""

    index: int
    item: str | None
    reason: str
    where: str | None = None


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
        where: each molecule's place in the file (``"line 4"``, see the module docstring).
    """

    mols: list[Any] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    smiles: list[str | None] = field(default_factory=list)
    columns: dict[str, list[Any]] = field(default_factory=dict)
    graphs: list[Data | None] | None = None
    skipped: list[Skipped] = field(default_factory=list)
    source: str = ""
    where: list[str | None] = field(default_factory=list)

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

    def add(self, index: int, mol, item: str | None, error: MoleculeError | None, extra: dict[str, Any],
            where: str | None = None) -> None:
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
                self.records.skipped.append(Skipped(index, item, error.reason, where))
                return
            mol = None
        r = self.records
        r.mols.append(mol)
        r.indices.append(index)
        r.where.append(where)
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
        return None, _explained(err, smiles)


def _explained(err: MoleculeError, smiles: str | None) -> MoleculeError:
    """``err`` with RDKit's own reason (syntax, valence, kekulization) when it has one."""
    if not isinstance(smiles, str) or not smiles.strip() or "cannot parse" not in err.reason:
        return err
    why = _rdkit_reason(smiles.strip())
    if not why:
        return err
    return SmilesParseError(f"RDKit cannot read this SMILES: {why}", index=err.index, item=err.item)


def _with_rdkit_log(call):
    """``call()`` and the error lines RDKit logged meanwhile (its log is off elsewhere)."""
    import sys

    from rdkit import RDLogger, rdBase

    RDLogger.EnableLog("rdApp.error")
    rdBase.LogToPythonStderr()
    stderr, sys.stderr = sys.stderr, io.StringIO()
    try:
        return call(), sys.stderr.getvalue()
    finally:
        sys.stderr = stderr
        rdBase.LogToCppStreams()
        RDLogger.DisableLog("rdApp.*")


def _syntax_reason(log: str) -> str:
    """RDKit's SMILES parse error, e.g. ``unclosed ring`` or ``syntax error (around position 3)``."""
    import re

    lines = [re.sub(r"^\[[\d:]+\]\s*", "", line).strip() for line in log.splitlines()]
    errors = [line.split("SMILES Parse Error:", 1)[1].strip() for line in lines if "SMILES Parse Error:" in line]
    if not errors:
        return "not valid SMILES syntax"
    what = re.split(r" (?:for input|while parsing):", errors[0])[0].strip()
    where = next((m.group(1) for e in errors if (m := re.search(r"around position (\d+)", e))), None)
    return f"{what} (around position {where})" if where else what


def _rdkit_reason(smiles: str) -> str | None:
    mol, log = _with_rdkit_log(lambda: Chem.MolFromSmiles(smiles, sanitize=False))
    if mol is None:
        return _syntax_reason(log)
    try:
        Chem.SanitizeMol(mol)
    except Exception as err:  # RDKit's sanitization errors (valence, kekulization) are ValueErrors
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "kekulize" in text.lower():
            text += " (aromatic atoms that no single/double bond pattern fits)"
        return text
    return None


def read_smiles(path: str | Path, *, on_error: OnError = "raise", spec: MoleculeSpec | None = None) -> MoleculeRecords:
    """A SMILES file: one molecule per non-blank line, SMILES first, optional name after.

    Blank lines are ignored; a first non-blank line whose first word is a SMILES column name
    (``smiles``, ``SMILES``, ...; see :data:`SMILES_COLUMNS`) is taken as a header.
    """
    path = Path(path)
    col = _Collector(str(path), on_error, spec)
    index = 0
    with _open_text(path) as handle:
        for n, line in enumerate(handle):
            parts = line.strip().split(maxsplit=1)
            if not parts:
                continue
            if index == 0 and parts[0].split(",")[0].strip(";\"'").lower() in _SMILES_COLUMNS:
                continue
            mol, err = _parse(parts[0], index)
            extra = {"name": parts[1]} if len(parts) > 1 else {}
            col.add(index, mol, parts[0], err, extra, f"line {n + 1}")
            index += 1
    return col.finish()


def read_csv(
    path: str | Path, *, column: str | None = None, on_error: OnError = "raise", spec: MoleculeSpec | None = None,
    delimiter: str | None = None,
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
        if not fields:
            raise ValueError(f"{path}: the file is empty (a CSV needs a header line with a SMILES column)")
        column = smiles_column(fields, column, str(path))
        start = reader.line_num
        for index, row in enumerate(reader):
            smiles = row.get(column)
            mol, err = _parse(smiles, index)
            extra = {k: _number(v) for k, v in row.items() if k != column and k is not None}
            col.add(index, mol, smiles, err, extra, f"line {start + 1}")
            start = reader.line_num
    return col.finish()


def smiles_column(fields: Sequence[str], column: str | None, source: str) -> str:
    """The SMILES column among ``fields``: ``column`` (exact, else case-insensitive), or the
    first of :data:`SMILES_COLUMNS` present (case-insensitive). ValueError names the columns."""
    fields = [str(f) for f in fields]
    folded = {f.strip().lower(): f for f in reversed(fields)}
    if column is not None:
        if column in fields:
            return column
        if column.strip().lower() in folded:
            return folded[column.strip().lower()]
        raise ValueError(f"{source}: no column {column!r}; its columns are {fields}")
    for name in SMILES_COLUMNS:
        if name in folded:
            return folded[name]
    raise ValueError(
        f"{source}: no SMILES column among {fields} (looked for {', '.join(SMILES_COLUMNS)}, any case); "
        "name it with --column NAME (sciogen train) or column='NAME' (Python)"
    )


def _number(value: str | None):
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return value


def read_parquet(
    path: str | Path, *, column: str | None = None, on_error: OnError = "raise", spec: MoleculeSpec | None = None
) -> MoleculeRecords:
    """A parquet table with a SMILES column (as :func:`read_csv`; needs pandas and pyarrow).

    Records are the table's rows, ``row N`` 0-based as ``pandas.read_parquet(path).iloc[N]``.
    """
    import math

    try:
        import pandas as pd

        table = pd.read_parquet(path)
    except ImportError as err:
        raise ImportError(f"reading {path} needs pandas and pyarrow: pip install pandas pyarrow ({err})") from None
    path = Path(path)
    column = smiles_column(list(table.columns), column, str(path))
    col = _Collector(str(path), on_error, spec)
    others = [c for c in table.columns if c != column]
    for index, row in enumerate(table.itertuples(index=False, name=None)):
        values = dict(zip(table.columns, row))
        smiles = values[column]
        smiles = None if smiles is None or (isinstance(smiles, float) and math.isnan(smiles)) else str(smiles)
        mol, err = _parse(smiles, index)
        extra = {str(k): _cell(values[k]) for k in others}
        col.add(index, mol, smiles, err, extra, f"row {index}")
    return col.finish()


def _cell(value: Any) -> Any:
    """A parquet cell as a float (numbers, NaN for missing), else itself (strings...)."""
    if value is None:
        return None
    if isinstance(value, (bool,)):
        return float(value)
    try:
        import numpy as np

        if isinstance(value, (int, float, np.integer, np.floating)):
            return float(value)
    except ImportError:  # pragma: no cover - numpy comes with torch
        pass
    return value


def _sdf_blocks(path: Path) -> Iterator[tuple[int, str]]:
    """(first line, 1-based; text) of each record."""
    with _open_text(path) as handle:
        block: list[str] = []
        start = 1
        for n, line in enumerate(handle, 1):
            block.append(line)
            if line.startswith("$$$$"):
                yield start, "".join(block)
                block, start = [], n + 1
        if "".join(block).strip():
            yield start, "".join(block)


def read_sdf(path: str | Path, *, on_error: OnError = "raise", spec: MoleculeSpec | None = None) -> MoleculeRecords:
    """An SDF file (V2000 / V3000); SD tags come back in ``records.columns``."""
    path = Path(path)
    col = _Collector(str(path), on_error, spec)
    for index, (line, block) in enumerate(_sdf_blocks(path)):
        title = block.splitlines()[0].strip() if block.strip() else None
        mol = Chem.MolFromMolBlock(block, sanitize=True, removeHs=False)
        err, extra = None, {}
        if mol is not None and mol.GetNumAtoms() == 0:
            mol, err = None, SmilesParseError("empty SDF record (no atoms)", index=index, item=title)
        elif mol is None:
            why = _molblock_reason(block)
            err = SmilesParseError(f"RDKit cannot read this SDF record: {why}", index=index, item=title)
        else:
            extra = {k: _number(v) for k, v in _sd_tags(block).items()}
            mol = Chem.RemoveHs(mol)
        col.add(index, mol, title or (Chem.MolToSmiles(mol) if mol is not None else None), err, extra,
                f"record {index} (line {line})")
    return col.finish()


def _sd_tags(block: str) -> dict[str, str]:
    """The SD data items (``> <name>`` then value lines up to a blank line) after ``M  END``."""
    import re

    tags: dict[str, str] = {}
    lines = block.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("M  END")), len(lines))
    i = start + 1
    while i < len(lines):
        m = re.match(r"^>.*<([^>]*)>", lines[i])
        i += 1
        if m is None:
            continue
        value = []
        while i < len(lines) and lines[i].strip() and not lines[i].startswith("$$$$"):
            value.append(lines[i].rstrip())
            i += 1
        tags[m.group(1)] = "\n".join(value)
    return tags


def _molblock_reason(block: str) -> str:
    mol = Chem.MolFromMolBlock(block, sanitize=False, removeHs=False)
    if mol is None:
        return "not a valid MOL block (counts line, atom or bond lines)"
    try:
        Chem.SanitizeMol(mol)
    except Exception as err:  # RDKit's sanitization errors
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "kekulize" in text.lower():
            text += " (aromatic bonds that no single/double bond pattern fits)"
        return text
    return "RDKit rejects it"


def read_molecules(path: str | Path, *, on_error: OnError = "raise", spec: MoleculeSpec | None = None, **kwargs) -> MoleculeRecords:
    """Read a SMILES, CSV / TSV or SDF file by its suffix (``.gz`` allowed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    suffix = _base_suffix(path)
    column = kwargs.pop("column", None)
    if suffix in (".csv", ".tsv"):
        return read_csv(path, on_error=on_error, spec=spec, column=column, **kwargs)
    if suffix == ".parquet":
        return read_parquet(path, on_error=on_error, spec=spec, column=column, **kwargs)
    if column is not None and suffix in (".smi", ".smiles", ".txt", ".sdf", ".sd", ".mol"):
        raise ValueError(f"{path}: column={column!r} (--column) applies to .csv, .tsv and .parquet files; "
                         "a SMILES file has the SMILES first on each line, an SDF file the structures themselves")
    if kwargs:
        raise TypeError(f"read_molecules got unexpected options {sorted(kwargs)} for a {suffix} file")
    if suffix in (".smi", ".smiles", ".txt"):
        return read_smiles(path, on_error=on_error, spec=spec)
    if suffix in (".sdf", ".sd", ".mol"):
        return read_sdf(path, on_error=on_error, spec=spec)
    raise ValueError(f"{path}: unknown molecule file type {suffix!r}; use .smi, .smiles, .txt, .csv, .tsv, "
                     ".parquet or .sdf (the text formats optionally .gz)")


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


def _report_dropped(dropped: int, total: int, what: str, keep_all: str = "write .csv to keep every row, with a 'valid' column") -> None:
    """One stderr line when invalid molecules were left out of a SMILES / SDF file; ``keep_all``
    says which format keeps every sample."""
    if dropped:
        print(f"sciogen: {dropped} of {total} molecules are invalid and were not written to the {what} file "
              f"({keep_all})", file=sys.stderr)


def write_smiles(molecules: Sequence, path: str | Path, *, columns: dict[str, Sequence] | None = None) -> Path:
    """Write canonical SMILES.

    ``.csv`` gets a ``smiles`` header, a ``valid`` column (1 / 0) and the extra ``columns``, one
    row per molecule: an invalid one (None) has an empty SMILES cell and ``valid`` 0, so reading
    the file back counts it as invalid. ``.smi`` / ``.txt``: one SMILES a line, valid molecules
    only (a ``None`` line would break RDKit's ``SmilesMolSupplier``); how many were left out is
    printed to stderr.
    """
    path = Path(path)
    mols = _as_mols(molecules)
    smiles = [canonical_smiles(m) if m is not None else None for m in mols]
    with _open_write(path) as handle:
        if _base_suffix(path) == ".csv":
            writer = csv.writer(handle)
            names = list(columns or {})
            writer.writerow(["smiles", "valid", *names])
            for i, s in enumerate(smiles):
                writer.writerow([s or "", int(s is not None), *[columns[n][i] for n in names]])  # type: ignore[index]
        else:
            handle.write("".join(s + "\n" for s in smiles if s is not None))
    if _base_suffix(path) != ".csv":
        _report_dropped(smiles.count(None), len(smiles), "SMILES")
    return path


def write_sdf(molecules: Sequence, path: str | Path, *, columns: dict[str, Sequence] | None = None) -> Path:
    """Write an SDF (2D coordinates computed) of the valid molecules; invalid entries (None)
    are left out (no 0-atom records) and how many is printed to stderr. ``columns`` (one
    value per input molecule) become SD tags."""
    from rdkit.Chem import AllChem

    path = Path(path)
    mols = _as_mols(molecules)
    buffer = io.StringIO()
    writer = Chem.SDWriter(buffer)
    for i, m in enumerate(mols):
        if m is None:
            continue
        mol = Chem.Mol(m)
        AllChem.Compute2DCoords(mol)
        for name, values in (columns or {}).items():
            mol.SetProp(name, str(values[i]))
        writer.write(mol)
    writer.close()
    with _open_write(path) as handle:
        handle.write(buffer.getvalue())
    _report_dropped(sum(m is None for m in mols), len(mols), "SDF")
    return path


def write_molecules(molecules: Sequence, path: str | Path, **kwargs) -> Path:
    """Write by suffix: ``.sdf`` -> :func:`write_sdf`, otherwise :func:`write_smiles`."""
    path = Path(path)
    if _base_suffix(path) in (".sdf", ".sd"):
        return write_sdf(molecules, path, **kwargs)
    return write_smiles(molecules, path, **kwargs)
