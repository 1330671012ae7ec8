"""Screening output: one row per generated crystal, for a script that ranks candidates.

    >>> hits = gen.sample(1000, space_group=221, seed=0)          # doctest: +SKIP
    >>> table = screening_table(hits, reference=training_structures)
    >>> table[table.in_requested_group & table.novel].sort_values("density")
    >>> gen.write_samples(hits, "hits/")                           # CIFs + hits/summary.csv (this table)

Columns: ``index``, ``formula`` (reduced), ``space_group`` and ``space_group_number``
(SpacegroupAnalyzer, symprec 0.1 Å), ``structurally_valid`` (every interatomic distance >= 0.5 Å)
and ``compositionally_valid`` (SMACT charge neutrality and electronegativity, as CDVAE), ``novel``
(no StructureMatcher match in the reference crystals; empty without a reference), then what was
asked for: ``requested_space_group``, ``in_requested_group``, ``wyckoff`` (the sample's template),
``requested_<name>`` per condition and ``guidance``, and last ``predicted_<name>``: one column per
property predictor (empty where a condition was asked for but no predictor is given). A failed
sample (None) has a row of empty cells. Predictors are callables ``f(structures) -> values``
(one float per Structure), so a property model adds a column without changing this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .symmetry import SYMPREC, _group_number, detect_space_group

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from pymatgen.core import Structure

__all__ = ["CrystalSamples", "screening_table", "Predictor"]

#: a property predictor: Structures -> one number per structure
Predictor = Callable[[Sequence["Structure"]], Sequence[float]]


class CrystalSamples(list):
    """Generated crystals (Structures, None for a failed sample) with what was asked for.

    Attributes:
        requested: the request, e.g. ``{"space_group": [221, ...], "condition": {"dir_gap": 2.0},
            "guidance": 2.0, "wyckoff_prior": "..."}`` (per-sample lists or one value).
        templates: per sample its Wyckoff template (text) where a space group was asked for, else None.
        reference: the crystals novelty is measured against: Structures, a callable returning them
            (or None) on first use, or None.
    """

    def __init__(self, items=(), requested: Mapping[str, Any] | None = None, templates: Sequence[str] | None = None,
                 reference: Any = None):
        super().__init__(items)
        self.requested = dict(requested or {})
        self.templates = None if templates is None else list(templates)
        self._reference = reference

    @property
    def reference(self) -> list["Structure"] | None:
        """The novelty reference, loaded on first use (None: none available)."""
        if callable(self._reference):
            self._reference = self._reference()
        return self._reference


def _per_sample(value: Any, n: int, name: str) -> list:
    """One value per sample from one value or a sequence of n."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != n:
            raise ValueError(f"{name}: {len(value)} values for {n} structures; give one, or one per structure")
        return list(value)
    return [value] * n


def screening_table(structures: Sequence["Structure | None"], *, reference: Sequence["Structure"] | None = None,
                    requested: Mapping[str, Any] | None = None, templates: Sequence[str | None] | None = None,
                    predictors: Mapping[str, Predictor] | None = None, symprec: float = SYMPREC) -> "pd.DataFrame":
    """The screening table of ``structures`` (see the module docstring), one row per structure in order.

    Args:
        structures: pymatgen Structures, None for failed samples (a :class:`CrystalSamples` carries
            ``requested``, ``templates`` and ``reference`` itself; arguments given here win).
        reference: crystals for the ``novel`` column (e.g. the training set); None: column left empty.
        requested: ``space_group`` (one, or one per structure), ``condition`` ({name: value or values}),
            ``guidance``.
        templates: per structure its Wyckoff template text.
        predictors: {property name: callable(Structures) -> one float per Structure}.
        symprec: tolerance (Å) of the space-group analysis.

    Returns:
        A pandas DataFrame with the columns of the module docstring (nullable: empty where unknown).
    """
    import pandas as pd
    from pymatgen.core.structure_matcher import StructureMatcher

    from .metrics import assess
    from .metrics.distribution import _novel_flags

    if isinstance(structures, CrystalSamples):
        requested = structures.requested if requested is None else requested
        templates = structures.templates if templates is None else templates
        reference = structures.reference if reference is None else reference
    items = list(structures)
    n = len(items)
    requested = dict(requested or {})
    for i, s in enumerate(items):
        if s is not None and not hasattr(s, "lattice"):
            raise TypeError(f"structure {i} is a {type(s).__name__}, not a pymatgen Structure (or None)")
    rows: dict[str, list] = {"index": list(range(n)), "formula": [], "space_group": [], "space_group_number": [],
                             "structurally_valid": [], "compositionally_valid": []}
    for s in items:
        found = detect_space_group(s, symprec)
        checked = assess(s) if s is not None else None
        rows["formula"].append(None if s is None else s.composition.reduced_formula)
        rows["space_group"].append(None if found is None else found[1])
        rows["space_group_number"].append(None if found is None else found[0])
        rows["structurally_valid"].append(None if checked is None else bool(checked.structural))
        rows["compositionally_valid"].append(None if checked is None else bool(checked.compositional))
    if reference is not None:
        flags = _novel_flags(items, list(reference), StructureMatcher())
        rows["novel"] = [None if s is None else bool(f) for s, f in zip(items, flags)]
    else:
        rows["novel"] = [None] * n
    if requested.get("space_group") is not None:
        wanted = [_group_number(g) for g in _per_sample(requested["space_group"], n, "space_group")]
        rows["requested_space_group"] = wanted
        rows["in_requested_group"] = [None if s is None else num == want
                                      for s, num, want in zip(items, rows["space_group_number"], wanted)]
    if templates is not None:
        rows["wyckoff"] = _per_sample(list(templates), n, "templates")
    condition = dict(requested.get("condition") or {})
    for name, value in condition.items():
        rows[f"requested_{name}"] = [float(v) for v in _per_sample(value, n, f"condition {name}")]
    if condition and requested.get("guidance") is not None:
        rows["guidance"] = [float(requested["guidance"])] * n
    predictors = dict(predictors or {})
    for name in list(condition) + [p for p in predictors if p not in condition]:
        rows[f"predicted_{name}"] = _predict(predictors[name], items, name) if name in predictors else [None] * n
    table = pd.DataFrame(rows)
    for column in table.columns:
        if column in ("space_group_number", "requested_space_group"):
            table[column] = table[column].astype("Int64")
        elif column in ("structurally_valid", "compositionally_valid", "novel", "in_requested_group"):
            table[column] = table[column].astype("boolean")
        elif column.startswith(("requested_", "predicted_")) or column == "guidance":
            table[column] = table[column].astype("Float64")
    return table


def _predict(predictor: Predictor, items: list, name: str) -> list:
    """The predictor's values on the structures (None where a sample failed); checked."""
    present = [i for i, s in enumerate(items) if s is not None]
    values = list(predictor([items[i] for i in present])) if present else []
    if len(values) != len(present):
        raise ValueError(f"predictor {name!r} returned {len(values)} values for {len(present)} structures")
    out: list = [None] * len(items)
    for i, v in zip(present, values):
        out[i] = None if v is None else float(v)
    return out
