"""Quality of 3D molecules, computed as the papers compute them.

- Stability (EDM, Hoogeboom et al. 2022, ``qm9/analyze.py:check_stability``): bond orders
  from pairwise distances by EDM's table (:func:`~.representation.edm_bond_orders`); an atom
  is stable when the sum of its bond orders is an allowed valence of its element
  (:data:`EDM_ALLOWED_VALENCES`), a molecule when all its atoms are. Formal charges are
  ignored, as in EDM.
- Validity / uniqueness / novelty (EDM's ``BasicMolecularMetrics``): the Mol built from the
  same bond orders (no charges, implicit hydrogens allowed) must sanitize; its largest
  fragment's SMILES is kept (:func:`sciogen.molecules.metrics.sample_smiles`); uniqueness
  over valid, novelty over unique, against training SMILES, compared as heavy-atom canonical
  SMILES (EDM's novelty reference is the training set passed through this same pipeline:
  :func:`edm_smiles`).
- Conformers (GeoDiff, Xu et al. 2022, ``utils/evaluation/covmat.py``; Torsional diffusion):
  heavy-atom RMSD after the best alignment over symmetry-equivalent atom matches (RDKit
  ``GetBestRMS``); COV-R = fraction of reference conformers with a generated one within
  ``threshold`` (``<=``), MAT-R = mean over reference of the smallest RMSD; COV-P / MAT-P the
  same with generated and reference swapped. The ETKDG(+MMFF) baseline:
  :func:`etkdg_conformers`.
- Energy sanity: MMFF94 energy before and after a short relaxation, and the heavy-atom
  RMSD that relaxation moved the atoms (:func:`mmff_relaxation`).

Nothing returns NaN: a molecule RDKit cannot handle is counted (``num_failed`` and the
reasons), never silently dropped.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem import AllChem, rdMolAlign

from sciogen.molecules.metrics import sample_smiles, validity_metrics
from sciogen.molecules.representation import parse_smiles

from .representation import (
    _BOND_TYPES,
    ElementVocabulary,
    Molecule3D,
    NoConformerError,
    edm_bond_orders,
    heavy_smiles,
)

__all__ = [
    "EDM_ALLOWED_VALENCES",
    "edm_stable_atoms",
    "edm_stability",
    "edm_mols",
    "edm_smiles",
    "rdkit_metrics",
    "evaluate",
    "best_rmsd",
    "rmsd_matrix",
    "coverage_matching",
    "etkdg_conformers",
    "RelaxationResult",
    "mmff_relaxation",
]

#: allowed total bond order per element, EDM's ``allowed_bonds`` (``qm9/bond_analyze.py`` of
#: github.com/ehoogeboom/e3_diffusion_for_molecules, commit fce07d7)
EDM_ALLOWED_VALENCES: dict[str, tuple[int, ...]] = {
    "H": (1,), "C": (4,), "N": (3,), "O": (2,), "F": (1,), "B": (3,), "Al": (3,), "Si": (4,), "P": (3, 5),
    "S": (4,), "Cl": (1,), "As": (3,), "Br": (1,), "I": (1,), "Hg": (1, 2), "Bi": (3, 5),
}


# -- inputs -----------------------------------------------------------------------------------


def _padded(types: Any, positions: Any = None, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, N) types, (B, N, 3) positions, (B, N) mask from padded tensors, a list of
    :class:`Molecule3D` / (types, positions) pairs, or an object with ``types``,
    ``positions`` and ``mask`` (a :class:`~.datasets.Molecules3DDataset`)."""
    if positions is None and hasattr(types, "positions"):
        types, positions, mask = types.types, types.positions, getattr(types, "mask", None)
    if positions is None:
        items = list(types)
        pairs = [(m.types, m.positions) if isinstance(m, Molecule3D) else (m[0], m[1]) for m in items]
        types, positions = [p[0] for p in pairs], [p[1] for p in pairs]
    if isinstance(types, torch.Tensor) and types.dim() == 2:
        t, x = types.long(), torch.as_tensor(positions)
        m = torch.ones_like(t, dtype=torch.bool) if mask is None else mask.bool()
    else:
        ts = [torch.as_tensor(v).long().view(-1) for v in types]
        xs = [torch.as_tensor(v).view(-1, 3) for v in positions]
        if len(ts) != len(xs):
            raise ValueError(f"{len(ts)} type arrays but {len(xs)} position arrays")
        n = max((len(v) for v in ts), default=0)
        t = torch.zeros(len(ts), n, dtype=torch.long)
        x = torch.zeros(len(ts), n, 3, dtype=torch.float64)
        m = torch.zeros(len(ts), n, dtype=torch.bool)
        for b, (tv, xv) in enumerate(zip(ts, xs)):
            if len(tv) != len(xv):
                raise ValueError(f"molecule {b}: {len(tv)} atom types but {len(xv)} positions")
            t[b, : len(tv)], x[b, : len(tv)], m[b, : len(tv)] = tv, xv.double(), True
    if x.shape != (*t.shape, 3) or m.shape != t.shape:
        raise ValueError(f"types {tuple(t.shape)}, positions {tuple(x.shape)} and mask {tuple(m.shape)} "
                         "do not fit (B, N), (B, N, 3), (B, N)")
    if t.shape[0] == 0:
        raise ValueError("no molecules to evaluate")
    empty = torch.nonzero(m.sum(1) == 0).view(-1)
    if empty.numel():
        raise ValueError(f"molecule {int(empty[0])} has no atoms")
    bad = ~torch.isfinite(x).all(-1) & m
    if bad.any():
        b, i = (int(v) for v in torch.nonzero(bad)[0])
        raise ValueError(f"molecule {b}, atom {i}: NaN or infinite coordinates")
    return t, x, m


