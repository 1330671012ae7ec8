"""Space groups on request: Wyckoff templates, and the projection that keeps a sample in its group.

    >>> hits = gen.sample(50, space_group=221, seed=0)                # doctest: +SKIP
    >>> gen.sample(20, composition="SrTiO3", space_group="P4mm", wyckoff="1a 1b 1b 2c")
    >>> space_group_rate(hits, 221)                                   # SpacegroupAnalyzer, symprec 0.1 Å

**Method: projection onto a Wyckoff template after every step** (not DiffCSP++'s Wyckoff
reparametrisation, Jiao et al. 2024, which needs a network trained in it). Each sample first gets a
template, as in DiffCSP++: the Wyckoff positions of its orbits (multiplicities adding up to its atom
count), drawn from the reference (training) crystals of that group where there are any, with their
cell and which orbits share an element. The predictor-corrector loop of :mod:`sciogen.crystals.diffcsp`
then runs with every state, and every network input, projected (:class:`SymmetryProjector`):
coordinates onto the template's orbits (each atom mapped back to its orbit's representative, the
images averaged periodically, projected onto the position's fixed subspace ``x0 + P (y - x0)``,
``P`` the site-symmetry average, and mapped out again), the lattice onto the crystal system (the
metric averaged over the point group, the orientation kept), types onto one element per orbit (or
per element class, different classes different elements: log-probabilities averaged, clashes redrawn).
The network's input coordinates get back noise across the constraints at the step's noise level, so
it sees the kind of input it was trained on.

Why projection: no retraining, so every CSPNet checkpoint (the shipped ``crystals/perov5`` too)
samples in any of the 230 groups; the constraint set is DiffCSP++'s (atoms on the template's
positions, lattice of the crystal system), and for the sampler's linear steps projecting the state is
projecting the score and the noise. What it cannot do: forbid extra symmetry. A sample whose free
parameters settle on special values lies in a supergroup, which :func:`space_group_rate` counts as
a miss.

Cells: a template's cell is its reference crystal's (``x_conv = basis @ x``), else the ITA standard
setting (spglib's default Hall setting), a primitive cell of it for centred groups, as training cells
are primitive. Wyckoff positions (the 1,731 of the 230 groups) are found from each group's operations
and lettered by spglib; labels such as ``"4a"`` keep ITA's conventional multiplicity.
"""

from __future__ import annotations

import difflib
import functools
import math
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch

from .diffcsp import CrystalProcesses, _guided, _network, _nonfinite

if TYPE_CHECKING:  # pragma: no cover
    from pymatgen.core import Structure

__all__ = [
    "SpaceGroup", "WyckoffPosition", "WyckoffTemplate", "SpaceGroupError", "space_group", "parse_wyckoff",
    "choose_templates", "wyckoff_templates", "SymmetryProjector", "sample_in_space_groups", "detect_space_group",
    "space_group_rate", "space_group_distribution", "space_group_distance", "SYMPREC",
]

#: the tolerance (Å) of the space-group checks (spglib through pymatgen's SpacegroupAnalyzer)
SYMPREC = 0.1

#: the grid (1/24) on which Wyckoff positions are found; every ITA translation and special coordinate lies on it
_GRID = 24

#: ITA's Wyckoff letters, in order (Pmmm's general position is "A")
_LETTERS = "abcdefghijklmnopqrstuvwxyzA"

#: centring -> primitive basis vectors (columns, in conventional fractional coordinates)
_PRIMITIVE = {
    "P": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    "A": ((1, 0, 0), (0, 0.5, 0.5), (0, -0.5, 0.5)),
    "B": ((0.5, 0, 0.5), (0, 1, 0), (-0.5, 0, 0.5)),
    "C": ((0.5, 0.5, 0), (-0.5, 0.5, 0), (0, 0, 1)),
    "I": ((-0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.5, 0.5, -0.5)),
    "F": ((0, 0.5, 0.5), (0.5, 0, 0.5), (0.5, 0.5, 0)),
    "R": ((2 / 3, 1 / 3, 1 / 3), (-1 / 3, 1 / 3, 1 / 3), (-1 / 3, -2 / 3, 1 / 3)),
}


class SpaceGroupError(ValueError):
    """A space group, Wyckoff template or composition that cannot be used; the message says which and why."""


# -- groups and their Wyckoff positions -------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class WyckoffPosition:
    """One Wyckoff position of a group, in the conventional cell of its ITA setting.

    Attributes:
        label: ITA's name, conventional multiplicity and letter (``"3c"``).
        multiplicity: atoms of one orbit in the conventional cell.
        coordinates: its representative coordinates, e.g. ``"(x,0,1/2)"``.
        dof: free parameters (0: a fixed point, which holds one orbit at most).
        origin: (3,) a point of the representative subspace (fractional).
        projector: (3, 3) the site-symmetry average ``mean R``; ``origin + projector (y - origin)``
            projects a point y near the subspace onto it.
    """

    label: str
    multiplicity: int
    coordinates: str
    dof: int
    origin: np.ndarray
    projector: np.ndarray

    def __repr__(self) -> str:
        return f"WyckoffPosition({self.label} {self.coordinates})"


@dataclass(frozen=True, eq=False)
class GroupCell:
    """A space group in one cell of its lattice, ``x_conv = basis @ x_cell`` (:meth:`SpaceGroup.cell`).

    Attributes:
        group: the :class:`SpaceGroup`.
        basis: (3, 3) the cell's vectors (columns) in conventional fractional coordinates.
        rotations, translations: (n, 3, 3) int and (n, 3), the operations in this cell, one per
            coset of its lattice.
        orbits: per Wyckoff label (origin (3,), projector (3, 3), rotations (m, 3, 3), translations
            (m, 3)) in this cell: the operations map the representative position onto each of the
            orbit's m atoms in the cell (the first is the identity).
    """

    group: "SpaceGroup"
    basis: np.ndarray
    rotations: np.ndarray
    translations: np.ndarray
    orbits: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]

    def multiplicity(self, label: str) -> int:
        """Atoms of one orbit of the Wyckoff position ``label`` in this cell."""
        return len(self.orbits[self.group.position(label).label][2])

    @property
    def point_group(self) -> np.ndarray:
        """(k, 3, 3) the distinct rotations in this cell."""
        return np.unique(self.rotations, axis=0)


