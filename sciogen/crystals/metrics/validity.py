"""Validity of generated crystals as CDVAE and DiffCSP compute it.

A crystal is constructed (finite lattice and coordinates, pymatgen builds it, volume
>= 0.1 Å^3), structurally valid (every interatomic distance >= 0.5 Å) and compositionally
valid (SMACT charge neutrality and the Pauling test, with the oxidation-state lists the
papers used). How each step follows the anchors' code: ``domains/crystals/README.md``.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import smact
from pymatgen.core import Composition, Element, Lattice, Structure

from sciogen.config import check_choice

__all__ = ["CrystalRecord", "Assessment", "assess", "structure_validity", "smact_validity", "validity",
           "OxidationStates", "MIN_VOLUME"]

OxidationStates = Literal["smact14", "icsd24", "icsd16", "pymatgen_sp"]

#: SMACT Element attribute behind each oxidation-state set name (SMACT >= 3).
_OX_ATTR = {
    "smact14": "oxidation_states_smact14",  # Element.oxidation_states in SMACT < 3 (the papers)
    "icsd24": "oxidation_states_icsd24",  # Element.oxidation_states in SMACT >= 3
    "icsd16": "oxidation_states_icsd16",
    "pymatgen_sp": "oxidation_states_sp",
}
MIN_VOLUME = 0.1  # Å^3, CDVAE's "unrealistically_small_lattice"


# -- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CrystalRecord:
    """Raw generator output that may not form a crystal (CDVAE's crystal array dict).

    Parameters
    ----------
    atom_types : sequence of int or str, length N
        Atomic numbers or element symbols.
    frac_coords : array_like, shape (N, 3)
        Fractional coordinates.
    lattice : array_like, shape (6,) or (3, 3)
        Lengths a, b, c (Å) then angles alpha, beta, gamma (degrees), or the lattice
        vectors as rows (Å).

    Shapes are checked here; NaN, negative lengths, degenerate angles or zero volume are
    not errors: such a record is simply structurally invalid.
    """

    atom_types: Sequence[int | str]
    frac_coords: Any
    lattice: Any
    _frac: np.ndarray = field(init=False, repr=False)
    _lat: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        frac = np.asarray(self.frac_coords, dtype=float)
        frac = frac.reshape(-1, 3) if frac.size else np.zeros((0, 3))
        lat = np.asarray(self.lattice, dtype=float)
        if lat.shape not in ((6,), (3, 3)):
            raise ValueError(
                f"lattice must have shape (6,) (lengths Å, angles degrees) or (3, 3) (rows, Å); got {lat.shape}"
            )
        if len(frac) != len(self.atom_types) or len(frac) == 0:
            raise ValueError(
                f"frac_coords {np.shape(self.frac_coords)} and atom_types ({len(self.atom_types)}) "
                "must describe the same N >= 1 atoms"
            )
        object.__setattr__(self, "_frac", frac)
        object.__setattr__(self, "_lat", lat)


@dataclass(frozen=True)
class Assessment:
    """One crystal as the anchors see it (CDVAE ``Crystal`` without fingerprints).

    ``structure`` is None when the crystal could not be constructed (``reason`` says why);
    ``elements`` are ordered by atomic number and ``counts`` divided by their gcd.
    """

    structure: Structure | None
    elements: tuple[str, ...]
    counts: tuple[int, ...]
    structural: bool
    compositional: bool
    reason: str | None = None

    @property
    def valid(self) -> bool:
        return self.structural and self.compositional


def _symbol(atom: Any) -> str:
    if isinstance(atom, (int, np.integer)):
        return Element.from_Z(int(atom)).symbol
    return Element(str(atom)).symbol


def _reduce(symbols: Sequence[str], amounts: Sequence[float]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Merge, order by atomic number and divide by the gcd (CDVAE ``get_composition``)."""
    total: Counter = Counter()
    for s, a in zip(symbols, amounts):
        if not math.isfinite(a) or a <= 0 or abs(a - round(a)) > 1e-6:
            raise ValueError(f"element {s} has count {a}; counts must be positive integers")
        total[_symbol(s)] += int(round(a))
    if not total:
        raise ValueError("a composition needs at least one atom")
    elements = tuple(sorted(total, key=lambda s: Element(s).Z))
    counts = np.array([total[e] for e in elements])
    return elements, tuple(int(c) for c in counts // np.gcd.reduce(counts))


def _composition(crystal: Any) -> tuple[tuple[str, ...], tuple[int, ...]]:
    if isinstance(crystal, Structure):
        comp = crystal.composition.element_composition
        return _reduce([e.symbol for e in comp], list(comp.values()))
    if isinstance(crystal, CrystalRecord):
        return _reduce([_symbol(a) for a in crystal.atom_types], [1.0] * len(crystal.atom_types))
    if isinstance(crystal, Composition):
        comp = crystal.element_composition
        return _reduce([e.symbol for e in comp], list(comp.values()))
    if isinstance(crystal, tuple) and len(crystal) == 2:
        elements, counts = crystal
        if len(elements) != len(counts):
            raise ValueError(f"{len(elements)} elements but {len(counts)} counts")
        return _reduce([_symbol(e) for e in elements], [float(c) for c in counts])
    raise ValueError(
        f"cannot read a composition from {type(crystal).__name__}; pass a Structure, CrystalRecord, "
        "Composition or (elements, counts)"
    )


def _construct(item: Structure | CrystalRecord) -> tuple[Structure | None, str | None]:
    """CDVAE/DiffCSP ``Crystal.get_structure``: the structure, or None and the reason."""
    if isinstance(item, Structure):
        if not (np.isfinite(item.lattice.matrix).all() and np.isfinite(item.frac_coords).all()):
            return None, "nan_value"
        structure = item
    else:
        lat, frac = item._lat, item._frac
        if not (np.isfinite(lat).all() and np.isfinite(frac).all()):
            return None, "nan_value"
        if lat.shape == (6,) and lat[:3].min() < 0:
            return None, "non_positive_lattice"
        try:
            with np.errstate(invalid="ignore", divide="ignore"):  # degenerate angles give NaN, checked next
                lattice = Lattice.from_parameters(*lat) if lat.shape == (6,) else Lattice(lat)
            if not np.isfinite(lattice.matrix).all():
                return None, "nan_value"
            structure = Structure(lattice, [_symbol(a) for a in item.atom_types], frac, coords_are_cartesian=False)
        except Exception:
            return None, "construction_raises_exception"
    volume = structure.volume
    if not math.isfinite(volume) or volume < MIN_VOLUME:
        return None, "unrealistically_small_lattice"
    return structure, None


def _distances_ok(structure: Structure, cutoff: float) -> bool:
    """Off-diagonal minimum-image distances >= cutoff (CDVAE pads the diagonal by cutoff + 10)."""
    if len(structure) < 2:
        return True
    try:
        d = structure.distance_matrix
    except Exception:  # a lattice pymatgen cannot invert
        return False
    off = d[~np.eye(len(d), dtype=bool)]
    return bool(np.isfinite(off).all() and off.min() >= cutoff)


# -- validity ----------------------------------------------------------------------------------


def structure_validity(structure: Structure | CrystalRecord, cutoff: float = 0.5) -> bool:
    """CDVAE ``structure_validity``: every interatomic distance >= ``cutoff`` and volume >= 0.1 Å^3.

    Parameters
    ----------
    structure : Structure or CrystalRecord
        The crystal; one that cannot be constructed (NaN, zero volume, pymatgen error)
        is invalid.
    cutoff : float
        Minimum distance between distinct sites, Å (periodic minimum image, as pymatgen's
        ``Structure.distance_matrix``; a site's distance to its own images is not checked).

    Returns:
    -------
    bool
    """
    built, _ = _construct(structure)
    return built is not None and _distances_ok(built, cutoff)


@functools.lru_cache(maxsize=None)
def _smact_element(symbol: str):
    try:
        return smact.Element(symbol)
    except (KeyError, NameError):
        return None


def _states(element, name: str) -> tuple[int, ...]:
    """The element's oxidation states in set ``name``; () when it has none or is unknown."""
    if element is None:
        return ()
    attr = _OX_ATTR[name]
    if not hasattr(element, attr):  # SMACT < 2.8: only Element.oxidation_states (= smact14)
        if name != "smact14":
            raise ValueError(f"oxidation_states={name!r} needs SMACT >= 3 (installed: {smact.__version__})")
        attr = "oxidation_states"
    return tuple(getattr(element, attr) or ())


def _pauling_ok(ox_states: Sequence[int], enegs: Sequence[float | None]) -> bool:
    """SMACT <= 2.5 ``eneg_states_test`` as the anchors call it (TypeError counts as a pass).

    Cations must be less electronegative than anions, pair by pair in atomic-number order.
    Comparing an unknown (None) electronegativity raised ``TypeError`` in Python 3, which
    the anchors catch and read as "no electronegativity data, assume it is okay"; a pair
    with an unknown value whose charges do not have opposite signs fails the test.
    """
    for (q1, e1), (q2, e2) in itertools.combinations(zip(ox_states, enegs), 2):
        if q1 > 0 and q2 < 0:
            if e1 is None or e2 is None:
                return True
            if e1 >= e2:
                return False
        elif q1 < 0 and q2 > 0:
            if e1 is None or e2 is None:
                return True
            if e1 <= e2:
                return False
        elif e1 is None or e2 is None:
            return False
    return True


@functools.lru_cache(maxsize=1 << 16)
def _smact_valid(
    elements: tuple[str, ...],
    counts: tuple[int, ...],
    use_pauling_test: bool,
    include_alloys: bool,
    oxidation_states: str,
    max_oxidation_combinations: int | None,
) -> bool:
    if len(set(elements)) == 1:
        return True
    if include_alloys and all(e in smact.metals for e in elements):
        return True
    smact_elements = [_smact_element(e) for e in elements]
    enegs = [None if e is None else e.pauling_eneg for e in smact_elements]
    # An element without a list (noble gases in smact14) has no states: no combination.
    states = [_states(e, oxidation_states) for e in smact_elements]
    if max_oxidation_combinations is not None and math.prod(len(s) for s in states) > max_oxidation_combinations:
        return False
    for ox in itertools.product(*states):
        if sum(q * n for q, n in zip(ox, counts)) != 0:
            continue
        if not use_pauling_test or _pauling_ok(ox, enegs):
            return True
    return False


def smact_validity(
    crystal: Structure | CrystalRecord | Composition | tuple[Sequence[int | str], Sequence[int]],
    use_pauling_test: bool = True,
    include_alloys: bool = True,
    oxidation_states: OxidationStates = "smact14",
    max_oxidation_combinations: int | None = 10**7,
) -> bool:
    """CDVAE / DiffCSP ``smact_validity``: charge neutrality and the Pauling test.

    With counts n_i divided by their gcd and elements in atomic-number order, the
    composition is valid when it is a single element, or (``include_alloys``) all its
    elements are in ``smact.metals``, or some choice of oxidation states q_i from the set
    gives ``sum_i q_i n_i = 0`` and passes the Pauling test (:func:`_pauling_ok`).

    Parameters
    ----------
    crystal : Structure, CrystalRecord, Composition or (elements, counts)
        Elements as symbols or atomic numbers, counts as positive integers.
    use_pauling_test, include_alloys : bool
        As in the anchors (both True there).
    oxidation_states : {"smact14", "icsd24", "icsd16", "pymatgen_sp"}
        ``"smact14"`` is what ``Element.oxidation_states`` returned in the SMACT versions
        the papers used (< 3); ``"icsd24"`` is ``Element.oxidation_states`` in SMACT >= 3.
        The default changed between SMACT versions; the fractions differ.
    max_oxidation_combinations : int or None
        DiffCSP declares a composition invalid when the number of oxidation-state
        combinations exceeds this (1e7); None checks them all, as CDVAE.

    Returns:
    -------
    bool
    """
    check_choice("oxidation_states", oxidation_states, get_args(OxidationStates))
    elements, counts = _composition(crystal)
    return _smact_valid(
        elements, counts, bool(use_pauling_test), bool(include_alloys), oxidation_states, max_oxidation_combinations
    )


def assess(
    crystal: Structure | CrystalRecord | None,
    *,
    cutoff: float = 0.5,
    oxidation_states: OxidationStates = "smact14",
) -> Assessment:
    """Construct and check one crystal as CDVAE's ``Crystal`` does; never raises on bad numbers.

    ``None`` (a sample the generator failed to produce) is invalid in both senses.
    """
    if crystal is None:
        return Assessment(None, (), (), False, False, "missing")
    structure, reason = _construct(crystal)
    try:
        elements, counts = _composition(crystal)
        comp_ok = _smact_valid(elements, counts, True, True, oxidation_states, 10**7)
    except (ValueError, KeyError) as err:  # unknown element symbol, fractional occupancy
        elements, counts, comp_ok, reason = (), (), False, reason or f"composition: {err}"
    struct_ok = structure is not None and _distances_ok(structure, cutoff)
    return Assessment(structure, elements, counts, struct_ok, comp_ok, reason)


def _assess_all(
    items: Any, name: str, cutoff: float, oxidation_states: str, allow_none: bool = True
) -> list[Assessment]:
    """Assess every item; a wrong type raises ValueError naming ``name[i]``."""
    if isinstance(items, (Structure, CrystalRecord)) or not isinstance(items, Sequence):
        raise ValueError(f"{name} must be a list of Structures / CrystalRecords, got {type(items).__name__}")
    if len(items) == 0:
        raise ValueError(f"{name} is empty")
    out = []
    for i, item in enumerate(items):
        if not (isinstance(item, (Structure, CrystalRecord)) or (item is None and allow_none)):
            allowed = "a pymatgen Structure, a CrystalRecord" + (" or None" if allow_none else "")
            raise ValueError(f"{name}[{i}] is a {type(item).__name__}; expected {allowed}")
        out.append(assess(item, cutoff=cutoff, oxidation_states=oxidation_states))
    return out


def _fractions(checked: Sequence[Assessment]) -> dict[str, float]:
    n = len(checked)
    return {
        "structural": sum(a.structural for a in checked) / n,
        "compositional": sum(a.compositional for a in checked) / n,
        "overall": sum(a.valid for a in checked) / n,
    }


def validity(
    structures: Sequence[Structure | CrystalRecord | None],
    *,
    cutoff: float = 0.5,
    oxidation_states: OxidationStates = "smact14",
) -> dict[str, float]:
    """CDVAE ``GenEval.get_validity``: fractions of ALL crystals that are valid.

    Returns:
    -------
    dict
        ``structural``, ``compositional`` and ``overall`` (both), each in [0, 1].
    """
    check_choice("oxidation_states", oxidation_states, get_args(OxidationStates))
    checked = _assess_all(structures, "structures", cutoff, oxidation_states)
    return _fractions(checked)


def _constructed(checked: Sequence[Assessment], only_valid: bool) -> list[Structure]:
    return [a.structure for a in checked if a.structure is not None and (a.valid or not only_valid)]