def _allowed_table(vocabulary: ElementVocabulary) -> torch.Tensor:
    """(K, V + 2) bool: ``[k, v]`` is True when valence v is allowed for element k (the last
    column, valences above the largest allowed, is False)."""
    missing = [e for e in vocabulary.elements if e not in EDM_ALLOWED_VALENCES]
    if missing:
        raise ValueError(f"EDM's stability has no allowed valences for {', '.join(missing)}; "
                         f"it knows {', '.join(EDM_ALLOWED_VALENCES)}")
    top = max(max(EDM_ALLOWED_VALENCES[e]) for e in vocabulary.elements)
    table = torch.zeros(len(vocabulary), top + 2, dtype=torch.bool)
    for k, e in enumerate(vocabulary.elements):
        table[k, list(EDM_ALLOWED_VALENCES[e])] = True
    return table


# -- stability --------------------------------------------------------------------------------


def edm_stable_atoms(types: Any, positions: Any = None, mask: torch.Tensor | None = None,
                     vocabulary: ElementVocabulary | None = None, *, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """EDM's per-atom stability.

    Shapes:
        padded types (B, N), positions (B, N, 3) Å, mask (B, N), or a list of molecules
        (see :func:`edm_stability`) -> (stable (B, N) bool, False at padding; mask (B, N)).
    """
    vocabulary = vocabulary or ElementVocabulary.qm9()
    t, x, m = _padded(types, positions, mask)
    if int(t[m].max()) >= len(vocabulary) or int(t[m].min()) < 0:
        raise ValueError(f"atom types must lie in 0..{len(vocabulary) - 1} ({', '.join(vocabulary.elements)})")
    allowed = _allowed_table(vocabulary)
    out = torch.zeros_like(m)
    for s in range(0, t.shape[0], chunk):
        tc, xc, mc = t[s : s + chunk], x[s : s + chunk], m[s : s + chunk]
        valence = edm_bond_orders(tc.clamp(min=0), xc, vocabulary, mask=mc).sum(-1)
        ok = allowed[tc.clamp(min=0), valence.clamp(max=allowed.shape[1] - 1)]
        out[s : s + chunk] = ok & mc
    return out, m


def edm_stability(types: Any, positions: Any = None, mask: torch.Tensor | None = None,
                  vocabulary: ElementVocabulary | None = None) -> dict[str, float]:
    """EDM's atom and molecule stability (fractions in [0, 1]).

    Args:
        types: (B, N) padded element indices with ``positions`` (B, N, 3) in Å and ``mask``
            (B, N); or a list of :class:`Molecule3D` / ``(types (N,), positions (N, 3))``
            pairs; or a dataset with ``types``, ``positions`` and ``mask``.

    Returns:
        ``atom_stability`` (stable atoms / atoms), ``molecule_stability`` (molecules whose
        atoms are all stable / molecules), ``num_molecules``, ``num_atoms``.
    """
    stable, m = edm_stable_atoms(types, positions, mask, vocabulary)
    mol_ok = (stable | ~m).all(1)
    return {
        "atom_stability": float(stable.sum()) / float(m.sum()),
        "molecule_stability": float(mol_ok.float().mean()),
        "num_molecules": float(m.shape[0]),
        "num_atoms": float(m.sum()),
    }


# -- validity, uniqueness, novelty ------------------------------------------------------------


def edm_mols(types: Any, positions: Any = None, mask: torch.Tensor | None = None,
             vocabulary: ElementVocabulary | None = None) -> list["Chem.RWMol"]:
    """EDM's ``build_molecule``: unsanitized Mols with EDM's bond orders, no formal charges,
    implicit hydrogens allowed, and the coordinates as a 3D conformer."""
    vocabulary = vocabulary or ElementVocabulary.qm9()
    t, x, m = _padded(types, positions, mask)
    out = []
    for s in range(0, t.shape[0], 2048):
        orders = edm_bond_orders(t[s : s + 2048], x[s : s + 2048], vocabulary, mask=m[s : s + 2048])
        for b in range(orders.shape[0]):
            keep = torch.nonzero(m[s + b]).view(-1)
            mol = Chem.RWMol()
            for k in t[s + b, keep].tolist():
                mol.AddAtom(Chem.Atom(vocabulary.elements[k]))
            o = orders[b][keep][:, keep]
            for i, j in torch.nonzero(torch.triu(o, 1)).tolist():
                mol.AddBond(i, j, _BOND_TYPES[int(o[i, j])])
            conf = Chem.Conformer(len(keep))
            for k, p in enumerate(x[s + b, keep].tolist()):
                conf.SetAtomPosition(k, p)
            conf.Set3D(True)
            mol.AddConformer(conf, assignId=True)
            out.append(mol)
    return out


def edm_smiles(types: Any, positions: Any = None, mask: torch.Tensor | None = None,
               vocabulary: ElementVocabulary | None = None) -> list[str | None]:
    """Heavy-atom canonical SMILES of the largest fragment of each molecule as EDM builds it
    (:func:`edm_mols`), None where RDKit rejects it. Applied to the training set, these are
    EDM's novelty reference."""
    strict, _ = sample_smiles(edm_mols(types, positions, mask, vocabulary))
    return [None if s is None else _heavy(s) for s in strict]


def rdkit_metrics(samples: Any, train_smiles: Sequence[str] | None = None, *, positions: Any = None,
                  mask: torch.Tensor | None = None, vocabulary: ElementVocabulary | None = None) -> dict[str, float]:
    """EDM's validity, uniqueness (over valid) and novelty (over unique) in [0, 1].

    Args:
        samples: RDKit Mols (e.g. from :func:`~.representation.arrays_to_mol`; None =
            invalid), or tensors / molecules as in :func:`edm_stability` (built by EDM's rule).
        train_smiles: training SMILES for novelty (canonicalized here, hydrogens and stereo
            dropped); EDM's own reference is :func:`edm_smiles` of the training set.
    """
    if positions is None and isinstance(samples, (list, tuple)) and all(s is None or isinstance(s, Chem.Mol) for s in samples):
        strict, _ = sample_smiles(list(samples))
    else:
        strict, _ = sample_smiles(edm_mols(samples, positions, mask, vocabulary))
    heavy = [None if s is None else _heavy(s) for s in strict]
    train = None if train_smiles is None else {h for h in (_heavy(s) for s in train_smiles) if h is not None}
    out = validity_metrics(heavy, heavy, train)
    out.pop("relaxed_validity")
    return out


def _heavy(smiles: str) -> str | None:
    mol = Chem.MolFromSmiles(smiles)
    return None if mol is None else heavy_smiles(mol)


def evaluate(types: Any, positions: Any = None, mask: torch.Tensor | None = None, *,
             vocabulary: ElementVocabulary | None = None, train_smiles: Sequence[str] | None = None) -> dict[str, float]:
    """EDM's table for generated 3D molecules: atom / molecule stability, validity,
    uniqueness and (with ``train_smiles``) novelty, fractions in [0, 1]."""
    out = edm_stability(types, positions, mask, vocabulary)
    out.update(rdkit_metrics(types, train_smiles, positions=positions, mask=mask, vocabulary=vocabulary))
    return out


# -- conformers -------------------------------------------------------------------------------


def _conformers(mols: Any, what: str) -> list[tuple[int, "Chem.Mol"]]:
    """(input index, single-conformer heavy-atom copy) for every conformer of every Mol."""
    if isinstance(mols, Chem.Mol):
        mols = [mols]
    out = []
    for i, m in enumerate(mols):
        if not isinstance(m, Chem.Mol):
            raise TypeError(f"{what} {i} is a {type(m).__name__}, not an RDKit Mol")
        if m.GetNumConformers() == 0:
            raise NoConformerError(f"{what} molecule has no conformer", index=i)
        for conf in m.GetConformers():
            single = Chem.Mol(m, confId=conf.GetId())
            try:
                single = Chem.RemoveHs(single)
            except (ValueError, RuntimeError) as err:
                raise ValueError(f"{what} {i}: RDKit cannot remove its hydrogens ({err}); is it a sanitizable molecule?") from None
            out.append((i, single))
    if not out:
        raise ValueError(f"no {what} conformers")
    return out


def best_rmsd(probe: "Chem.Mol", reference: "Chem.Mol", *, heavy_atoms: bool = True, probe_conf: int = -1, ref_conf: int = -1) -> float:
    """RMSD (Å) after the best alignment over all symmetry-equivalent atom matches (RDKit
    ``GetBestRMS``), on heavy atoms by default (GeoDiff, Torsional diffusion).

    Raises:
        ValueError: the two are not the same molecule (no atom match).
    """
    prb = Chem.Mol(probe, confId=probe.GetConformer(probe_conf).GetId())
    ref = Chem.Mol(reference, confId=reference.GetConformer(ref_conf).GetId())
    if heavy_atoms:
        prb, ref = Chem.RemoveHs(prb), Chem.RemoveHs(ref)
    return _pair_rmsd(prb, ref, "probe", "reference")


def _pair_rmsd(prb, ref, a: str, b: str) -> float:
    try:
        return float(rdMolAlign.GetBestRMS(prb, ref))
    except RuntimeError as err:
        if "match" in str(err).lower():
            raise ValueError(f"{a} and {b} are not the same molecule ({Chem.MolToSmiles(prb)} vs {Chem.MolToSmiles(ref)}): "
                             "RMSD needs conformers of one molecule") from None
        raise


def rmsd_matrix(generated: Any, reference: Any) -> tuple[np.ndarray, list[str]]:
    """Heavy-atom best-alignment RMSD (Å) of every (reference, generated) conformer pair.

    Returns:
        (R, G) float array, ``inf`` where RDKit failed on the pair, and the failure reasons.

    Raises:
        ValueError: a generated conformer is of another molecule than a reference one.
    """
    gen, ref = _conformers(generated, "generated"), _conformers(reference, "reference")
    out = np.empty((len(ref), len(gen)))
    failures = []
    for r, (ri, rm) in enumerate(ref):
        for g, (gi, gm) in enumerate(gen):
            try:
                out[r, g] = _pair_rmsd(gm, rm, f"generated {gi}", f"reference {ri}")
            except RuntimeError as err:  # alignment failures other than a mismatch
                out[r, g] = math.inf
                failures.append(f"reference {ri} / generated {gi}: {err}")
    return out, failures


def coverage_matching(generated: Any, reference: Any, threshold: float = 0.5) -> dict[str, float]:
    """COV-R, MAT-R, COV-P and MAT-P of generated conformers against reference ones.

    Args:
        generated, reference: a Mol with conformers, or a list of Mols (all their
            conformers count), all of one molecule.
        threshold: δ in Å (0.5 for QM9 and drugs in Torsional diffusion; GeoDiff 0.5 / 1.25).

    Returns:
        ``cov_r`` = |{r : min_g RMSD(g, r) <= δ}| / R, ``mat_r`` = mean_r min_g RMSD(g, r),
        ``cov_p`` and ``mat_p`` with the roles swapped, ``num_reference``, ``num_generated``,
        ``num_failed_pairs``. A row or column whose pairs all failed counts as not covered
        and is left out of MAT (``num_unmatched_reference`` / ``..._generated``).
    """
    if not threshold > 0:
        raise ValueError(f"threshold={threshold}; give a positive distance in Å")
    rmsd, failures = rmsd_matrix(generated, reference)
    out = {"num_reference": float(rmsd.shape[0]), "num_generated": float(rmsd.shape[1]), "num_failed_pairs": float(len(failures))}
    for side, mins in (("r", rmsd.min(1)), ("p", rmsd.min(0))):
        finite = np.isfinite(mins)
        out[f"cov_{side}"] = float((mins <= threshold).mean())
        if finite.any():
            out[f"mat_{side}"] = float(mins[finite].mean())
        out[f"num_unmatched_{'reference' if side == 'r' else 'generated'}"] = float((~finite).sum())
    return out


def etkdg_conformers(smiles: str, n: int, seed: int = 0, mmff: bool = True, *, max_iters: int = 200) -> "Chem.Mol":
    """The ETKDG baseline (Riniker & Landrum 2015, ETKDGv3): ``n`` conformers of ``smiles``
    with hydrogens, optionally MMFF94-optimized (``max_iters`` steps), as in Torsional
    diffusion's baseline.

    Raises:
        SmilesParseError: the SMILES does not parse.
        ValueError: no conformer could be embedded, ``n`` < 1, a negative seed, or MMFF has
            no parameters for the molecule (then use ``mmff=False``).
    """
    if n < 1:
        raise ValueError(f"n={n}; ask for at least one conformer")
    if seed < 0:
        raise ValueError(f"seed={seed}; give a non-negative integer (RDKit reads -1 as 'random')")
    mol = Chem.AddHs(parse_smiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    params.numThreads = 1
    ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=n, params=params))
    if not ids:
        params.useRandomCoords = True
        ids = list(AllChem.EmbedMultipleConfs(mol, numConfs=n, params=params))
    if not ids:
        raise ValueError(f"ETKDG embedded no conformer of {smiles!r} (seed {seed})")
    if mmff:
        if not AllChem.MMFFHasAllMoleculeParams(mol):
            raise ValueError(f"MMFF94 has no parameters for {smiles!r}; call with mmff=False")
        AllChem.MMFFOptimizeMoleculeConfs(mol, numThreads=1, maxIters=max_iters)
    mol.SetProp("_Name", smiles)
    return mol


