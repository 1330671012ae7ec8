"""Crystal-generation metrics computed as CDVAE and DiffCSP compute them.

The numbers are meant to sit in the same tables as the published ones, so each metric
follows the anchor code line by line in meaning (the code here is our own):

* CDVAE (Xie et al., ICLR 2022), ``txie-93/cdvae`` at f857f59: ``scripts/eval_utils.py``
  (``smact_validity``, ``structure_validity``) and ``scripts/compute_metrics.py``
  (``Crystal``, ``RecEval``, ``GenEval``).
* DiffCSP (Jiao et al., NeurIPS 2023), ``jiaor17/DiffCSP`` at 7121d15: the same two files
  (``RecEval`` for one sample per structure, ``RecEvalBatch`` for ``--multi_eval``, the
  best of k samples).

What each crystal goes through (CDVAE's ``Crystal``)
----------------------------------------------------
1. *Construction.* A crystal is ``constructed`` when its lattice and coordinates are finite,
   no lattice length is negative, pymatgen builds it without raising, and its volume is at
   least 0.1 Å^3. Otherwise it is structurally invalid and is never matched; nothing raises.
2. *Structural validity*: constructed, and every off-diagonal entry of pymatgen's
   periodic ``distance_matrix`` (minimum-image distance between distinct sites) is at
   least ``cutoff`` = 0.5 Å.
3. *Compositional validity* (SMACT): counts are divided by their gcd, elements ordered by
   atomic number; a single element, or (``include_alloys``) only metals of ``smact.metals``,
   is valid; otherwise some combination of oxidation states must be charge neutral,
   ``sum_i q_i n_i = 0``, and pass the Pauling electronegativity test. It is computed from
   the atom types alone, so an unconstructed crystal can still be compositionally valid.
4. ``valid = structural and compositional``.

Differences from the anchors that change no published number
------------------------------------------------------------
* The anchors also mark a crystal invalid when matminer's CrystalNN fingerprint raises;
  fingerprints (CDVAE's coverage / diversity) are not computed here.
* DiffCSP builds a crystal even when a lattice length is negative (its NaN check's ``else``
  overrides the flag); CDVAE does not; we follow CDVAE.
* DiffCSP's ``smact_validity`` returns False when there are more than 1e7 oxidation-state
  combinations (``max_oxidation_combinations``); CDVAE has no cap. The default is DiffCSP's.

SMACT versions
--------------
CDVAE pinned ``smact==2.2.1``; DiffCSP (2023) names no version. In every SMACT < 3
``Element.oxidation_states`` is the list SMACT >= 3 calls ``oxidation_states_smact14``
(``smact/data/oxidation_states.txt``); from SMACT 3 ``Element.oxidation_states`` is the
ICSD-2024 list. ``oxidation_states="smact14"`` (the default) therefore reproduces the
papers; ``"icsd24"`` is today's ``Element.oxidation_states``, and its numbers differ: on the
Perov-5 test set 3732 / 3785 = 98.60 % are valid with smact14 and 98.31 % with icsd24; 39
compositions disagree, e.g. LiAlO3 (smact14: Li+1 Al+2 O-1; icsd24 has only Al+3) and
RbBiO2F (needs Bi+4, in icsd24 but not in smact14). (SMACT 4's own
``smact.screening.smact_validity`` defaults to yet another, consensus-filtered ICSD-24 list.)
Two more version effects:

* Pauling test: up to SMACT 2.5.x ``eneg_states_test`` compared an element without a
  Pauling electronegativity (None: He, Ne, Ar, Pm, Rn, Lr) with ``>=`` / ``<=`` when the
  pair's charges had opposite signs and raised ``TypeError``, which the anchors catch as
  "test passed" (so Pm2O3 is valid); with same-sign charges it returned False. From SMACT
  2.6 both cases return False, so we implement the old test (:func:`_pauling_ok`) rather
  than call ``smact.screening``. No Perov-5 element is affected.
* Data: SMACT <= 2.5.3 listed Zr's Pauling electronegativity as 0.33 (1.33 from 2.5.4,
  Nov. 2023) and SMACT 2.2.x Ir's lowest oxidation state as -2 (-3 from 2.3). We use the
  installed data (1.33, -3). Zr's value only matters when Zr+ faces an alkali-metal anion
  (Na/K/Rb/Cs -1); with the old values no Perov-5 test composition changes (measured).

Matching (CSP)
--------------
``StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10)`` and ``get_rms_dist(pred, gt)[0]``:
pymatgen reduces both crystals to primitive Niggli cells, rescales them to a common volume,
and returns the RMS site displacement after removing the mean translation, divided by
``(V / N)^(1/3)`` of the averaged lattice (``normalization`` in
``StructureMatcher._strict_match``), so the RMSE is dimensionless. A pair matches when that
value is below ``stol``. Only *valid* predictions (structural and compositional) are matched,
as in both anchors; DiffCSP's one-sample ``RecEval`` also requires the ground truth to be
valid, its best-of-k ``RecEvalBatch`` does not (``valid_filter``). In CSP a prediction has
its ground truth's composition, so a compositionally invalid ground truth can never be
matched: on Perov-5 this caps the match rate at the test set's compositional validity.
The match rate is over all ground truths, the RMSE the mean over matched ones.
"""

