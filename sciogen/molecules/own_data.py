"""Your own molecules: read them, infer the atom vocabulary, check the condition columns.

``sciogen train molecules --data PATH`` (and ``sciogen.fit("molecules", data=...)``) reads
``PATH`` here: a file (``.smi`` / ``.smiles`` / ``.txt``, ``.csv`` / ``.tsv`` / ``.parquet``
with a SMILES column, ``.sdf``; text formats optionally ``.gz``), a folder of such files
(recursive), a glob, or a Python list of SMILES / RDKit Mols. Every record that cannot be
used is reported with its file, its place (``line 4``, ``row 3``, ``record 2 (line 57)``,
``item 5`` of a list) and the reason, in :class:`~sciogen.data.records.RecordLog`; blank
lines are the only records ignored silently.

The atom vocabulary (element + formal charge tokens, e.g. ``C``, ``Cl``, ``[N+]``, ``[O-]``)
and the largest molecule (up to :data:`MAX_ATOMS_CAP` nodes unless ``data.max_atoms`` says
more) are inferred from the molecules that convert to graphs and back unchanged. What the
graph representation cannot hold is refused per molecule: dummy / query atoms (``*``),
radicals and unusual valences whose hydrogens cannot be recomputed, dative bonds, aromatic
rings that cannot be kekulized, and (with a fixed vocabulary or size) other atom types or
larger molecules.

Conditions (``--condition-on a,b``): a numeric column of the CSV / TSV / parquet file or an
SD tag of the SDF file, matched by exact name; else one of RDKit's ``qed``, ``logp``, ``sa``,
``weight``, computed from the structure. A missing value (empty cell, ``NA``, ``nan``,
``None``, ``null``, an absent tag) keeps the molecule with that condition unknown (it then
trains the unconditional part of classifier-free guidance for it); a value that is not a
number (``"high"``) is an unusable record, reported and skipped.
"""

from __future__ import annotations

import difflib
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from rdkit import Chem

from sciogen.data.records import RecordLog, expand_paths

from .config import RDKIT_CONDITIONS
from .datasets import MoleculeDataset
from .io import MOLECULE_SUFFIXES, _parse, read_molecules
from .representation import (
    AtomType,
    MoleculeError,
    MoleculeSpec,
    MoleculeTooLargeError,
    UnknownAtomTypeError,
    _prepare,
    canonical_smiles,
)

__all__ = ["OwnMolecules", "read_own_molecules", "infer_vocabulary", "condition_columns", "own_dataset",
           "MIN_MOLECULES", "MAX_ATOMS_CAP", "MISSING_VALUES"]

#: fewest usable molecules a model trains on
MIN_MOLECULES = 10
#: the largest molecule (nodes) an inferred vocabulary takes unless ``data.max_atoms`` is set:
#: the network's cost grows with N^2 (edges) to N^3 (PPGN layers)
MAX_ATOMS_CAP = 64
#: condition cells read as "unknown" (case-insensitive, after stripping)
MISSING_VALUES = ("", "na", "n/a", "nan", "none", "null")
LIST_SOURCE = "<list>"


