"""Crystal structure prediction scores: match rate and RMSE (CDVAE ``RecEval``; DiffCSP
``RecEval`` / ``RecEvalBatch``), with pymatgen's ``StructureMatcher``."""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np
from pymatgen.core import Structure
from pymatgen.core.structure_matcher import StructureMatcher

from sciogen.config import check_choice

from .validity import CrystalRecord, OxidationStates, _assess_all

__all__ = ["match_rate_and_rmse", "ValidFilter"]

ValidFilter = Literal["diffcsp", "cdvae", "none"]


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
    ``(V/N)^(1/3)``, see ``domains/crystals/README.md``); ``r_i`` is the smallest value found, and
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

    Returns:
    -------
    dict
        ``match_rate`` in [0, 1], ``rmse`` (NaN when nothing matched) and ``n``, the
        number of ground truths.
    """
    check_choice("valid_filter", valid_filter, get_args(ValidFilter))
    check_choice("oxidation_states", oxidation_states, get_args(OxidationStates))
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
