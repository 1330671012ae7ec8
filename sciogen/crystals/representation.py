"""pymatgen ``Structure`` <-> tensors, as CDVAE / DiffCSP build them.

A crystal of N atoms is three fields:

- ``types``: (N,) indices into the model's element vocabulary (:class:`CrystalSpec`);
- ``frac``: (N, 3) fractional coordinates wrapped to [0, 1);
- ``lattice``: (3, 3) lattice matrix in Å whose *rows* are the lattice vectors a, b, c
  (pymatgen's convention), so Cartesian positions are ``frac @ lattice``.

Structures are first brought to CDVAE's canonical form (``build_crystal`` of CDVAE's
``data_utils``): the Niggli-reduced cell, then the lattice rebuilt from its lengths and
angles (a along x, b in the xy plane), the fractional coordinates kept. Batches are dense
and padded to the largest crystal, with ``num_atoms`` giving each one's size.

Bad input raises a :class:`CrystalError` subclass naming the structure: partial occupancy
(:class:`PartialOccupancyError`), an element outside the vocabulary
(:class:`UnknownElementError`), too many atoms (:class:`CrystalTooLargeError`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from pymatgen.core import Structure

__all__ = [
    "CrystalError", "CifParseError", "PartialOccupancyError", "UnknownElementError", "CrystalTooLargeError",
    "CrystalSpec", "CrystalTensors", "canonical_structure", "to_tensors", "from_tensors", "lattice_parameters",
    "parse_composition", "check_ordered",
]

#: atomic numbers 1 .. MAX_Z form the widest vocabulary (DiffCSP's MAX_ATOMIC_NUM = 100)
MAX_Z = 100


class CrystalError(ValueError):
    """A structure that cannot be represented; the message names it."""


class CifParseError(CrystalError):
    """A CIF that pymatgen cannot parse into a structure."""


class PartialOccupancyError(CrystalError):
    """A disordered site (occupancy < 1 or several species); the models need ordered crystals."""


class UnknownElementError(CrystalError):
    """An element outside the model's vocabulary."""


class CrystalTooLargeError(CrystalError):
    """More atoms in the cell than the model supports."""


def _element_symbol(z: int) -> str:
    from pymatgen.core import Element

    return Element.from_Z(int(z)).symbol


@dataclass(frozen=True)
class CrystalSpec:
    """The element vocabulary and size limit of a model.

    Attributes:
        elements: atomic numbers, in vocabulary order (index i <-> ``elements[i]``).
        max_atoms: the most atoms per cell the model supports.
    """

    elements: tuple[int, ...]
    max_atoms: int

    @classmethod
    def all_elements(cls, max_atoms: int = 20) -> "CrystalSpec":
        """H .. Fm (Z = 1 .. 100), DiffCSP's vocabulary."""
        return cls(tuple(range(1, MAX_Z + 1)), max_atoms)

    @classmethod
    def infer(cls, structures: Iterable["Structure"], max_atoms: int | None = None) -> "CrystalSpec":
        """The elements present in ``structures`` (sorted by Z) and their largest cell."""
        zs, most = set(), 0
        for s in structures:
            zs.update(site.specie.Z for site in s)
            most = max(most, len(s))
        return cls(tuple(sorted(zs)), int(max_atoms or most))

    @property
    def num_types(self) -> int:
        return len(self.elements)

    @property
    def symbols(self) -> list[str]:
        return [_element_symbol(z) for z in self.elements]

    def index(self, z: int, name: str = "structure") -> int:
        """Vocabulary index of atomic number ``z``."""
        try:
            return self._lookup[int(z)]
        except KeyError:
            raise UnknownElementError(
                f"{name}: element {_element_symbol(z)} (Z={z}) is not in the model's vocabulary "
                f"({', '.join(self.symbols)})"
            ) from None

    @property
    def _lookup(self) -> dict[int, int]:
        return {z: i for i, z in enumerate(self.elements)}

    def to_dict(self) -> dict:
        return {"elements": list(self.elements), "max_atoms": self.max_atoms}

    @classmethod
    def from_dict(cls, d) -> "CrystalSpec":
        return cls(tuple(int(z) for z in d["elements"]), int(d["max_atoms"]))


