"""QM9 (no H) molecule metrics: calibration against DiGress, and the rows computable without a model.

1. Calibration: sciogen's validity / uniqueness on DiGress's 10,000 published QM9 (no H)
   samples (graph file ``samples_qm9_no_h.txt``: atom types C N O F, bond types 1-3),
   against the values DiGress reports for them (validity 99.2 %, uniqueness 96.9 %).
2. Rows of 1,000 molecules, all scored by the same code against the DiGress / PARD split:
   the first 1,000 held-out test molecules (the ceiling), the first 1,000 DiGress samples,
   and a null model (independent atom / bond types from the training marginals).
   Columns: validity, relaxed validity, uniqueness, novelty (vs the training split), FCD
   (vs the full test split, fcd-torch ChemNet), QED / SA / logP means.
3. The sciogen PARD model (default: the shipped ``molecules/qm9``) in the same run and by the
   same code: 1,000 molecules, 20 ancestral steps per block, with the seconds it took on
   ``--threads`` CPU threads; one row with PARD's plain sampler and one per ``--retries``
   setting of the valence-checked sampler (a block exceeding an atom's valence is redrawn).
4. Conditional generation: mean absolute error to a target for classifier-free-guided
   samples against unconditional ones: QED and logP (RDKit, computed exactly on every valid
   molecule); the HOMO-LUMO gap and the dipole moment mu predicted for every valid molecule
   by the QM9 property predictor (``--predictor``, default the shipped one; its own test
   MAE is written beside the rows), and, as a cross-check, their DFT values from QM9 for
   the generated molecules that are in QM9 (that subset's size is reported).

    python benchmarks/molecules.py [--data ../shared/datasets/molecules] [--n 1000] [--model molecules/qm9]

Writes ``benchmarks/results/molecules.json``.
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
from sciogen.molecules import (
    QM9_PROPERTIES,
    MoleculeEvaluator,
    MoleculeSpec,
    NullModel,
    load_qm9,
    molecule_properties,
    read_qm9_table,
)
from sciogen.molecules.metrics import sample_smiles, validity_metrics
from sciogen.molecules.properties import load_property_predictor
from sciogen.molecules.representation import canonical_smiles

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results" / "molecules.json"
DATA = ROOT.parent / "shared" / "datasets" / "molecules"
PUBLISHED_DIGRESS = {"validity": 0.992, "uniqueness": 0.969}  # the brief's DiGress values for these samples
KEYS = ("validity", "relaxed_validity", "uniqueness", "novelty", "fcd", "qed_mean", "sa_mean", "logp_mean")


def read_digress_graphs(path: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """DiGress's sample file: blocks of ``N=n``, ``X:`` atom types, ``E:`` n x n bond types."""
    lines = path.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("N="):
            n = int(line[2:])
            x = torch.tensor([int(v) for v in lines[i + 2].split()])
            e = torch.tensor([[int(v) for v in lines[i + 4 + k].split()] for k in range(n)])
            out.append((x, e))
            i += 4 + n
        else:
            i += 1
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--null-fit", type=int, default=20000, help="training molecules the null model is fitted on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--model", default="molecules/qm9", help="shipped name, checkpoint or run folder ('' to skip)")
    parser.add_argument("--steps", type=int, default=20, help="ancestral steps per block")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads while sampling")
    parser.add_argument("--extra-models", nargs="*", default=[],
                        help="more models (checkpoints or run folders) scored beside --model, e.g. runs/qm9-one-block")
    parser.add_argument("--retries", type=int, nargs="+", default=[0, 3],
                        help="valence_retries settings of the model rows (0 = PARD's plain sampler)")
    parser.add_argument("--n-cond", type=int, default=500, help="molecules per conditional setting (0: no conditional rows)")
    parser.add_argument("--predictor", default="qm9", help="QM9 property predictor for gap / mu (shipped name or .pt)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    clock = time.perf_counter()
    timings: dict[str, float] = {}

    t = time.perf_counter()
    train = load_qm9("train", path=args.data / "qm9", graphs=False)
    test = load_qm9("test", path=args.data / "qm9", graphs=False)
    timings["load_splits_s"] = time.perf_counter() - t

    digress = read_digress_graphs(args.data / "reference_samples" / "digress_samples_qm9_no_h.txt")
    plain = MoleculeSpec.qm9(charges=False)  # DiGress's decoder: C, N, O, F
    t = time.perf_counter()
    strict, relaxed = sample_smiles(digress, plain)
    calibration = validity_metrics(strict, relaxed, set(train.smiles))
    timings["calibration_s"] = time.perf_counter() - t
    calibration = {
        "samples": "DiGress generated_samples/samples_qm9_no_h.txt (commit 780242b)",
        "measured": calibration,
        "published": PUBLISHED_DIGRESS,
        "abs_diff_points": {k: round(100 * abs(calibration[k] - v), 3) for k, v in PUBLISHED_DIGRESS.items()},
    }

    evaluator = MoleculeEvaluator(None, train.smiles, test.smiles, fcd=True, properties=True)
    t = time.perf_counter()
    evaluator.fcd_reference()
    timings["fcd_reference_s"] = time.perf_counter() - t

    rows: dict[str, dict] = {}
    charged = MoleculeSpec.qm9()
    held_out = load_qm9("test", path=args.data / "qm9", limit=args.n, properties=False)
    null_train = load_qm9("train", path=args.data / "qm9", limit=args.null_fit, properties=False)
    null = NullModel.fit(null_train.graphs, charged)
    null_samples = null.sample(args.n, generator=torch.Generator().manual_seed(args.seed))
    for name, samples, spec in [
        (f"QM9 test split, first {args.n} (ceiling)", held_out.graphs, charged),
        (f"DiGress published samples, first {args.n}", digress[: args.n], plain),
        (f"null model (marginals of {args.null_fit} train molecules)", null_samples, charged),
    ]:
        t = time.perf_counter()
        evaluator.spec = spec
        metrics = evaluator(samples)
        metrics["seconds"] = time.perf_counter() - t
        rows[name] = {k: metrics[k] for k in (*KEYS, "num_samples", "seconds") if k in metrics}
        print(name, {k: round(v, 4) for k, v in rows[name].items()})

    model_info, conditional = None, None
    if args.model:
        gen = sciogen.load(args.model, device="cpu")
        evaluator.spec = gen.spec
        for retries in args.retries:
            torch.set_num_threads(args.threads)
            t = time.perf_counter()
            graphs = gen.sample(args.n, seed=args.seed, steps=args.steps, graphs=True, valence_retries=retries)
            seconds = time.perf_counter() - t
            torch.set_num_threads(1)
            metrics = evaluator(graphs)
            sampler = "plain PARD sampler" if retries == 0 else f"valence-checked, at most {retries} redraws per block"
            kind = "one block (DiGress-like)" if gen.config.diffusion.one_block else "PARD"
            name = f"sciogen {kind} ({args.model}, {args.steps} steps per block, {sampler})"
            rows[name] = {k: metrics[k] for k in (*KEYS, "num_samples") if k in metrics}
            rows[name].update(seconds_per_1000=1000 * seconds / args.n, threads=args.threads, valence_retries=retries)
            print(name, {k: round(v, 4) for k, v in rows[name].items()})
        model_info = {"name": args.model, "trained_steps": gen.trained_steps, "config": gen.config.model.__dict__,
                      "parameters": sum(p.numel() for p in gen.model.parameters())}
        for extra in args.extra_models:  # comparisons (e.g. the one-block model), plain sampler
            other = sciogen.load(extra, device="cpu")
            torch.set_num_threads(args.threads)
            t = time.perf_counter()
            graphs = other.sample(args.n, seed=args.seed, steps=args.steps, graphs=True, valence_retries=0)
            seconds = time.perf_counter() - t
            torch.set_num_threads(1)
            evaluator.spec = other.spec
            metrics = evaluator(graphs)
            kind = "one block (DiGress-like)" if other.config.diffusion.one_block else "PARD"
            name = f"sciogen {kind} ({extra}, {other.trained_steps} training steps, {args.steps} steps per block, plain sampler)"
            rows[name] = {k: metrics[k] for k in (*KEYS, "num_samples") if k in metrics}
            rows[name].update(seconds_per_1000=1000 * seconds / args.n, threads=args.threads, valence_retries=0)
            print(name, {k: round(v, 4) for k, v in rows[name].items()})
        if gen.conditions and args.n_cond > 0:
            table = read_qm9_table(args.data / "qm9")
            predictor = load_property_predictor(args.predictor)
            conditional = {"predictor": {"name": args.predictor, **predictor.metadata},
                           "rows": conditional_rows(gen, table, args.n_cond, args.steps, predictor)}

    result = {
        "dataset": "QM9 without hydrogens, DiGress / PARD split (numpy RandomState(42) permutation of 133,885 rows)",
        "split_sizes": {"train": len(train), "test": len(test)},
        "novelty_reference": "canonical SMILES of the training split",
        "fcd_reference": f"the full test split ({len(test)} molecules), fcd-torch ChemNet",
        "calibration": calibration,
        "rows": rows,
        "model": model_info,
        "conditional": conditional,
        "timings": {**timings, "total_s": time.perf_counter() - clock},
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": 1, "cpu": platform.machine()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(json.dumps(calibration, indent=2, default=float))
    return result


def conditional_rows(gen, table: dict, n: int, steps: int, predictor) -> list[dict]:
    """MAE to a target of guided samples vs unconditional samples (see the module docstring)."""
    dft_of = {}
    for smiles, props in zip(table["smiles"], table["properties"]):
        try:
            dft_of.setdefault(canonical_smiles(smiles), props)
        except ValueError:
            continue
    free = gen.sample(n, seed=100, steps=steps)
    out = []
    for name, target in (("qed", 0.6), ("logp", 1.0), ("gap", 0.30), ("mu", 4.0)):
        if name not in gen.conditions:
            continue
        for scale in (1.0, 2.0):
            cond = gen.sample(n, seed=101, steps=steps, condition={name: target}, guidance=scale)
            row = {"property": name, "target": target, "guidance": scale}
            for label, mols in (("conditioned", cond), ("unconditional", free)):
                valid = [m for m in mols if m is not None]
                smiles = [canonical_smiles(m) for m in valid]
                if name in QM9_PROPERTIES:
                    values = predictor.predict(valid, name)
                    column = QM9_PROPERTIES.index(name)
                    dft = np.array([float(dft_of[s][column]) for s in smiles if s in dft_of])
                    row[f"{label}_in_qm9"] = len(dft)
                    row[f"{label}_dft_mae"] = float(np.abs(dft - target).mean()) if len(dft) else float("nan")
                else:
                    values = molecule_properties(smiles, (name,))[:, 0]
                row[f"{label}_validity"] = len(smiles) / n
                row[f"{label}_mae"] = float(np.abs(values - target).mean()) if len(values) else float("nan")
                row[f"{label}_mean"] = float(values.mean()) if len(values) else float("nan")
            print(row)
            out.append(row)
    return out


if __name__ == "__main__":
    main()
