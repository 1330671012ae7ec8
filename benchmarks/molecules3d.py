"""QM9 with hydrogens in 3D: EDM's table for the sciogen model beside its anchors, in one run.

Rows of ``--n`` molecules, all scored by the same code (:func:`sciogen.molecules3d.evaluate`:
EDM's atom / molecule stability from its bond-length tables, RDKit validity of the largest
fragment, uniqueness over valid, novelty over unique against the training split):

1. ``qm9 test (DFT)``: the first ``--n`` held-out test molecules of the DiGress split, their
   DFT geometries (the ceiling: EDM reports 99.0 % atom / 95.2 % molecule stability for QM9).
2. ``random atoms``: each test molecule's atoms at random positions in a ball of its radius
   (the floor: what stability the tables give to geometry without chemistry).
3. ``sciogen`` models (``--model``, default the shipped ``molecules3d/qm9-unigenx``; repeatable): ``--n``
   de novo samples, ``--steps`` solver steps of each ``--solver`` (repeatable), atom counts from
   the training histogram, with the seconds per molecule on ``--threads`` CPU threads.
4. EDM / GeoLDM as published (QM9 with H, 10,000 samples, 1,000 steps), quoted, not rerun.

And the conformer anchor every user has: RDKit ETKDG(v3)+MMFF, ``2 x`` as many conformers
as references, COV-R at 0.5 Å and MAT-R against the DFT geometry of ``--conformer-molecules``
test molecules (one reference each, so COV-R is the fraction of molecules with a conformer
within 0.5 Å of the DFT one), with the same for a UniGenX model's conformers of the same
SMILES; energy sanity of every conformer set: the MMFF94 energy drop and the heavy-atom RMSD
moved by a 200-step MMFF relaxation (medians).

    python benchmarks/molecules3d.py --data ../shared/datasets/molecules/qm9/qm9_xyz.csv.gz [--n 1000]

Writes ``benchmarks/results/molecules3d.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

import sciogen
from sciogen.molecules3d import coverage_matching, etkdg_conformers, evaluate, load_qm9_3d, mmff_relaxation

PUBLISHED = {
    # Hoogeboom et al. 2022, Table 2 (QM9, 10,000 samples)
    "EDM (published)": {"atom_stability": 0.987, "molecule_stability": 0.820, "validity": 0.919,
                        "uniqueness_x_validity": 0.907},
    # Xu et al. 2023, Table 1
    "GeoLDM (published)": {"atom_stability": 0.989, "molecule_stability": 0.894, "validity": 0.938,
                           "uniqueness_x_validity": 0.927},
}


def random_atoms(test, seed: int):
    """The test molecules' atoms at uniform random positions in a ball of each one's radius."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.zeros_like(test.positions)
    for i in range(len(test)):
        m = test.mask[i]
        radius = float(test.positions[i][m].norm(dim=-1).max())
        n = int(m.sum())
        direction = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
        pos[i, :n] = direction * radius * torch.rand(n, 1, generator=g) ** (1 / 3)
    return pos


def conformer_rows(test, k: int, seed: int) -> dict:
    """ETKDG(+MMFF) conformers of the first ``k`` test molecules against their DFT geometry."""
    out = {}
    for mmff in (False, True):
        cov, mat, failed, kept = [], [], 0, []
        start = time.perf_counter()
        for i in range(k):
            reference = test.to_mol(i)
            smiles = test.smiles[i]
            try:
                generated = etkdg_conformers(smiles, 2, seed=seed, mmff=mmff)
                scores = coverage_matching(generated, reference, threshold=0.5)
            except (ValueError, RuntimeError):
                failed += 1
                continue
            kept.append(generated)
            cov.append(scores["cov_r"])
            if "mat_r" in scores:
                mat.append(scores["mat_r"])
        name = "RDKit ETKDGv3" + (" + MMFF" if mmff else "")
        out[name] = {"cov_r_0.5": float(np.mean(cov)) if cov else 0.0, "mat_r": float(np.mean(mat)) if mat else None,
                     "molecules": k, "failed": failed, "conformers_per_molecule": 2,
                     "seconds": round(time.perf_counter() - start, 1),
                     "mmff_relaxation": mmff_relaxation(kept, max_iters=200).summary()}
    return out