def check_ordered(structure: "Structure", name: str = "structure") -> None:
    """Raise :class:`PartialOccupancyError` unless every site holds one species with occupancy 1."""
    if not structure.is_ordered:
        bad = next(i for i, site in enumerate(structure) if not site.is_ordered)
        raise PartialOccupancyError(
            f"{name}: site {bad} is disordered ({structure[bad].species}); only ordered crystals "
            "(one species with occupancy 1 per site) can be represented"
        )


def canonical_structure(structure: "Structure", niggli: bool = True, name: str = "structure") -> "Structure":
    """CDVAE's canonical form: Niggli reduction, then the lattice from lengths and angles.

    Fractional coordinates are kept (and wrapped to [0, 1)); the orientation becomes
    pymatgen's standard one for ``Lattice.from_parameters``.
    """
    from pymatgen.core import Lattice, Structure

    check_ordered(structure, name)
    if niggli:
        structure = structure.get_reduced_structure()
    lattice = Lattice.from_parameters(*structure.lattice.parameters)
    frac = np.mod(structure.frac_coords, 1.0)
    return Structure(lattice=lattice, species=structure.species, coords=frac, coords_are_cartesian=False)


def lattice_parameters(lattice: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lengths (Å) and angles (degrees, alpha = angle(b, c), beta = (a, c), gamma = (a, b)).

    Shapes: lattice (..., 3, 3), rows a, b, c -> lengths (..., 3), angles (..., 3).
    """
    lengths = lattice.norm(dim=-1)
    a, b, c = lattice.unbind(-2)

    def angle(u, v):
        cos = (u * v).sum(-1) / (u.norm(dim=-1) * v.norm(dim=-1)).clamp_min(1e-12)
        return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))

    return lengths, torch.stack([angle(b, c), angle(a, c), angle(a, b)], -1)


@dataclass
class CrystalTensors:
    """A padded batch of crystals.

    Shapes: types (M, N) long (-1 on padding), frac (M, N, 3) in [0, 1), lattice (M, 3, 3)
    in Å (rows = lattice vectors), num_atoms (M,) long; ``mask`` (M, N) is True on atoms.
    """

    types: torch.Tensor
    frac: torch.Tensor
    lattice: torch.Tensor
    num_atoms: torch.Tensor

    def __len__(self) -> int:
        return self.types.shape[0]

    @property
    def mask(self) -> torch.Tensor:
        return self.types >= 0

    def __getitem__(self, i) -> dict[str, torch.Tensor]:
        return {"types": self.types[i], "frac": self.frac[i], "lattice": self.lattice[i], "num_atoms": self.num_atoms[i]}

    def to(self, device) -> "CrystalTensors":
        return CrystalTensors(*(x.to(device) for x in (self.types, self.frac, self.lattice, self.num_atoms)))


def to_tensors(structures: Sequence["Structure"], spec: CrystalSpec, *, canonical: bool = True,
               niggli: bool = True, names: Sequence[str] | None = None) -> CrystalTensors:
    """Pack structures into a :class:`CrystalTensors` batch padded to ``spec.max_atoms``.

    ``canonical`` applies :func:`canonical_structure` first (as CDVAE's loaders do);
    ``names`` label the structures in error messages (default ``structure <i>``).
    """
    m, n = len(structures), spec.max_atoms
    types = torch.full((m, n), -1, dtype=torch.long)
    frac = torch.zeros(m, n, 3, dtype=torch.float64)
    lattice = torch.zeros(m, 3, 3, dtype=torch.float64)
    num_atoms = torch.zeros(m, dtype=torch.long)
    for i, s in enumerate(structures):
        name = names[i] if names is not None else f"structure {i}"
        check_ordered(s, name)
        if len(s) > n:
            raise CrystalTooLargeError(f"{name}: {len(s)} atoms, the model supports at most {n}")
        if canonical:
            s = canonical_structure(s, niggli=niggli, name=name)
        k = len(s)
        types[i, :k] = torch.tensor([spec.index(site.specie.Z, name) for site in s])
        frac[i, :k] = torch.from_numpy(np.mod(np.array(s.frac_coords, dtype=np.float64), 1.0))
        lattice[i] = torch.from_numpy(np.array(s.lattice.matrix, dtype=np.float64))
        num_atoms[i] = k
    frac = torch.where(frac >= 1.0, torch.zeros_like(frac), frac)
    return CrystalTensors(types, frac.float(), lattice.float(), num_atoms)


def from_tensors(types: torch.Tensor, frac: torch.Tensor, lattice: torch.Tensor, num_atoms: torch.Tensor,
                 spec: CrystalSpec) -> list["Structure | None"]:
    """Structures from a padded batch (the inverse of :func:`to_tensors`).

    A crystal whose lattice is not finite or is degenerate (|det| < 1e-6 Å^3) becomes None.
    """
    from pymatgen.core import Lattice, Structure

    out: list[Structure | None] = []
    types, frac = types.cpu(), frac.double().cpu()
    lattice = lattice.double().cpu()
    for i in range(types.shape[0]):
        k = int(num_atoms[i])
        mat = lattice[i].numpy()
        if not np.isfinite(mat).all() or abs(np.linalg.det(mat)) < 1e-6 or not torch.isfinite(frac[i, :k]).all():
            out.append(None)
            continue
        species = [spec.elements[int(j)] for j in types[i, :k]]
        out.append(Structure(Lattice(mat), species, frac[i, :k].numpy() % 1.0, coords_are_cartesian=False))
    return out


def parse_composition(composition, spec: CrystalSpec | None = None) -> list[int]:
    """The atomic numbers of one cell of ``composition`` (e.g. ``"SrTiO3"``, a pymatgen
    ``Composition`` or a dict), sorted by Z; positive integer amounts of real elements required.

    Raises :class:`CrystalError` naming the composition and the fault (not a formula, an
    unknown element symbol, a zero, negative or fractional amount, no atoms),
    :class:`UnknownElementError` for an element outside ``spec`` and
    :class:`CrystalTooLargeError` for more than ``spec.max_atoms`` atoms.
    """
    import re

    from pymatgen.core import Composition, Element

    if isinstance(composition, str):
        if not composition.strip():
            raise CrystalError("the composition is empty; give one cell's formula, e.g. 'SrTiO3'")
        for symbol, amount in re.findall(r"([A-Z][a-z]*)\s*(-?\d*\.?\d+)?", composition):
            if symbol not in _SYMBOLS:
                raise CrystalError(f"composition {composition!r}: {symbol!r} is not a chemical element symbol")
            if amount and float(amount) <= 0:
                raise CrystalError(f"composition {composition!r}: {symbol} has amount {amount}; amounts must be "
                                   "positive integers (atoms in one cell)")
    try:
        comp = composition if isinstance(composition, Composition) else Composition(composition, strict=True)
    except Exception as exc:  # pymatgen raises several types for bad formulas
        raise CrystalError(f"cannot parse the composition {composition!r}: {exc}; give one cell's formula, "
                           "e.g. 'SrTiO3'") from None
    zs: list[int] = []
    for el, amount in sorted(comp.items(), key=lambda kv: getattr(kv[0], "Z", 0)):
        if not isinstance(getattr(el, "element", el), Element):
            raise CrystalError(f"composition {composition!r}: {el} is not a chemical element")
        if abs(amount - round(amount)) > 1e-6 or round(amount) < 1:
            raise CrystalError(f"composition {composition!r}: {el} has a non-integer amount {amount}; give one cell, e.g. 'SrTiO3'")
        if spec is not None:
            spec.index(el.Z, f"composition {composition!r}")
        zs += [el.Z] * int(round(amount))
    if not zs:
        raise CrystalError(f"composition {composition!r} holds no atoms; give one cell's formula, e.g. 'SrTiO3'")
    if spec is not None and len(zs) > spec.max_atoms:
        raise CrystalTooLargeError(f"composition {composition!r} has {len(zs)} atoms, the model supports at most {spec.max_atoms}")
    return zs


def _element_symbols() -> frozenset[str]:
    from pymatgen.core import Element

    return frozenset(e.symbol for e in Element) | {"D", "T"}


class _LazySymbols:
    """The element symbols pymatgen knows, built on first use (pymatgen imports lazily)."""

    _symbols: frozenset[str] | None = None

    def __contains__(self, symbol: str) -> bool:
        if self._symbols is None:
            type(self)._symbols = _element_symbols()
        return symbol in self._symbols


_SYMBOLS = _LazySymbols()