# -- energy sanity ----------------------------------------------------------------------------


@dataclass
class RelaxationResult:
    """MMFF94 energies (kcal/mol) before / after a short relaxation and the heavy-atom RMSD
    (Å) it moved, one entry per conformer that MMFF handled; ``failed`` lists the others as
    ``(molecule index, conformer id, reason)``."""

    index: list[tuple[int, int]] = field(default_factory=list)
    energy_before: np.ndarray = field(default_factory=lambda: np.zeros(0))
    energy_after: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rmsd: np.ndarray = field(default_factory=lambda: np.zeros(0))
    failed: list[tuple[int, int, str]] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """Counts, and medians / means where at least one conformer succeeded (never NaN)."""
        out = {"num_conformers": float(len(self.index) + len(self.failed)), "num_failed": float(len(self.failed))}
        if len(self.index):
            drop = self.energy_before - self.energy_after
            out.update({
                "energy_before_median": float(np.median(self.energy_before)),
                "energy_after_median": float(np.median(self.energy_after)),
                "energy_drop_median": float(np.median(drop)), "energy_drop_mean": float(drop.mean()),
                "rmsd_median": float(np.median(self.rmsd)), "rmsd_mean": float(self.rmsd.mean()),
            })
        return out

    def reasons(self) -> Counter:
        return Counter(r for _, _, r in self.failed)