def model_conformer_row(gen, test, k: int, seed: int, steps: int | None) -> dict:
    """A UniGenX model's conformers (2 per molecule, as the ETKDG rows) of the first ``k`` test
    molecules, from their QM9 SMILES, against the DFT geometry."""
    cov, mat, failed, reasons, kept = [], [], 0, [], []
    start = time.perf_counter()
    for i in range(k):
        try:
            generated = gen.conformers(test.smiles[i], 2, seed=seed + i, steps=steps)
            kept.append(generated)
            scores = coverage_matching(generated, test.to_mol(i), threshold=0.5)
        except (ValueError, RuntimeError) as err:
            failed += 1
            reasons.append(f"{test.smiles[i]}: {str(err)[:120]}")
            continue
        cov.append(scores["cov_r"])
        if "mat_r" in scores:
            mat.append(scores["mat_r"])
    return {"cov_r_0.5": float(np.mean(cov)) if cov else 0.0, "mat_r": float(np.mean(mat)) if mat else None,
            "molecules": k, "failed": failed, "failures": reasons[:5], "conformers_per_molecule": 2,
            "seconds": round(time.perf_counter() - start, 1), "mmff_relaxation": mmff_relaxation(kept, max_iters=200).summary()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="QM9 in 3D: a qm9_xyz.csv.gz table or qm9pack folder (default: the registry's copy)")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--model", action="append", help="shipped name, checkpoint or run folder (repeatable)")
    parser.add_argument("--solver", action="append", help="core solver (repeatable; default: the model's)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--conformer-molecules", type=int, default=100)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "molecules3d.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    train = load_qm9_3d("train", path=args.data)
    test = load_qm9_3d("test", path=args.data, limit=max(args.n, args.conformer_molecules))
    train_smiles = [s for s in train.smiles if s]
    rows: dict[str, dict] = {}
    conformer_models: dict[str, dict] = {}
    n = min(args.n, len(test))
    rows["qm9 test (DFT)"] = evaluate(test.types[:n], test.positions[:n], test.mask[:n], vocabulary=test.vocabulary,
                                      train_smiles=train_smiles)
    rows["random atoms"] = evaluate(test.types[:n], random_atoms(test, args.seed)[:n], test.mask[:n],
                                    vocabulary=test.vocabulary, train_smiles=train_smiles)
    for name in args.model or ["molecules3d/qm9-unigenx"]:
        gen = sciogen.load(name, device="cpu")
        defaults = gen.config.sampling
        for solver in args.solver or [defaults.solver]:
            steps = args.steps or defaults.steps
            start = time.perf_counter()
            samples = gen.sample(args.n, seed=args.seed, solver=solver, steps=steps)
            seconds = time.perf_counter() - start
            row = gen.evaluate(samples, train_smiles)
            row.update({"solver": solver, "steps": steps, "seconds_per_molecule": round(seconds / args.n, 4),
                        "trained_steps": gen.trained_steps})
            rows[f"sciogen {name} ({solver}, {steps} steps)"] = row
        if getattr(gen, "kind", "edm") == "unigenx":
            k = min(args.conformer_molecules, len(test))
            conformer_models[f"sciogen {name} (conformers)"] = model_conformer_row(gen, test, k, args.seed, args.steps)
    for row in rows.values():
        if "validity" in row and "uniqueness" in row:
            row["uniqueness_x_validity"] = row["validity"] * row["uniqueness"]
    result = {
        "benchmark": "QM9 with H, 3D: EDM's metrics",
        "n": args.n, "seed": args.seed, "threads": args.threads,
        "torch": torch.__version__, "sciogen": sciogen.__version__, "machine": platform.machine(),
        "rows": rows, "published": PUBLISHED,
        "conformers": {**conformer_rows(test, min(args.conformer_molecules, len(test)), args.seed), **conformer_models},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for name, row in {**rows, **PUBLISHED}.items():
        cells = "  ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float))
        print(f"{name:55s} {cells}")
    for name, row in result["conformers"].items():
        relax = row["mmff_relaxation"]
        print(f"{name:55s} COV-R {row['cov_r_0.5']:.3f}  MAT-R {row['mat_r']}  MMFF drop {relax.get('energy_drop_median')} "
              f"kcal/mol, moved {relax.get('rmsd_median')} A")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
