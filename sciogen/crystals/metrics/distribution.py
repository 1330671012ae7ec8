"""De novo generation scores: Wasserstein distances of density and element count (CDVAE
``GenEval``), uniqueness and novelty (pymatgen's ``StructureMatcher``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from pymatgen.core import Composition, Structure
from pymatgen.core.structure_matcher import StructureMatcher
from scipy.stats import wasserstein_distance

from .validity import CrystalRecord, OxidationStates, _assess_all, _constructed

__all__ = ["wasserstein_density", "wasserstein_num_elements", "uniqueness", "novelty"]


def _densities(structures: Sequence[Structure]) -> list[float]:
    return [float(s.density) for s in structures]  # g/cm^3


def _wdist(gen: Sequence[float], ref: Sequence[float]) -> float:
    if not ref:
        raise ValueError("the reference holds no constructible crystal")
    return float(wasserstein_distance(gen, ref)) if gen else math.nan


def wasserstein_density(
    generated: Sequence[Structure | CrystalRecord | None],
    reference: Sequence[Structure | CrystalRecord],
    *,
    only_valid: bool = True,
    cutoff: float = 0.5,
    oxidation_states: OxidationStates = "smact14",
) -> float:
    """CDVAE ``GenEval.get_density_wdist``: W1 distance between density distributions.

    Densities are pymatgen's ``Structure.density`` in g/cm^3. As CDVAE, the generated side
    holds only valid crystals (``only_valid``) and the reference side every reference
    crystal. CDVAE draws 1000 of the valid crystals at random first; here all are used
    (see ``n_samples`` in :func:`evaluate`). NaN when no generated crystal qualifies.
    """
    gen = _assess_all(generated, "generated", cutoff, oxidation_states)
    ref = _assess_all(reference, "reference", cutoff, oxidation_states, allow_none=False)
    return _wdist(_densities(_constructed(gen, only_valid)), _densities(_constructed(ref, False)))


def _num_elements(structures: Sequence[Structure]) -> list[int]:
    """Distinct species per crystal: CDVAE's ``len(set(structure.species))`` for ordered ones."""
    return [len(s.composition) for s in structures]


def wasserstein_num_elements(
    generated: Sequence[Structure | CrystalRecord | None],
    reference: Sequence[Structure | CrystalRecord],
    *,
    only_valid: bool = True,
    cutoff: float = 0.5,
    oxidation_states: OxidationStates = "smact14",
) -> float:
    """CDVAE ``GenEval.get_num_elem_wdist``: W1 distance between numbers of distinct species.

    Same crystals as :func:`wasserstein_density`; NaN when no generated crystal qualifies.
    """
    gen = _assess_all(generated, "generated", cutoff, oxidation_states)
    ref = _assess_all(reference, "reference", cutoff, oxidation_states, allow_none=False)
    return _wdist(_num_elements(_constructed(gen, only_valid)), _num_elements(_constructed(ref, False)))


def _unique_count(structures: Sequence[Structure], matcher: StructureMatcher) -> int:
    return len(matcher.group_structures(list(structures))) if structures else 0


def uniqueness(
    structures: Sequence[Structure | CrystalRecord | None],
    *,
    stol: float = 0.3,
    ltol: float = 0.2,
    angle_tol: float = 5,
) -> float:
    """Fraction of distinct crystals: #groups of ``StructureMatcher.group_structures`` / N.

    Not in CDVAE / DiffCSP (which report fingerprint coverage instead). The tolerances are
    pymatgen's defaults (stol 0.3, ltol 0.2, angle_tol 5 degrees); crystals that cannot be
    constructed are counted in N but never as distinct. The denominator is every input.
    """
    checked = _assess_all(structures, "structures", 0.5, "smact14")
    matcher = StructureMatcher(stol=stol, ltol=ltol, angle_tol=angle_tol)
    return _unique_count(_constructed(checked, False), matcher) / len(checked)


def _novel_flags(
    structures: Sequence[Structure | None], reference: Sequence[Structure], matcher: StructureMatcher
) -> list[bool]:
    """Per crystal: constructed and matched to no reference crystal of its reduced composition."""
    by_formula: dict[Composition, list[Structure]] = {}
    for r in reference:
        by_formula.setdefault(r.composition.reduced_composition, []).append(r)
    flags = []
    for s in structures:
        if s is None:
            flags.append(False)
            continue
        same = by_formula.get(s.composition.reduced_composition, [])
        flags.append(not any(_fits(matcher, s, r) for r in same))
    return flags


def _fits(matcher: StructureMatcher, a: Structure, b: Structure) -> bool:
    try:
        return bool(matcher.fit(a, b))
    except Exception:
        return False


def novelty(
    structures: Sequence[Structure | CrystalRecord | None],
    reference: Sequence[Structure | CrystalRecord],
    *,
    stol: float = 0.3,
    ltol: float = 0.2,
    angle_tol: float = 5,
) -> float:
    """Fraction of crystals that ``StructureMatcher.fit`` matches to no reference crystal.

    Candidates are compared only with reference crystals of the same reduced composition
    (the matcher cannot match others). Crystals that cannot be constructed count as not
    novel; the denominator is every input. Tolerances as :func:`uniqueness`.
    """
    checked = _assess_all(structures, "structures", 0.5, "smact14")
    ref = _constructed(_assess_all(reference, "reference", 0.5, "smact14", allow_none=False), False)
    matcher = StructureMatcher(stol=stol, ltol=ltol, angle_tol=angle_tol)
    return sum(_novel_flags([a.structure for a in checked], ref, matcher)) / len(checked)