from __future__ import annotations

import functools
import itertools
import math
import multiprocessing
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import smact
from pymatgen.core import Composition, Element, Lattice, Structure
from pymatgen.core.structure_matcher import StructureMatcher
from scipy.stats import wasserstein_distance

__all__ = [
    "CrystalRecord",
    "Assessment",
    "assess",
    "structure_validity",
    "smact_validity",
    "validity",
    "match_rate_and_rmse",
    "wasserstein_density",
    "wasserstein_num_elements",
    "uniqueness",
    "novelty",
    "evaluate",
]

OxidationStates = Literal["smact14", "icsd24", "icsd16", "pymatgen_sp"]
ValidFilter = Literal["diffcsp", "cdvae", "none"]
Task = Literal["csp", "gen"]

#: SMACT Element attribute behind each oxidation-state set name (SMACT >= 3).
_OX_ATTR = {
    "smact14": "oxidation_states_smact14",  # Element.oxidation_states in SMACT < 3 (the papers)
    "icsd24": "oxidation_states_icsd24",  # Element.oxidation_states in SMACT >= 3
    "icsd16": "oxidation_states_icsd16",
    "pymatgen_sp": "oxidation_states_sp",
}
MIN_VOLUME = 0.1  # Å^3, CDVAE's "unrealistically_small_lattice"


def _check_choice(name: str, value: Any, options: tuple) -> None:
    if value not in options:
        raise ValueError(f"{name}={value!r} is not one of {', '.join(map(repr, options))}")


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

    Returns
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

    Returns
    -------
    bool
    """
    _check_choice("oxidation_states", oxidation_states, get_args(OxidationStates))
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

    Returns
    -------
    dict
        ``structural``, ``compositional`` and ``overall`` (both), each in [0, 1].
    """
    _check_choice("oxidation_states", oxidation_states, get_args(OxidationStates))
    checked = _assess_all(structures, "structures", cutoff, oxidation_states)
    return _fractions(checked)


# -- CSP: match rate and RMSE ------------------------------------------------------------------


def _rms(pred: Structure, gt: Structure, stol: float, ltol: float, angle_tol: float) -> float | None:
    """``get_rms_dist(pred, gt)[0]`` or None (no match, or pymatgen raised: both anchors)."""
    try:
        found = StructureMatcher(stol=stol, ltol=ltol, angle_tol=angle_tol).get_rms_dist(pred, gt)
    except Exception:
        return None
    return None if found is None else float(found[0])


def _rms_star(job: tuple) -> float | None:
    return _rms(*job)


def _nested(predictions: Sequence) -> bool:
    """True for one list of samples per ground truth, False for one crystal each."""
    is_list = [isinstance(p, (list, tuple)) for p in predictions]
    if len(set(is_list)) > 1:
        first = is_list.index(not is_list[0])
        raise ValueError(
            f"predictions mixes single crystals and lists of samples (predictions[0] vs predictions[{first}]); "
            "give one crystal per ground truth, or a list of k samples for every ground truth"
        )
    return bool(is_list) and is_list[0]