def mmff_relaxation(molecules: Any, *, max_iters: int = 200) -> RelaxationResult:
    """Relax every conformer of every Mol with MMFF94 for ``max_iters`` steps.

    Molecules need explicit hydrogens with coordinates and must sanitize; those that do not,
    or that MMFF94 has no parameters for, are listed in ``failed`` with the reason.
    """
    from rdkit.Chem import rdForceFieldHelpers as ff_helpers

    if isinstance(molecules, Chem.Mol):
        molecules = [molecules]
    result = RelaxationResult()
    before, after, moved = [], [], []
    for i, m in enumerate(molecules):
        if m is None:
            result.failed.append((i, -1, "no molecule (invalid sample)"))
            continue
        if m.GetNumConformers() == 0:
            result.failed.append((i, -1, "no conformer"))
            continue
        mol = Chem.Mol(m)
        reason = _mmff_problem(mol)
        if reason is not None:
            result.failed.extend((i, c.GetId(), reason) for c in m.GetConformers())
            continue
        props = AllChem.MMFFGetMoleculeProperties(mol)
        heavy = [a.GetIdx() for a in mol.GetAtoms() if a.GetAtomicNum() > 1]
        for conf in m.GetConformers():
            cid = conf.GetId()
            start = Chem.Mol(mol, confId=cid)
            field_ = ff_helpers.MMFFGetMoleculeForceField(mol, props, confId=cid)
            e0 = field_.CalcEnergy()
            field_.Minimize(maxIts=max_iters)
            e1 = field_.CalcEnergy()
            if not (math.isfinite(e0) and math.isfinite(e1)):
                result.failed.append((i, cid, "non-finite MMFF energy (overlapping atoms?)"))
                continue
            relaxed = Chem.Mol(mol, confId=cid)
            rms = rdMolAlign.AlignMol(relaxed, start, atomMap=[(k, k) for k in heavy]) if len(heavy) > 1 else 0.0
            result.index.append((i, cid))
            before.append(e0)
            after.append(e1)
            moved.append(rms)
    result.energy_before, result.energy_after, result.rmsd = np.array(before), np.array(after), np.array(moved)
    return result


def _mmff_problem(mol: "Chem.Mol") -> str | None:
    try:
        Chem.SanitizeMol(mol)
    except (ValueError, RuntimeError) as err:
        return f"RDKit rejects the molecule: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
    if any(a.GetAtomicNum() > 1 and a.GetTotalNumHs(includeNeighbors=False) > 0 for a in mol.GetAtoms()):
        return "hydrogens are implicit; MMFF needs them as atoms with coordinates (Chem.AddHs(mol, addCoords=True))"
    if not AllChem.MMFFHasAllMoleculeParams(mol):
        return "MMFF94 has no parameters for some atom"
    return None