@dataclass(frozen=True, eq=False)
class SpaceGroup:
    """A space group in its ITA standard setting (spglib's default Hall setting); :func:`space_group` builds it.

    Attributes:
        number, symbol: 1-230 and the Hermann-Mauguin symbol (``"Pm-3m"``).
        hall_number: spglib's setting.
        crystal_system: ``"cubic"``, ``"tetragonal"``, ...
        centring: the first letter of the symbol (P, A, B, C, I, F, R).
        rotations, translations: (n, 3, 3) int and (n, 3), the operations of the conventional cell
            (with the centring translations).
        positions: the Wyckoff positions, in ITA's order (a, b, ...).
    """

    number: int
    symbol: str
    hall_number: int
    crystal_system: str
    centring: str
    rotations: np.ndarray
    translations: np.ndarray
    positions: tuple[WyckoffPosition, ...]

    def position(self, label: str) -> WyckoffPosition:
        """The Wyckoff position named ``label`` (``"3c"``, or the letter alone)."""
        text = str(label).strip()
        for p in self.positions:
            if text in (p.label, p.label.lstrip("0123456789")):
                return p
        raise SpaceGroupError(f"{self.name} has no Wyckoff position {label!r}; its positions: {self.describe()}")

    @property
    def name(self) -> str:
        return f"{self.symbol} ({self.number})"

    @property
    def default_basis(self) -> tuple[tuple[float, ...], ...]:
        """The cell samples use by default: the conventional cell, or for a centred group a primitive one."""
        return _basis_key(np.array(_PRIMITIVE[self.centring], dtype=np.float64).T)

    def cell(self, basis: Any = None) -> GroupCell:
        """The group in the cell ``x_conv = basis @ x_cell`` (default :attr:`default_basis`); cached.
        The cell must be the conventional cell or a primitive cell of the group's lattice (a right-handed
        basis in which every operation is an integer rotation)."""
        return _group_cell(self.number, self.default_basis if basis is None else _basis_key(basis))

    def describe(self) -> str:
        """The positions as ``1a (0,0,0), 1b (1/2,1/2,1/2), ...``, with the atoms of an orbit in a
        primitive cell where the group is centred."""
        cell = self.cell()
        items = []
        for p in self.positions:
            m = cell.multiplicity(p.label)
            items.append(f"{p.label} {p.coordinates}" + ("" if m == p.multiplicity else f" [{m} per primitive cell]"))
        return ", ".join(items)

    def __repr__(self) -> str:
        return f"SpaceGroup({self.name}, {len(self.positions)} Wyckoff positions)"


def _basis_key(basis: Any) -> tuple[tuple[float, ...], ...]:
    b = np.asarray(basis, dtype=np.float64)
    if b.shape != (3, 3) or not np.isfinite(b).all():
        raise SpaceGroupError(f"a cell basis must be a finite 3 x 3 matrix, got {basis!r}")
    return tuple(tuple(float(v) for v in np.round(row * 72) / 72) for row in b)


@functools.lru_cache(maxsize=None)
def _group_cell(number: int, basis: tuple[tuple[float, ...], ...]) -> GroupCell:
    g = space_group(number)
    b = np.array(basis, dtype=np.float64)
    det = float(np.linalg.det(b))
    if not 1e-6 < det <= 1 + 1e-6:
        raise SpaceGroupError(f"{g.name}: the cell basis {basis} has determinant {det:.4g}; use the conventional "
                              "cell or a primitive cell (right-handed)")
    inv = np.linalg.inv(b)
    rot = np.einsum("ij,kjl,lm->kim", inv, g.rotations, b)
    if not np.allclose(rot, np.rint(rot), atol=1e-6):
        raise SpaceGroupError(f"{g.name}: the cell basis {basis} is not a cell of the group's lattice (its operations "
                              "are not integer rotations there)")
    rot = np.rint(rot).astype(np.int64)
    trans = np.einsum("ij,kj->ki", inv, g.translations) % 1.0
    keep = _distinct_ops(rot, trans)
    rot, trans = rot[keep], trans[keep]
    orbits = {}
    for p in g.positions:
        x0, proj = inv @ p.origin, inv @ p.projector @ b
        orbits[p.label] = (x0, proj, *_orbit(rot, trans, x0, proj))
    return GroupCell(g, b, rot, trans, orbits)


def _distinct_ops(rot: np.ndarray, trans: np.ndarray) -> list[int]:
    """One operation per coset of the cell's lattice."""
    seen, keep = set(), []
    for k in range(len(rot)):
        key = (rot[k].tobytes(), tuple(np.round(_wrap(trans[k]) * 72).astype(int) % 72))
        if key not in seen:
            seen.add(key)
            keep.append(k)
    return keep


def _spglib():
    """The spglib module; its failures are None or a SpglibError, depending on its error handling."""
    import spglib

    return spglib


@functools.lru_cache(maxsize=1)
def _settings() -> dict[int, tuple[int, str]]:
    """{number: (default Hall number, short symbol)} from spglib's database."""
    spglib = _spglib()
    out: dict[int, tuple[int, str]] = {}
    for hall in range(1, 531):
        t = spglib.get_spacegroup_type(hall)
        out.setdefault(int(t.number), (hall, str(t.international_short)))
    return out