@dataclass
class OwnMolecules:
    """Molecules read from a user's files or list.

    Attributes:
        mols: RDKit molecules (hydrogens as in the file; the spec removes or adds them).
        sources: each molecule's file (``"<list>"`` for Python objects).
        where: each molecule's place in its file (``"line 4"``, ``"item 2"``, ...).
        columns: other CSV / parquet columns and SD tags, one list per name aligned with
            ``mols`` (floats where numeric, None where absent).
    """

    mols: list[Any] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    where: list[str] = field(default_factory=list)
    columns: dict[str, list[Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.mols)

    def _extend(self, mols, source: str, where, columns: dict[str, list]) -> None:
        start = len(self.mols)
        self.mols += list(mols)
        self.sources += [source] * len(mols)
        self.where += list(where)
        for name in set(self.columns) | set(columns):
            values = columns.get(name, [None] * len(mols))
            self.columns.setdefault(name, [None] * start).extend(values)


def read_own_molecules(data: Any, *, column: str | None = None, log: RecordLog | None = None,
                       limit: int | None = None) -> OwnMolecules:
    """Read a file, folder, glob or list of SMILES / Mols; unusable records go to ``log``.

    Raises FileNotFoundError / ValueError naming the path for a missing file, an unknown
    suffix, a CSV without a SMILES column (or without ``column``).
    """
    log = RecordLog() if log is None else log
    out = OwnMolecules()
    if isinstance(data, (str, Path)):
        for path in expand_paths(data, MOLECULE_SUFFIXES, "molecule files"):
            with warnings.catch_warnings():  # the skipped records are reported through ``log``
                warnings.simplefilter("ignore")
                records = read_molecules(path, on_error="skip", column=column)
            for s in records.skipped:
                log.skip(path, s.where or s.index, _reason(s.item, s.reason))
            out._extend(records.mols, str(path), records.where, records.columns)
    else:
        if isinstance(data, (Chem.Mol, bytes)) or not hasattr(data, "__iter__"):
            raise TypeError(f"--data must be a path or a list of SMILES / RDKit Mols, got {type(data).__name__}")
        if column is not None:
            raise ValueError("--column (column=) applies to CSV / TSV / parquet files, not to a list of molecules")
        mols, where = [], []
        for i, item in enumerate(data):
            if isinstance(item, Chem.Mol):
                mol, err = (item, None) if item.GetNumAtoms() else (None, "an empty Mol (no atoms)")
            elif isinstance(item, str):
                mol, error = _parse(item, i)
                err = error.reason if error is not None else None
            else:
                mol, err = None, f"a {type(item).__name__}, not a SMILES string or an RDKit Mol"
            if mol is None:
                log.skip(LIST_SOURCE, f"item {i}", _reason(item if isinstance(item, str) else None, err))
                continue
            mols.append(mol)
            where.append(f"item {i}")
        out._extend(mols, LIST_SOURCE, where, {})
    if limit is not None and len(out) > limit:
        out.mols, out.sources, out.where = out.mols[:limit], out.sources[:limit], out.where[:limit]
        out.columns = {k: v[:limit] for k, v in out.columns.items()}
    return out


def _reason(item: Any, reason: str) -> str:
    return f"{item!r}: {reason}" if isinstance(item, str) and item else reason


def _no_dummy_atoms(mol) -> None:
    """MoleculeError for a dummy / query atom (``*``, R-groups), which no vocabulary holds."""
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() == 0:
            raise MoleculeError(
                f"atom {atom.GetIdx()} is a dummy / query atom ('{atom.GetSymbol()}', an attachment point or "
                "R-group), which a molecule graph cannot hold; replace it by a real atom or drop the molecule"
            )


def _tokens(mol, explicit_hydrogens: bool, bonds: str) -> list[str]:
    """The atom tokens of a molecule; MoleculeError for what no vocabulary can hold."""
    _no_dummy_atoms(mol)
    mol = _prepare(mol, explicit_hydrogens, bonds, None)
    return [AtomType.of(atom, bonds).token for atom in mol.GetAtoms()]


def infer_vocabulary(mols: Sequence[Any], *, explicit_hydrogens: bool = False, bonds: str = "kekulize",
                     max_atoms_cap: int = MAX_ATOMS_CAP,
                     failures: list[tuple[int, str]] | None = None) -> tuple[list[str], int, int]:
    """The atom tokens (order of first appearance) of the molecules, the node count the network
    gets (the largest molecule, at most ``max_atoms_cap``) and the number of molecules that gave
    tokens (0: nothing to infer from). ``failures`` (a list) receives ``(position, reason)`` of
    the others (dummy atoms, rings that cannot be kekulized). The full graph round trip
    (hydrogens, radicals) is checked per molecule when the training set is built."""
    failures = [] if failures is None else failures
    seen: dict[str, None] = {}
    largest, good = 0, 0
    for i, mol in enumerate(mols):
        try:
            tokens = _tokens(mol, explicit_hydrogens, bonds)
        except MoleculeError as err:
            failures.append((i, err.reason))
            continue
        good += 1
        largest = max(largest, len(tokens))
        for t in tokens:
            seen.setdefault(t, None)
    return list(seen), min(largest, max_atoms_cap), good


def condition_columns(names: Sequence[str], columns: dict[str, list[Any]], source: str) -> list[str]:
    """The names of ``names`` that are columns / SD tags of the data (the others are RDKit's).

    Raises ValueError naming the numeric columns (and a close match) for a name that is
    neither a column nor one of RDKit's, or a column that holds no number.
    """
    numeric = [k for k, v in columns.items() if any(_is_number(x) for x in v)]
    out = []
    for name in names:
        if name in columns:
            if name not in numeric:
                shown = [x for x in columns[name] if x is not None][:3]
                raise ValueError(f"{source}: column {name!r} holds no numbers (e.g. {shown}), so it cannot be a "
                                 f"condition; numeric columns: {numeric or 'none'}")
            out.append(name)
        elif name not in RDKIT_CONDITIONS:
            candidates = list(columns) + list(RDKIT_CONDITIONS)
            folded = [k for k in candidates if k.lower() == name.lower()]
            close = folded or difflib.get_close_matches(name, candidates, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"{source}: no column or SD tag named {name!r} to condition on{hint} (numeric columns: "
                f"{', '.join(numeric) or 'none'}; RDKit computes {', '.join(RDKIT_CONDITIONS)} from any molecule)"
            )
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


def _value(value: Any) -> float | None:
    """A condition cell as a float (NaN = unknown), or None when it is not a number."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value) if math.isfinite(float(value)) else math.nan
    text = str(value).strip()
    if text.lower() in MISSING_VALUES:
        return math.nan
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else math.nan


def own_dataset(data: Any, spec: MoleculeSpec, *, column: str | None = None, conditions: Sequence[str] = (),
                log: RecordLog, limit: int | None = None) -> MoleculeDataset:
    """The training set of a user's ``data``: graphs under ``spec``, with ``y`` (1, P) of the
    condition columns (NaN = unknown); every unusable record is reported in ``log``."""
    own = read_own_molecules(data, column=column, log=log, limit=limit)
    source = str(data) if isinstance(data, (str, Path)) else LIST_SOURCE
    names = tuple(condition_columns(conditions, own.columns, source))
    graphs, smiles, ids = [], [], []
    for i, mol in enumerate(own.mols):
        where, file = own.where[i], own.sources[i]
        try:
            _no_dummy_atoms(mol)
            graph = spec.to_graph(mol, index=i)
        except MoleculeError as err:
            reason = err.reason
            if isinstance(err, MoleculeTooLargeError):
                reason += " (--set data.max_atoms=N trains a network for larger molecules; cost grows as N^2 to N^3)"
            elif isinstance(err, UnknownAtomTypeError):
                reason = reason.split(";")[0] + " (data.atom_types; leave it null to infer it from your data)"
            log.skip(file, where, _reason(_smiles_or_none(mol), reason))
            continue
        values = [_value(own.columns[n][i]) for n in names]
        bad = [n for n, v in zip(names, values) if v is None]
        if bad:
            log.skip(file, where, f"{bad[0]}={own.columns[bad[0]][i]!r} is not a number (leave the cell empty "
                                  "or write NA for an unknown value)")
            continue
        if names:
            graph.y = torch.tensor(values, dtype=torch.float32).view(1, -1)
        can = canonical_smiles(mol)
        graph.smiles, graph.idx = can, i
        graphs.append(graph)
        smiles.append(can)
        ids.append(i)
    return MoleculeDataset("file", "all", spec, graphs, smiles, ids, names)


def _smiles_or_none(mol) -> str | None:
    try:
        return Chem.MolToSmiles(mol)
    except Exception:  # only for messages  # noqa: BLE001
        return None