def match_rate_and_rmse(
    predictions: Sequence[Any],
    ground_truth: Sequence[Structure | CrystalRecord],
    k: int | None = None,
    stol: float = 0.5,
    ltol: float = 0.3,
    angle_tol: float = 10,
    *,
    valid_filter: ValidFilter = "diffcsp",
    cutoff: float = 0.5,
    oxidation_states: OxidationStates = "smact14",
    processes: int | None = None,
) -> dict[str, float]:
    """CSP match rate and RMSE (CDVAE ``RecEval``; DiffCSP ``RecEval`` / ``RecEvalBatch``).

    For ground truth i with candidate predictions j (one, or the first k samples), the
    candidates that pass ``valid_filter`` are matched with ``StructureMatcher(stol, ltol,
    angle_tol).get_rms_dist(pred, gt)[0]`` (dimensionless: RMS displacement over
    ``(V/N)^(1/3)``, see the module docstring); ``r_i`` is the smallest value found, and
    ground truth i is matched when some candidate matched.

        match_rate = #matched / #ground truths,   rmse = mean_{i matched} r_i

    Parameters
    ----------
    predictions : list of crystals, or list of lists of crystals
        Same length as ``ground_truth``; a crystal is a Structure, a CrystalRecord or None
        (failed sample). Lists hold k samples per ground truth (DiffCSP's multi-eval).
    ground_truth : list of Structure or CrystalRecord
    k : int, optional
        Use only the first k samples of each list (all when None); k > 1 needs lists.
    stol, ltol, angle_tol : float
        StructureMatcher tolerances; the anchors use 0.5, 0.3 and 10 degrees.
    valid_filter : {"diffcsp", "cdvae", "none"}
        Which pairs are matched. ``"diffcsp"``: valid predictions (structural and
        compositional), and for one sample per ground truth also a valid ground truth
        (DiffCSP ``RecEval``; its best-of-k ``RecEvalBatch`` checks only predictions).
        ``"cdvae"``: valid predictions. ``"none"``: every constructed prediction.
    cutoff, oxidation_states
        Validity settings (see :func:`structure_validity`, :func:`smact_validity`).
    processes : int, optional
        Worker processes for the matching; None or 1 runs in this process.

    Returns
    -------
    dict
        ``match_rate`` in [0, 1], ``rmse`` (NaN when nothing matched) and ``n``, the
        number of ground truths.
    """
    _check_choice("valid_filter", valid_filter, get_args(ValidFilter))
    _check_choice("oxidation_states", oxidation_states, get_args(OxidationStates))
    if not isinstance(predictions, Sequence) or not isinstance(ground_truth, Sequence):
        raise ValueError("predictions and ground_truth must be lists")
    if len(predictions) != len(ground_truth):
        raise ValueError(
            f"{len(predictions)} predictions for {len(ground_truth)} ground truths; CSP pairs them one to one"
        )
    if not ground_truth:
        raise ValueError("predictions and ground_truth are empty")
    nested = _nested(predictions)
    if not nested:
        if k not in (None, 1):
            raise ValueError(f"k={k} needs a list of at least k samples per ground truth; got single crystals")
        checked = [[a] for a in _assess_all(predictions, "predictions", cutoff, oxidation_states)]
    else:
        if k is not None and k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        lengths = [len(p) for p in predictions]
        need = k if k is not None else 1
        short = next((i for i, m in enumerate(lengths) if m < need), None)
        if short is not None:
            raise ValueError(f"predictions[{short}] has {lengths[short]} samples; need at least {need}")
        checked = [
            _assess_all(list(p)[:k] if k is not None else list(p), f"predictions[{i}]", cutoff, oxidation_states)
            for i, p in enumerate(predictions)
        ]

    gts = _assess_all(ground_truth, "ground_truth", cutoff, oxidation_states, allow_none=False)
    jobs, owner = [], []
    for i, (gt, cands) in enumerate(zip(gts, checked)):
        if gt.structure is None or (valid_filter == "diffcsp" and not nested and not gt.valid):
            continue
        for pred in cands:
            if pred.structure is None or (valid_filter != "none" and not pred.valid):
                continue
            jobs.append((pred.structure, gt.structure, stol, ltol, angle_tol))
            owner.append(i)

    if processes is not None and processes > 1 and len(jobs) > 1:
        with multiprocessing.get_context().Pool(processes) as pool:
            found = pool.map(_rms_star, jobs, chunksize=max(1, len(jobs) // (4 * processes)))
    else:
        found = [_rms_star(job) for job in jobs]

    best: dict[int, float] = {}
    for i, r in zip(owner, found):
        if r is not None:
            best[i] = min(r, best.get(i, math.inf))
    n = len(ground_truth)
    return {
        "match_rate": len(best) / n,
        "rmse": float(np.mean(list(best.values()))) if best else math.nan,
        "n": n,
    }


# -- de novo generation ------------------------------------------------------------------------


def _constructed(checked: Sequence[Assessment], only_valid: bool) -> list[Structure]:
    return [a.structure for a in checked if a.structure is not None and (a.valid or not only_valid)]


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


# -- one entry point ---------------------------------------------------------------------------


def evaluate(
    samples: Sequence[Any],
    reference: Sequence[Structure | CrystalRecord] | None = None,
    task: Task | None = None,
    *,
    train: Sequence[Structure | CrystalRecord] | None = None,
    k: int | None = None,
    valid_filter: ValidFilter = "diffcsp",
    oxidation_states: OxidationStates = "smact14",
    n_samples: int | None = None,
    generator: np.random.Generator | None = None,
    processes: int | None = None,
) -> dict[str, float]:
    """Score crystal samples for CSP (paired with ground truth) or de novo generation.

    Parameters
    ----------
    samples : list of crystals, or list of lists of k crystals (CSP only)
    reference : list of crystals, optional
        CSP: the ground truth, paired with ``samples`` by index (required). Generation: the
        test set the density and element-count distributions are compared with.
    task : {"csp", "gen"}, optional
        None picks "csp" for lists of samples, "gen" when there is no reference, and
        otherwise asks for it.
    train : list of crystals, optional
        Generation: training set for ``novelty``.
    k, valid_filter, processes
        CSP: see :func:`match_rate_and_rmse`.
    oxidation_states
        See :func:`smact_validity`.
    n_samples, generator
        Generation: draw ``n_samples`` valid crystals without replacement (CDVAE draws
        1000) for the Wasserstein distances; too few valid crystals raise, as in CDVAE.

    Returns
    -------
    dict
        CSP: ``match_rate``, ``rmse``, ``n``. Generation: ``structural_validity``,
        ``compositional_validity``, ``validity``, ``uniqueness``, ``n`` and, with a
        reference, ``wdist_density`` (g/cm^3) and ``wdist_num_elems``; with ``train``,
        ``novelty``.
    """
    if task is not None:
        _check_choice("task", task, get_args(Task))
    if isinstance(samples, (Structure, CrystalRecord)) or not isinstance(samples, Sequence):
        raise ValueError(f"samples must be a list of crystals, got {type(samples).__name__}")
    if len(samples) == 0:
        raise ValueError("samples is empty")
    if task is None:
        if _nested(samples):
            task = "csp"
        elif reference is None:
            task = "gen"
        else:
            raise ValueError(
                "cannot tell CSP from generation with one crystal per sample and a reference; "
                "pass task='csp' or task='gen'"
            )
    if task == "csp":
        if reference is None:
            raise ValueError("task='csp' needs the ground truth as reference (one per sample, same order)")
        return match_rate_and_rmse(
            samples, reference, k=k, valid_filter=valid_filter, oxidation_states=oxidation_states, processes=processes
        )
    return _evaluate_gen(samples, reference, train, oxidation_states, n_samples, generator)


def _evaluate_gen(samples, reference, train, oxidation_states, n_samples, generator) -> dict[str, float]:
    _check_choice("oxidation_states", oxidation_states, get_args(OxidationStates))
    checked = _assess_all(samples, "samples", 0.5, oxidation_states)
    fr = _fractions(checked)
    out = {
        "structural_validity": fr["structural"],
        "compositional_validity": fr["compositional"],
        "validity": fr["overall"],
    }
    out["uniqueness"] = _unique_count(_constructed(checked, False), StructureMatcher()) / len(checked)
    if reference is not None:
        valid = _constructed(checked, True)
        if n_samples is not None:
            if len(valid) < n_samples:
                raise ValueError(f"not enough valid crystals: {len(valid)} < n_samples={n_samples}")
            rng = generator if generator is not None else np.random.default_rng()
            valid = [valid[i] for i in rng.choice(len(valid), n_samples, replace=False)]
        ref = _constructed(_assess_all(reference, "reference", 0.5, oxidation_states, allow_none=False), False)
        out["wdist_density"] = _wdist(_densities(valid), _densities(ref))
        out["wdist_num_elems"] = _wdist(_num_elements(valid), _num_elements(ref))
    if train is not None:
        train_s = _constructed(_assess_all(train, "train", 0.5, oxidation_states, allow_none=False), False)
        out["novelty"] = sum(_novel_flags([a.structure for a in checked], train_s, StructureMatcher())) / len(checked)
    out["n"] = len(checked)
    return out