def _group_number(group: Any) -> int:
    """1-230 from a number, a numeric string or a Hermann-Mauguin symbol; SpaceGroupError otherwise."""
    if isinstance(group, (bool, np.bool_)):
        raise SpaceGroupError(f"space group {group!r} is not a number 1-230 or a Hermann-Mauguin symbol")
    if isinstance(group, (int, np.integer)) or (isinstance(group, str) and group.strip().isdigit()):
        number = int(group)
        if not 1 <= number <= 230:
            raise SpaceGroupError(f"space group {group!r}: the numbers run from 1 to 230")
        return number
    if isinstance(group, float) and group.is_integer():
        return _group_number(int(group))
    if not isinstance(group, str):
        raise SpaceGroupError(f"space group {group!r} is not a number 1-230 or a Hermann-Mauguin symbol, e.g. 'Pm-3m'")
    key = group.replace(" ", "").replace("_", "")
    symbols = {sym.replace("_", ""): number for number, (_, sym) in _settings().items()}
    if key in symbols:
        return symbols[key]
    close = difflib.get_close_matches(key, list(symbols), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else " (e.g. 'Pm-3m', 'P4/mmm' or the number 221)"
    raise SpaceGroupError(f"space group {group!r} is not a Hermann-Mauguin symbol of the 230 groups{hint}")


@functools.lru_cache(maxsize=None)
def space_group(group: int | str) -> SpaceGroup:
    """The :class:`SpaceGroup` of a number (1-230) or Hermann-Mauguin symbol (``"Pm-3m"``, ``"P4/mmm"``),
    with its Wyckoff positions; cached."""
    number = _group_number(group)
    if not isinstance(group, int):
        return space_group(number)
    spglib = _spglib()
    hall, symbol = _settings()[number]
    ops = spglib.get_symmetry_from_database(hall)
    rot = np.asarray(ops["rotations"], dtype=np.int64)
    shift = np.rint(np.asarray(ops["translations"], dtype=np.float64) * _GRID).astype(np.int64) % _GRID
    classes = _wyckoff_classes(rot, shift)
    letters = _letters(number, hall, rot, shift, classes)
    positions = [WyckoffPosition(f"{len(rot) // size}{letter}", len(rot) // size, coords, dof, x0, projector)
                 for (size, coords, x0, projector, dof), letter in zip(classes, letters)]
    positions.sort(key=lambda p: _LETTERS.index(p.label[-1]))
    return SpaceGroup(number, symbol, hall, _crystal_system(number), symbol[0], rot, shift / _GRID, tuple(positions))


def _crystal_system(number: int) -> str:
    for last, name in ((2, "triclinic"), (15, "monoclinic"), (74, "orthorhombic"), (142, "tetragonal"),
                       (167, "trigonal"), (194, "hexagonal"), (230, "cubic")):
        if number <= last:
            return name
    raise AssertionError(number)


def _wyckoff_classes(rot: np.ndarray, shift: np.ndarray) -> list[tuple[int, str, np.ndarray, np.ndarray, int]]:
    """The Wyckoff positions of the group (conventional cell): per position (site-symmetry order,
    coordinates text, origin (3,), projector (3, 3), dof).

    Every point of the 1/24 grid gets its site-symmetry group (the operations that fix it, with the
    exact translations); points with the same one lie on one subspace, and subspaces that the group
    maps onto each other form one Wyckoff position (connected components).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    g = _GRID
    points = np.stack(np.meshgrid(*[np.arange(g)] * 3, indexing="ij"), -1).reshape(-1, 3)
    moved = np.einsum("kij,pj->pki", rot, points)  # (P, n, 3)
    images = (moved + shift[None]) % g
    fixed = (images == points[:, None]).all(-1)  # (P, n)
    full = (points[:, None, :] - moved) * fixed[..., None]  # t + lattice vector of each fixing op
    keys = np.concatenate([fixed.astype(np.int64), full.reshape(len(points), -1)], 1)
    weights = np.random.default_rng(0).integers(1, 2**62, size=(keys.shape[1], 2))
    hashes = keys @ weights  # two 64-bit hashes per site-symmetry group (wrapping arithmetic)
    _, first, key_of = np.unique(hashes, axis=0, return_index=True, return_inverse=True)
    key_of = key_of.reshape(-1)
    flat = (images[first] * np.array([g * g, g, 1])).sum(-1)  # (K, n) grid index of each image
    rows = np.repeat(np.arange(len(first)), rot.shape[0])
    graph = coo_matrix((np.ones(rows.size), (rows, key_of[flat.reshape(-1)])), shape=(len(first),) * 2)
    _, component = connected_components(graph, directed=False)
    out = []
    for c in np.unique(component):
        members = np.nonzero(component == c)[0]
        best = None
        for k in members:  # the simplest representative subspace: smallest origin
            p = first[k]
            ops = np.nonzero(fixed[p])[0]
            x0, text, dof = _subspace(rot[ops], full[p, ops])
            candidate = (tuple(np.round(x0, 6)), text, x0, ops, dof)
            if best is None or candidate[:2] < best[:2]:
                best = candidate
        _, text, x0, ops, dof = best
        projector = rot[ops].mean(0)
        out.append((len(ops), text, x0, projector, dof))
    return out


def _subspace(rot: np.ndarray, full: np.ndarray) -> tuple[np.ndarray, str, int]:
    """The fixed points of the operations (R, t): (R - I) x = -t, solved exactly (fractions).

    Columns are eliminated from the last, so free parameters are named by their own axis as in
    ITA: ``(x,x,x)``, ``(0,y,y)``, ``(x,-x,z)``. Returns the point with free parameters 0, the
    coordinates text and the number of free parameters.
    """
    rows = [[Fraction(int(v)) for v in (r - np.eye(3, dtype=np.int64))[i]] + [Fraction(-int(t[i]), _GRID)]
            for r, t in zip(rot, full) for i in range(3)]
    pivots, r = [], 0
    for col in (2, 1, 0):
        pr = next((i for i in range(r, len(rows)) if rows[i][col] != 0), None)
        if pr is None:
            continue
        rows[r], rows[pr] = rows[pr], rows[r]
        lead = rows[r][col]
        rows[r] = [v / lead for v in rows[r]]
        for i in range(len(rows)):
            if i != r and rows[i][col] != 0:
                f = rows[i][col]
                rows[i] = [a - f * b for a, b in zip(rows[i], rows[r])]
        pivots.append(col)
        r += 1
    free = [c for c in range(3) if c not in pivots]
    names = "xyz"
    x0 = np.zeros(3)
    text = [names[c] for c in range(3)]
    for i, col in enumerate(pivots):
        const = rows[i][3] % 1
        x0[col] = float(const)
        terms = [(-rows[i][f], names[f]) for f in free if rows[i][f] != 0]
        text[col] = _expression(terms, const)
    return x0, "(" + ",".join(text) + ")", len(free)


def _expression(terms: list[tuple[Fraction, str]], const: Fraction) -> str:
    out = ""
    for coef, name in terms:
        sign = "-" if coef < 0 else ("+" if out else "")
        mag = abs(coef)
        out += f"{sign}{'' if mag == 1 else mag}{name}"
    if const or not out:
        out += f"{'+' if out and const > 0 else ''}{const}"
    return out


def _letters(number: int, hall: int, rot, shift, classes) -> list[str]:
    """ITA letters of the positions, from spglib on a crystal holding one orbit of each (and two
    general orbits, so that it has no more symmetry than the group) in a lattice of the group."""
    from pymatgen.core import Lattice

    rng = np.random.default_rng(number)
    trans = shift / _GRID
    coords, species = [], []
    for i, (_, text, x0, projector, dof) in enumerate(classes):
        point = x0 + projector @ rng.uniform(0.05, 0.45, 3)
        coords += _unique_mod1((np.einsum("kij,j->ki", rot, point) + trans) % 1.0)
        species += [i + 1] * (len(coords) - len(species))
    for extra in (1000, 1001):
        coords += list((np.einsum("kij,j->ki", rot, rng.uniform(0.05, 0.95, 3)) + trans) % 1.0)
        species += [extra] * (len(coords) - len(species))
    metric = Lattice.from_parameters(4.0, 5.0, 6.0, 80.0, 85.0 if number <= 2 else 95.0, 88.0).metric_tensor
    metric = np.einsum("kai,ab,kbj->ij", rot, metric, rot) / len(rot)
    lattice = np.linalg.cholesky(metric)
    data = _spglib().get_symmetry_dataset((lattice, np.array(coords), species), symprec=1e-4, hall_number=hall)
    if (data is None or data.number != number or not np.allclose(data.transformation_matrix, np.eye(3), atol=1e-6)
            or not np.allclose(_wrap(np.asarray(data.origin_shift)), 0.0, atol=1e-6)):
        raise RuntimeError(f"spglib did not keep the standard setting of space group {number}; cannot letter its "
                           "Wyckoff positions (please report)")
    letters = {}
    for s, w in zip(species, data.wyckoffs):
        letters.setdefault(s, set()).add(w)
    out = [letters[i + 1] for i in range(len(classes))]
    if any(len(x) != 1 for x in out) or len({next(iter(x)) for x in out}) != len(out):
        raise RuntimeError(f"space group {number}: spglib's Wyckoff letters do not match the positions found")
    return [next(iter(x)) for x in out]


def _wrap(x):
    return x - np.floor(x + 0.5)


def _distinct_mod1(points: np.ndarray, tol: float = 1e-6) -> list[int]:
    """Indices of the first of each group of points equal modulo the lattice."""
    close = np.abs(_wrap(points[:, None] - points[None])).max(-1) < tol
    keep: list[int] = []
    for i in range(len(points)):
        if not close[i, keep].any():
            keep.append(i)
    return keep


def _unique_mod1(points: np.ndarray) -> list[np.ndarray]:
    return [points[i] for i in _distinct_mod1(points)]


def _orbit(rot, trans, x0, projector) -> tuple[np.ndarray, np.ndarray]:
    """Coset representatives: the operations that map a generic point of the subspace onto each
    distinct point of its orbit (identity first)."""
    point = x0 + projector @ np.array([0.1234, 0.2718, 0.3141])
    images = (np.einsum("kij,j->ki", rot, point) + trans) % 1.0
    identity = [k for k in range(len(rot)) if np.array_equal(rot[k], np.eye(3)) and np.allclose(_wrap(trans[k]), 0.0)]
    order = identity[:1] + [k for k in range(len(rot)) if k not in identity[:1]]
    reps = [order[i] for i in _distinct_mod1(images[order])]
    return rot[reps].copy(), trans[reps].copy()


# -- templates: which Wyckoff positions a crystal's atoms occupy --------------------------------------


Basis = tuple[tuple[float, ...], ...]


@dataclass(frozen=True)
class WyckoffTemplate:
    """The Wyckoff positions of one crystal, one label per orbit, and how the orbits take elements.

    Attributes:
        group: the space group's number.
        labels: one Wyckoff label per orbit (``("1a", "1b", "3c")``); atoms are laid out orbit after orbit.
        elements: per orbit its atomic number where the composition is given (structure prediction);
            None where the model draws the types.
        basis: the cell the crystal is built in (``x_conv = basis @ x_cell``); None: the group's
            default cell. Templates read from reference crystals keep their cell, so samples come out
            oriented as those crystals were (a network need not treat the three axes alike).
        classes: per orbit an element class (de novo): orbits of one class take one element, orbits
            of different classes different ones, as in the reference crystal the template came
            from; None: each orbit draws its type freely.
    """

    group: int
    labels: tuple[str, ...]
    elements: tuple[int, ...] | None = None
    basis: Basis | None = None
    classes: tuple[int, ...] | None = None

    @property
    def cell(self) -> GroupCell:
        return space_group(self.group).cell(self.basis)

    @property
    def num_atoms(self) -> int:
        cell = self.cell
        return sum(cell.multiplicity(label) for label in self.labels)

    def __str__(self) -> str:
        if self.elements is not None:
            from pymatgen.core import Element

            return " ".join(f"{Element.from_Z(z).symbol}:{label}" for z, label in zip(self.elements, self.labels))
        if self.classes is not None:
            names = [chr(ord("A") + c) if c < 26 else f"E{c}" for c in self.classes]
            return " ".join(f"{name}:{label}" for name, label in zip(names, self.labels))
        return " ".join(self.labels)


def parse_wyckoff(text: str | Sequence[str], group: int | str) -> tuple[str, ...]:
    """Labels of a template, ``"1a 1b 3c"`` / ``"1a,1b,3c"`` / ``["1a", "1b", "3c"]`` (or letters,
    ``"a b c"``), checked against the group: known positions, fixed points (no free parameter) at
    most once. Returns the labels sorted."""
    g = space_group(group)
    items = text.replace(",", " ").split() if isinstance(text, str) else [str(x) for x in text]
    if not items:
        raise SpaceGroupError(f"the Wyckoff template {text!r} is empty; give labels such as '1a 1b 3c'")
    labels = [g.position(item).label for item in items]
    twice = [label for label, k in Counter(labels).items() if k > 1 and g.position(label).dof == 0]
    if twice:
        raise SpaceGroupError(f"Wyckoff template {text!r} in {g.name}: {', '.join(twice)} "
                              "(a fixed point, no free parameter) can hold one orbit only")
    return _sorted_labels(labels)


def _label_key(label: str) -> tuple[int, str]:
    digits = label.rstrip(_LETTERS)
    return int(digits), label[len(digits):]


def _sorted_labels(labels: Sequence[str]) -> tuple[str, ...]:
    return tuple(sorted(labels, key=_label_key))


class _Assignments:
    """Counting and uniform sampling of the ways to place a composition on Wyckoff positions.

    An assignment gives every element a multiset of positions whose multiplicities add up to its
    count; a fixed point (dof 0) holds at most one orbit in all. Counts come from a dynamic
    programme over the fixed points (state: what each element still needs), then, per element, over
    the positions with free parameters (which any number of orbits may share).
    """

    def __init__(self, positions: Sequence[tuple[str, int, bool]]):
        """``positions``: (label, multiplicity, True where it holds one orbit at most)."""
        self.fixed = [(label, m) for label, m, once in positions if once]
        self.free = [(label, m) for label, m, once in positions if not once]
        self._free_memo: dict[tuple[int, int], int] = {}
        self._fixed_memo: dict[tuple[int, tuple[int, ...]], int] = {}

    def _free_count(self, i: int, need: int) -> int:
        if need == 0:
            return 1
        if i == len(self.free):
            return 0
        key = (i, need)
        if key not in self._free_memo:
            m = self.free[i][1]
            self._free_memo[key] = sum(self._free_count(i + 1, need - k * m) for k in range(need // m + 1))
        return self._free_memo[key]

    def _options(self, i: int, need: tuple[int, ...]) -> list[tuple[int | None, tuple[int, ...]]]:
        """Fixed point i: left empty, or one orbit of element e."""
        m = self.fixed[i][1]
        return [(None, need)] + [(e, need[:e] + (r - m,) + need[e + 1:]) for e, r in enumerate(need) if r >= m]

    def _fixed_count(self, i: int, need: tuple[int, ...]) -> int:
        if i == len(self.fixed):
            return math.prod(self._free_count(0, r) for r in need)
        key = (i, need)
        if key not in self._fixed_memo:
            self._fixed_memo[key] = sum(self._fixed_count(i + 1, nxt) for _, nxt in self._options(i, need))
        return self._fixed_memo[key]

    def count(self, need: Sequence[int]) -> int:
        """The number of assignments of the element counts ``need``."""
        return self._fixed_count(0, tuple(int(r) for r in need))

    def sample(self, need: Sequence[int], rng: np.random.Generator) -> list[list[str]]:
        """One assignment, uniformly: per element, its labels (``count(need)`` must be > 0)."""
        need = tuple(int(r) for r in need)
        out: list[list[str]] = [[] for _ in need]
        for i, (label, _) in enumerate(self.fixed):
            options = self._options(i, need)
            e, need = options[_pick([self._fixed_count(i + 1, nxt) for _, nxt in options], rng)]
            if e is not None:
                out[e].append(label)
        for e, r in enumerate(need):
            for i, (label, m) in enumerate(self.free):
                ks = list(range(r // m + 1))
                k = ks[_pick([self._free_count(i + 1, r - k * m) for k in ks], rng)]
                out[e] += [label] * k
                r -= k * m
        return out


def _pick(weights: Sequence[int], rng: np.random.Generator) -> int:
    """An index drawn with probability proportional to the (possibly huge) integer weights."""
    total = sum(weights)
    if total <= 0:
        raise AssertionError("nothing to pick from")
    x = int(rng.integers(0, 2**62)) * total // 2**62
    for i, w in enumerate(weights):
        if x < w:
            return i
        x -= w
    return len(weights) - 1


@functools.lru_cache(maxsize=None)
def _assignments(number: int, basis: Basis | None = None, labels: tuple[str, ...] | None = None) -> _Assignments:
    """Over all positions of the group (in the cell ``basis``), or over exactly the orbits of one template."""
    g = space_group(number)
    cell = g.cell(basis)
    if labels is None:
        return _Assignments([(p.label, cell.multiplicity(p.label), p.dof == 0) for p in g.positions])
    return _Assignments([(label, cell.multiplicity(label), True) for label in labels])


#: a template in a prior: (element classes, each a sorted tuple of Wyckoff labels), cell basis (None: default)
TemplateKey = tuple[tuple[tuple[str, ...], ...], "Basis | None"]


def _key_labels(key: TemplateKey) -> tuple[str, ...]:
    return tuple(label for group in key[0] for label in group)


def _size(g: SpaceGroup, key: TemplateKey) -> int:
    cell = g.cell(key[1])
    return sum(cell.multiplicity(label) for label in _key_labels(key))


def _class_sizes(g: SpaceGroup, key: TemplateKey) -> list[int]:
    cell = g.cell(key[1])
    return [sum(cell.multiplicity(label) for label in group) for group in key[0]]


def _template_fits(g: SpaceGroup, key: TemplateKey, need: tuple[int, ...]) -> bool:
    """Whether a composition with element counts ``need`` fits the template's element classes."""
    return sorted(_class_sizes(g, key)) == sorted(need)


def _draw(weights: Mapping[Any, float], rng: np.random.Generator) -> Any:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _prior_weights(g: SpaceGroup, prior: Mapping | None) -> dict[TemplateKey, float]:
    """{(classes, basis): weight} of the group from the keys ``(number, classes, basis)`` of
    :func:`wyckoff_templates`."""
    out: dict = {}
    for key, w in (prior or {}).items():
        if not (isinstance(key, tuple) and len(key) == 3 and isinstance(key[0], (int, np.integer))):
            raise ValueError(f"prior keys are (space-group number, element classes, basis) as wyckoff_templates "
                             f"returns them; got {key!r}")
        if int(key[0]) == g.number and w > 0:
            out[(key[1], key[2])] = out.get((key[1], key[2]), 0.0) + float(w)
    return out


def choose_templates(group: int | str, n: int, rng: np.random.Generator, *,
                     compositions: Sequence[Sequence[int]] | None = None, atom_counts: Any = None,
                     wyckoff: Sequence[str] | str | None = None, prior: Mapping | None = None,
                     max_atoms: int | None = None) -> list[WyckoffTemplate]:
    """One Wyckoff template per sample.

    Args:
        group: the space group (number or symbol).
        n: samples.
        rng: the only randomness.
        compositions: per sample, the atomic numbers of its cell (structure prediction); None: de novo.
        atom_counts: de novo, (max_atoms + 1,) probabilities of each atom count (the model's); counts
            that no assignment of the group fits are left out.
        wyckoff: one template for every sample (``"1a 1b 3c"``, the group's default cell, types free);
            the compositions must fit it.
        prior: {(number, classes, basis): weight}, e.g. :func:`wyckoff_templates` of the training
            crystals. A sample takes a prior template of the group that fits it with probability
            proportional to its weight: de novo, one of the atom count drawn; for a composition, one
            whose classes take its elements in electronegativity order (else in any order, counts
            matching). Where none fits, every assignment of the group that fits is equally likely
            (default cell, types free).
        max_atoms: the most atoms a crystal may have.

    Raises:
        SpaceGroupError: a composition that no Wyckoff assignment of the group fits (or not the
            given template), or no atom count the model draws fits the group.
    """
    g = space_group(group)
    weights = _prior_weights(g, prior)
    given = None if wyckoff is None else parse_wyckoff(wyckoff, g.number)
    if given is not None and max_atoms is not None and _size(g, ((given,), None)) > max_atoms:
        raise SpaceGroupError(f"the Wyckoff template {' '.join(given)} of {g.name} has {_size(g, ((given,), None))} "
                              f"atoms; the model supports at most {max_atoms}")
    if compositions is not None:
        if len(compositions) != n:
            raise ValueError(f"got {len(compositions)} compositions for n={n} samples")
        return [_csp_template(g, zs, given, weights, rng) for zs in compositions]
    if given is not None:
        return [WyckoffTemplate(g.number, given) for _ in range(n)]
    sizes = _atom_count_choices(g, atom_counts, max_atoms)
    draws = rng.choice(len(sizes), size=n, p=np.array([w for _, w in sizes]) / sum(w for _, w in sizes))
    out = []
    for k in draws:
        size = sizes[int(k)][0]
        fits = {key: w for key, w in weights.items() if _size(g, key) == size}
        if fits:
            classes, basis = _draw(fits, rng)
            labels = tuple(label for group in classes for label in group)
            ids = tuple(c for c, group in enumerate(classes) for _ in group)
            out.append(WyckoffTemplate(g.number, labels, None, basis, ids))
        else:
            out.append(WyckoffTemplate(g.number, _sorted_labels(_assignments(g.number).sample((size,), rng)[0])))
    return out


def _csp_template(g: SpaceGroup, zs: Sequence[int], given, weights, rng) -> WyckoffTemplate:
    """The template of one composition: a prior template whose classes it fills, else a uniform assignment."""
    counts = Counter(int(z) for z in zs)
    elements = sorted(counts)
    need = tuple(counts[z] for z in elements)
    basis = None
    if given is not None:
        a = _assignments(g.number, None, given)
        if sum(need) != sum(m for _, m in a.fixed) or a.count(need) == 0:
            raise SpaceGroupError(f"composition {_formula(zs)} ({len(zs)} atoms) does not fit the Wyckoff template "
                                  f"{' '.join(given)} of {g.name} ({_size(g, ((given,), None))} atoms)")
        per_element = a.sample(need, rng)
    else:
        ordered = sorted(range(len(elements)), key=lambda e: _electronegativity_key(elements[e]))
        same_order = {k: w for k, w in weights.items() if _class_sizes(g, k) == [need[e] for e in ordered]}
        fits = same_order or {k: w for k, w in weights.items() if _template_fits(g, k, need)}
        if fits:
            classes, basis = _draw(fits, rng)
            per_element = [[] for _ in elements]
            if same_order:  # the reference crystal's element classes in electronegativity order: the same roles
                for e, c in zip(ordered, classes):
                    per_element[e] = list(c)
            else:  # sizes fit, roles do not: a uniform matching of elements to classes of their size
                sizes = _class_sizes(g, (classes, basis))
                free = list(range(len(classes)))
                for e in rng.permutation(len(elements)):
                    options = [c for c in free if sizes[c] == need[e]]
                    c = options[int(rng.integers(len(options)))]
                    free.remove(c)
                    per_element[e] = list(classes[c])
        elif _assignments(g.number).count(need) == 0:
            raise SpaceGroupError(_no_fit(g, f"composition {_formula(zs)}", len(zs)))
        else:
            per_element = _assignments(g.number).sample(need, rng)
    orbits = sorted(((label, z) for z, labels in zip(elements, per_element) for label in labels),
                    key=lambda item: (_label_key(item[0]), item[1]))
    return WyckoffTemplate(g.number, tuple(x for x, _ in orbits), tuple(z for _, z in orbits), basis)


def _atom_count_choices(g: SpaceGroup, atom_counts, max_atoms) -> list[tuple[int, float]]:
    """(atom count, weight) that de novo samples may take in the group."""
    if atom_counts is None:
        raise ValueError("de novo templates need atom_counts (the model's atom-count probabilities)")
    probs = np.asarray(atom_counts, dtype=np.float64)
    top = len(probs) - 1 if max_atoms is None else min(len(probs) - 1, int(max_atoms))
    allowed = [k for k in range(1, top + 1) if probs[k] > 0]
    sizes = [(k, float(probs[k])) for k in allowed if _assignments(g.number).count((k,)) > 0]
    if not sizes:
        counts = ", ".join(map(str, allowed)) or "none"
        raise SpaceGroupError(_no_fit(g, f"any atom count the model draws ({counts})", None))
    return sizes


def _electronegativity_key(z: int) -> tuple[float, int]:
    """Order of elements in a template's classes: Pauling electronegativity (none: last), then Z."""
    from pymatgen.core import Element

    x = Element.from_Z(int(z)).X
    return (x if math.isfinite(x) else math.inf, int(z))


def _formula(zs: Sequence[int]) -> str:
    """``SrTiO3`` for the atomic numbers of one cell (pymatgen's order, amounts of 1 left out)."""
    import re

    from pymatgen.core import Composition, Element

    formula = Composition({Element.from_Z(int(z)).symbol: k for z, k in Counter(zs).items()}).formula
    return re.sub(r"(?<=[A-Za-z])1(?![0-9])", "", formula.replace(" ", ""))


def _no_fit(g: SpaceGroup, what: str, atoms: int | None) -> str:
    cell = g.cell()
    mults = sorted({cell.multiplicity(p.label) for p in g.positions})
    where = " in the primitive cell" if g.centring != "P" else ""
    n = f" ({atoms} atoms)" if atoms is not None else ""
    return (f"no Wyckoff assignment of {g.name} fits {what}{n}: its positions hold {', '.join(map(str, mults))} atoms "
            f"per orbit{where}, and a fixed point (no free parameter) holds one orbit at most; choose another "
            f"space group or composition (positions: {g.describe()})")


def wyckoff_templates(structures: Sequence["Structure | None"], group: int | str | None = None, *,
                      symprec: float = SYMPREC) -> Counter:
    """How often each Wyckoff template occurs among ``structures`` (spglib at ``symprec``).

    Returns ``Counter({(number, classes, basis): count})``: ``classes`` groups the crystal's orbits
    by element, in the order of the elements' electronegativity (e.g. ``(("1a",), ("1b",), ("1b",
    "2c"))`` for an A cation, a B cation and an anion on 1b and 2c), so that structure prediction
    can give each element of a new composition the role of the element of the same rank;
    ``basis`` is the crystal's cell in the group's conventional one (``x_conv = basis @ x``; origin
    shifts dropped). Only crystals in ``group`` if given; those
    that cannot be analysed, or whose cell is larger than the conventional one, are left out.
    """
    spglib = _spglib()
    number = None if group is None else _group_number(group)
    out: Counter = Counter()
    for s in structures:
        if s is None:
            continue
        species = [site.specie.Z for site in s]
        cell = (np.asarray(s.lattice.matrix), np.asarray(s.frac_coords), species)
        try:
            data = spglib.get_symmetry_dataset(cell, symprec=symprec)
            if data is None or (number is not None and data.number != number):
                continue
            hall = _settings()[int(data.number)][0]
            if data.hall_number != hall:
                data = spglib.get_symmetry_dataset(cell, symprec=symprec, hall_number=hall)
            g = space_group(int(data.number))
            basis = _basis_key(data.transformation_matrix)
            g.cell(basis)
        except Exception:  # noqa: BLE001 - spglib errors, or a cell the group cannot use (SpaceGroupError)
            continue
        by_letter = {p.label.lstrip("0123456789"): p.label for p in g.positions}
        orbits = {int(e): (by_letter[w], species[int(e)]) for e, w in zip(data.equivalent_atoms, data.wyckoffs)}
        by_element: dict[int, list[str]] = {}
        for label, z in orbits.values():
            by_element.setdefault(z, []).append(label)
        classes = tuple(_sorted_labels(by_element[z]) for z in sorted(by_element, key=_electronegativity_key))
        out[(g.number, classes, basis)] += 1
    return out


# -- the projection -------------------------------------------------------------------------------------


class SymmetryProjector:
    """Projects padded crystal states onto their templates' symmetric crystals (see the module docstring).

    Built once per batch from one :class:`WyckoffTemplate` per crystal; atoms are laid out orbit
    after orbit in template order, padded to the largest crystal.

    Shapes: frac (B, N, 3) fractional; lattice (B, 3, 3) rows a, b, c (any length unit);
    types (B, N) long; type logits (B, N, K).
    """

    def __init__(self, templates: Sequence[WyckoffTemplate], device: torch.device | str | None = None):
        if not templates:
            raise ValueError("SymmetryProjector needs at least one template")
        self.templates = list(templates)
        sizes = [t.num_atoms for t in templates]
        b, n = len(templates), max(sizes)
        self.num_atoms = torch.tensor(sizes, dtype=torch.long)
        dd = torch.float64
        rot = torch.eye(3, dtype=dd).repeat(b, n, 1, 1)
        trans = torch.zeros(b, n, 3, dtype=dd)
        orbit = torch.zeros(b, n, dtype=torch.long)
        kind = torch.zeros(b, n, dtype=torch.long)  # the element class of each atom (global index)
        origins, projectors, reps, metric, kinds = [], [], [], [], []  # kinds: (representative, crystal, rank)
        for i, tpl in enumerate(templates):
            cell = tpl.cell
            pg = torch.as_tensor(cell.point_group, dtype=dd)
            metric.append(torch.einsum("kai,kbj->ijab", pg, pg).reshape(9, 9) / pg.shape[0])
            classes = tpl.classes if tpl.classes is not None else tuple(range(len(tpl.labels)))
            if len(classes) != len(tpl.labels):
                raise ValueError(f"template {tpl}: {len(classes)} element classes for {len(tpl.labels)} orbits")
            first: dict[int, int] = {}
            j = 0
            for label, c in zip(tpl.labels, classes):
                x0, proj, rots, shifts = cell.orbits[cell.group.position(label).label]
                m = len(rots)
                rot[i, j:j + m] = torch.as_tensor(rots, dtype=dd)
                trans[i, j:j + m] = torch.as_tensor(shifts, dtype=dd)
                orbit[i, j:j + m] = len(origins)
                if c not in first:
                    first[c] = len(kinds)
                    kinds.append((i * n + j, i, len(first) - 1 if tpl.classes is not None else -1))
                kind[i, j:j + m] = first[c]
                reps.append(i * n + j)
                origins.append(torch.as_tensor(x0, dtype=dd))
                projectors.append(torch.as_tensor(proj, dtype=dd))
                j += m
        for i in range(b):  # padding: its own orbits and classes, identity
            for j in range(sizes[i], n):
                orbit[i, j], kind[i, j] = len(origins), len(kinds)
                kinds.append((i * n + j, i, -1))
                reps.append(i * n + j)
                origins.append(torch.zeros(3, dtype=dd))
                projectors.append(torch.eye(3, dtype=dd))
        self.kind = kind
        self.kind_rep, self.kind_crystal, self.kind_rank = (torch.tensor(col, dtype=torch.long) for col in zip(*kinds))
        self.kind_size = torch.bincount(kind.reshape(-1), minlength=len(kinds)).to(dd)
        self.mask = torch.arange(n).unsqueeze(0) < self.num_atoms.unsqueeze(1)
        self.rot, self.trans, self.orbit = rot, trans, orbit
        self.inv_rot = torch.linalg.inv(rot)
        self.origin, self.projector = torch.stack(origins), torch.stack(projectors)
        self.rep = torch.tensor(reps, dtype=torch.long)
        self.orbit_size = torch.bincount(orbit.reshape(-1), minlength=len(origins)).to(dd)
        self.metric_average = torch.stack(metric)  # (B, 9, 9): vec(G) -> vec(mean R^T G R)
        if device is not None:
            self.to(device)

    def to(self, device) -> "SymmetryProjector":
        for name in ("num_atoms", "mask", "rot", "trans", "orbit", "inv_rot", "origin", "projector", "rep",
                     "orbit_size", "metric_average", "kind", "kind_rep", "kind_crystal", "kind_rank", "kind_size"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def _nearest(self, y: torch.Tensor, orbit: torch.Tensor | None = None) -> torch.Tensor:
        """The nearest point of each orbit's subspace (modulo the lattice) to y (M, 3)."""
        x0 = self.origin if orbit is None else self.origin[orbit]
        proj = self.projector if orbit is None else self.projector[orbit]
        u = y - x0
        shifts = torch.stack(torch.meshgrid(*[torch.arange(-1, 2, device=y.device, dtype=y.dtype)] * 3,
                                            indexing="ij"), -1).reshape(-1, 3)
        r = (u - torch.round(u)).unsqueeze(1) - shifts  # (M, 27, 3)
        res = r - torch.einsum("mij,mkj->mki", proj, r)
        best = res.norm(dim=-1).argmin(1)
        return y - res[torch.arange(len(y), device=y.device), best]

    def frac(self, frac: torch.Tensor) -> torch.Tensor:
        """Coordinates on the templates' Wyckoff positions, wrapped to [0, 1); padding unchanged."""
        b, n, _ = frac.shape
        x = frac.double()
        back = torch.einsum("bnij,bnj->bni", self.inv_rot, x - self.trans).reshape(b * n, 3)
        orbit = self.orbit.reshape(-1)
        on = self._nearest(back, orbit)
        ref = on[self.rep][orbit]
        d = on - ref
        d = d - torch.floor(d + 0.5)
        mean = torch.zeros(len(self.rep), 3, dtype=x.dtype, device=x.device).index_add_(0, orbit, d)
        centre = self._nearest(on[self.rep] + mean / self.orbit_size.unsqueeze(1))
        out = torch.einsum("bnij,bnj->bni", self.rot, centre[orbit].reshape(b, n, 3)) + self.trans
        out = torch.remainder(out, 1.0)
        out = torch.where(out >= 1.0, torch.zeros_like(out), out)
        return torch.where(self.mask.unsqueeze(-1), out, x).to(frac.dtype)

    def lattice(self, lattice: torch.Tensor) -> torch.Tensor:
        """The lattice of the crystal system nearest in metric, same orientation: L' = G'^(1/2) G^(-1/2) L."""
        L = lattice.double()
        gram = L @ L.transpose(-1, -2)
        target = (self.metric_average @ gram.reshape(-1, 9, 1)).reshape(-1, 3, 3)
        target = 0.5 * (target + target.transpose(-1, -2))
        out = _sqrtm(target) @ _sqrtm(gram, inverse=True) @ L
        return out.to(lattice.dtype)

    def types(self, types: torch.Tensor) -> torch.Tensor:
        """Each element class's (orbit's) representative type on all its atoms."""
        flat = types.reshape(-1)
        return flat[self.kind_rep][self.kind.reshape(-1)].reshape(types.shape)

    def type_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Log-probabilities averaged over each element class (one distribution per class; a class
        is an orbit where the template has no classes). Shape (B, N, K)."""
        b, n, k = logits.shape
        logp = torch.log_softmax(logits.double(), -1).reshape(b * n, k)
        kind = self.kind.reshape(-1)
        total = torch.zeros(len(self.kind_rep), k, dtype=logp.dtype, device=logp.device).index_add_(
            0, kind, torch.nan_to_num(logp, neginf=-1e30))
        mean = (total / self.kind_size.unsqueeze(1))[kind]
        mean = torch.where(torch.isneginf(logp), logp, mean)
        return mean.reshape(b, n, k).to(logits.dtype)

    def distinct(self, types: torch.Tensor, logits: torch.Tensor, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        """Types with different elements on different classes of a template that has classes: class by
        class, a type already taken by an earlier class of the crystal is redrawn from the class's
        ``logits`` (B, N, K) without the taken ones (left as it is if nothing else is allowed)."""
        ranked = self.kind_rank >= 0
        if not bool(ranked.any()):
            return types
        k = logits.shape[-1]
        current = types.reshape(-1)[self.kind_rep].clone()
        probs = torch.softmax(logits.reshape(-1, k)[self.kind_rep].double(), -1)
        taken = torch.zeros(types.shape[0], k, dtype=torch.bool, device=types.device)
        for r in range(int(self.kind_rank.max()) + 1):
            now = torch.nonzero(self.kind_rank == r).reshape(-1)
            crystal = self.kind_crystal[now]
            clash = taken[crystal, current[now]]
            if bool(clash.any()):
                rows = now[clash]
                p = probs[rows].masked_fill(taken[self.kind_crystal[rows]], 0.0)
                ok = p.sum(-1) > 0
                if bool(ok.any()):
                    redrawn = torch.multinomial(p[ok], 1, generator=generator).reshape(-1)
                    current[rows[ok]] = redrawn
            taken[crystal, current[now]] = True
        flat = types.reshape(-1).clone()
        flat[self.kind_rep] = current
        return self.types(flat.reshape(types.shape))

    def __call__(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Project a crystal state {lattice, frac, types} (fields it lacks are left out)."""
        out = dict(state)
        if "frac" in out:
            out["frac"] = self.frac(out["frac"])
        if "lattice" in out:
            out["lattice"] = self.lattice(out["lattice"])
        if "types" in out:
            out["types"] = self.types(out["types"])
        return out


def _sqrtm(m: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """Square root (or its inverse) of symmetric positive semi-definite matrices (..., 3, 3)."""
    w, v = torch.linalg.eigh(m)
    scale = torch.finfo(m.dtype).eps * w.abs().amax(-1, keepdim=True).clamp_min(1e-300)
    w = w.clamp_min(scale)
    w = w.rsqrt() if inverse else w.sqrt()
    return (v * w.unsqueeze(-2)) @ v.transpose(-1, -2)


@torch.no_grad()
def sample_in_space_groups(net, proc: CrystalProcesses, projector: SymmetryProjector, *,
                           types: torch.Tensor | None = None, steps: int = 200, corrector_steps: int = 1,
                           step_lr: float = 1e-5, allowed_types: torch.Tensor | None = None,
                           generator: torch.Generator | None = None, cond: torch.Tensor | None = None,
                           cond_mask: torch.Tensor | None = None, guidance: float = 1.0,
                           renoise: bool = True) -> dict[str, torch.Tensor]:
    """DiffCSP's predictor-corrector sampling (:func:`~sciogen.crystals.diffcsp.sample_crystals`) with
    every state projected onto the templates' symmetric crystals.

    The network only ever sees projected crystals; the state is projected after every predictor
    step (the corrector moves coordinates only, and their projection is linear, so projecting the
    next network input is the same as projecting after the corrector). De novo, type log-probabilities
    are averaged over each element class (an orbit, or a class of the template) and a type that an
    earlier class of the crystal holds is redrawn without it. ``renoise``: the network's input
    coordinates get Gaussian noise of the step's width across the constraints (the projection
    removes it from the state again), so that the network sees inputs like those it was trained
    on. ``types`` (B, N): CSP, laid out as the projector's orbits (-1 on padding). Other arguments
    as :func:`~sciogen.crystals.diffcsp.sample_crystals`.

    Returns: dict(types (B, N) long, -1 on padding; frac (B, N, 3); lattice (B, 3, 3) Å).
    """
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    dev = next(net.parameters()).device
    projector = projector.to(dev)
    num_atoms, mask = projector.num_atoms, projector.mask
    b, n = mask.shape
    x_T = {"lattice": proc.lattice.prior((b, 3, 3), generator=generator, device=dev),
           "frac": proc.frac.prior((b, n, 3), generator=generator, device=dev)}
    fixed = {}
    if types is not None:
        types = types.to(dev)[:, :n]
        if types.shape != (b, n) or bool(((types >= 0) != mask).any()):
            raise ValueError("types must hold each template's atoms, orbit after orbit, and -1 on padding")
        fixed["types"] = x_T["types"] = types.clamp_min(0)
        if bool((projector.types(fixed["types"]) != fixed["types"])[mask].any()):
            raise ValueError("types differ within an orbit of the template")
    else:
        x_T["types"] = proc.types.prior((b, n), generator=generator, device=dev)
    x_T = projector(x_T)
    if cond is not None:
        net = _guided(net, cond.to(dev), cond_mask.to(dev), float(guidance))
    network = _network(net, mask)
    allowed = None if allowed_types is None else allowed_types.to(dev)

    def model(x, t):
        x = projector(x)
        if renoise and "frac" not in fixed:
            sigma = proc.frac.sigma(t["frac"]).to(x["frac"].dtype).view(-1, 1, 1)
            z = sigma * torch.randn(x["frac"].shape, generator=generator, device=dev, dtype=x["frac"].dtype)
            along = projector.frac(x["frac"] + z) - x["frac"]
            x = {**x, "frac": torch.remainder(x["frac"] + z - (along - torch.floor(along + 0.5)), 1.0)}
        return network(x, t)

    last: dict[str, torch.Tensor] = {}

    def checked(pred, i, t, corrector):
        drawn = not fixed and not corrector
        for key in ("lattice", "frac") + (("types",) if drawn else ()):
            value = pred[key] if key == "lattice" else pred[key][mask]
            if not math.isfinite(float(value.sum())):
                raise _nonfinite(f"network output ({key})", i, t, f" (corrector {corrector})" if corrector else "")
        if drawn:
            logits = pred["types"] if allowed is None else pred["types"].masked_fill(~allowed, float("-inf"))
            last["types"] = projector.type_logits(logits)
            pred = {**pred, "types": last["types"]}
        return pred

    def project(x):
        x = projector(x)
        if not fixed and "types" in last:
            x["types"] = projector.distinct(x["types"], last["types"], generator)
        return x

    out = proc.sample(model, x_T, int(steps), generator, fixed, corrector_steps=int(corrector_steps),
                      step_lr=step_lr, masks={"frac": mask}, on_prediction=checked, project=project)
    out_types = torch.where(mask, out["types"], torch.full_like(out["types"], -1))
    lattice = out["lattice"]
    # a left-handed cell holds the mirror image, whose group is the enantiomorph (P4_1 <-> P4_3): -L has the same
    # metric and operations and is right-handed
    lattice = torch.where(torch.linalg.det(lattice.double()).view(-1, 1, 1) < 0, -lattice, lattice)
    return {"types": out_types, "frac": out["frac"], "lattice": proc.denormalise_lattice(lattice, num_atoms)}


# -- checks -----------------------------------------------------------------------------------------------


def detect_space_group(structure: "Structure | None", symprec: float = SYMPREC) -> tuple[int, str] | None:
    """(number, symbol) of pymatgen's ``SpacegroupAnalyzer`` at ``symprec`` (Å); None for a missing
    sample or a cell spglib cannot analyse."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    if structure is None:
        return None
    try:
        sga = SpacegroupAnalyzer(structure, symprec=symprec)
        return int(sga.get_space_group_number()), str(sga.get_space_group_symbol())
    except Exception:  # noqa: BLE001 - spglib fails on overlapping atoms and degenerate cells
        return None


def space_group_rate(structures: Sequence["Structure | None"], number: int | str, *,
                     symprec: float = SYMPREC) -> float:
    """Fraction of ``structures`` whose space group (SpacegroupAnalyzer at ``symprec``) is ``number``;
    a missing or unanalysable sample counts as a miss, and so does a supergroup."""
    target = _group_number(number)
    if len(structures) == 0:
        raise ValueError("space_group_rate: no structures given")
    hits = sum(1 for s in structures if (found := detect_space_group(s, symprec)) is not None and found[0] == target)
    return hits / len(structures)


def space_group_distribution(structures: Sequence["Structure | None"], *, symprec: float = SYMPREC) -> dict[int, float]:
    """{space-group number: fraction} of the structures that can be analysed (SpacegroupAnalyzer at
    ``symprec``), sorted by number."""
    found = [x[0] for s in structures if (x := detect_space_group(s, symprec)) is not None]
    if not found:
        raise ValueError(f"space_group_distribution: none of the {len(structures)} structures could be analysed")
    counts = Counter(found)
    return {k: counts[k] / len(found) for k in sorted(counts)}


def space_group_distance(generated: Mapping[int, float] | Sequence["Structure | None"],
                         reference: Mapping[int, float] | Sequence["Structure | None"], *,
                         symprec: float = SYMPREC) -> float:
    """Total-variation distance between two space-group distributions, ``0.5 sum |p - q|`` in [0, 1]
    (0: the same frequencies; 1: no group in common). Each side is a distribution from
    :func:`space_group_distribution` or the structures themselves."""
    p, q = (x if isinstance(x, Mapping) else space_group_distribution(x, symprec=symprec)
            for x in (generated, reference))
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))
