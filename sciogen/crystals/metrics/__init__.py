"""Crystal-generation metrics, computed as CDVAE and DiffCSP compute them: :mod:`.validity`
(structural and SMACT validity), :mod:`.matching` (CSP match rate and RMSE) and
:mod:`.distribution` (Wasserstein distances, uniqueness, novelty); :func:`evaluate` is the
one entry point. How each metric follows the anchors' code: ``domains/crystals/README.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np
from pymatgen.core import Structure
from pymatgen.core.structure_matcher import StructureMatcher

from sciogen.config import check_choice

from .distribution import (
    _densities,
    _novel_flags,
    _num_elements,
    _unique_count,
    _wdist,
    novelty,
    uniqueness,
    wasserstein_density,
    wasserstein_num_elements,
)
from .matching import ValidFilter, _nested, match_rate_and_rmse
from .validity import (
    Assessment,
    CrystalRecord,
    OxidationStates,
    _assess_all,
    _constructed,
    _fractions,
    assess,
    smact_validity,
    structure_validity,
    validity,
)

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

Task = Literal["csp", "gen"]


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

    Returns:
    -------
    dict
        CSP: ``match_rate``, ``rmse``, ``n``. Generation: ``structural_validity``,
        ``compositional_validity``, ``validity``, ``uniqueness``, ``n`` and, with a
        reference, ``wdist_density`` (g/cm^3) and ``wdist_num_elems``; with ``train``,
        ``novelty``.
    """
    if task is not None:
        check_choice("task", task, get_args(Task))
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
    check_choice("oxidation_states", oxidation_states, get_args(OxidationStates))
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
