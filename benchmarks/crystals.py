"""Perov-5 crystal structure prediction and de novo generation, all rows scored by one code.

One run on a fixed subset of the Perov-5 test file (500 crystals drawn with seed 0; their
material ids are written to the JSON), with the same StructureMatcher settings for every
row (stol 0.5, ltol 0.3, angle_tol 10, DiffCSP's validity filter):

1. the ground truth itself (the cap set by compositionally invalid ground truths);
2. floor: the ground-truth lattice and composition with uniformly random fractional coordinates;
3. ceiling: the ground truth with Gaussian noise of ``--noise`` Å on every Cartesian coordinate;
4. the sciogen model (default: the shipped ``crystals/perov5``): CSP at k = 1 with the
   model's default steps and (CSPNet models) with DiffCSP's 1,000 steps, and best of
   k = 20 (``--k20``); a UniGenX model (``crystals/perov5-unigenx``) is run the same way
   with ``--label``, its steps being solver steps per number;
5. de novo generation of ``--n-gen`` crystals: structural / compositional validity,
   uniqueness, novelty against the training file (val.csv) and the Wasserstein distances of
   density and element count against the subset;
6. the published numbers of DiffCSP and CDVAE as the issue quotes them from the DiffCSP
   paper (not measured here; they trained on the 11,356-crystal train.csv, ours on val.csv).

Seconds per structure are wall-clock on ``--threads`` CPU threads.

    python benchmarks/crystals.py [--data ../shared/datasets/crystals/perov_5] [--model crystals/perov5] [--k20]
    python benchmarks/crystals.py --model crystals/perov5-unigenx --label "sciogen UniGenX" \
        --out benchmarks/results/crystals_unigenx.json

Writes ``benchmarks/results/crystals.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Structure

import sciogen
from sciogen.crystals import read_cdvae_csv
from sciogen.crystals.metrics import evaluate, match_rate_and_rmse

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results" / "crystals.json"
DATA = ROOT.parent / "shared" / "datasets" / "crystals" / "perov_5"
PUBLISHED = {
    "DiffCSP (published, k=1)": {"match_rate": 0.5202, "rmse": 0.0760},
    "CDVAE (published, k=1)": {"match_rate": 0.4531, "rmse": 0.1138},
    "DiffCSP (published, de novo)": {"structural_validity": 1.0, "compositional_validity": 0.9885},
}


def random_coordinates(truth: list[Structure], rng: np.random.Generator) -> list[Structure]:
    return [Structure(s.lattice, s.species, rng.random((len(s), 3))) for s in truth]


def noisy(truth: list[Structure], sigma: float, rng: np.random.Generator) -> list[Structure]:
    return [Structure(s.lattice, s.species, s.cart_coords + sigma * rng.standard_normal((len(s), 3)),
                      coords_are_cartesian=True) for s in truth]


def csp_row(gen, truth, steps: int, k: int, seed: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    start = time.perf_counter()
    preds = [gen.sample(len(truth), composition=truth, steps=steps, seed=seed + j) for j in range(k)]
    seconds = time.perf_counter() - start
    torch.set_num_threads(1)
    nested = preds[0] if k == 1 else [list(group) for group in zip(*preds)]
    metrics = match_rate_and_rmse(nested, truth, k=None if k == 1 else k)
    return {**metrics, "k": k, "steps": steps, "s_per_structure": seconds / (k * len(truth))}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--n", type=int, default=500, help="test crystals in the fixed subset")
    parser.add_argument("--n-gen", type=int, default=1000, help="de novo crystals")
    parser.add_argument("--model", default="crystals/perov5", help="shipped name, checkpoint or run folder ('' to skip)")
    parser.add_argument("--steps", type=int, nargs="*", default=None, help="CSP step counts (default: the model's and 1000)")
    parser.add_argument("--k20", action="store_true", help="also best of 20 samples (20x the CSP time)")
    parser.add_argument("--noise", type=float, default=0.05, help="Å of the ceiling row's noise")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads while sampling")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--label", default="sciogen", help="name of the model's rows")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    clock = time.perf_counter()

    test = read_cdvae_csv(args.data / "test.csv")
    rng = np.random.default_rng(args.seed)
    subset = np.sort(rng.choice(len(test), size=min(args.n, len(test)), replace=False))
    truth = [test.structures[i] for i in subset]
    ids = [test.ids[i] for i in subset]

    rows: dict[str, dict] = {}
    rows["ground truth"] = match_rate_and_rmse(truth, truth)
    rows["floor: true lattice, random coordinates"] = match_rate_and_rmse(random_coordinates(truth, rng), truth)
    rows[f"ceiling: ground truth + {args.noise} Å noise"] = match_rate_and_rmse(noisy(truth, args.noise, rng), truth)

    model_info = None
    if args.model:
        gen = sciogen.load(args.model, device="cpu")
        model_info = {"model": args.model, "trained_steps": gen.trained_steps,
                      "parameters": sum(p.numel() for p in gen.model.parameters()), "sampling": vars(gen.config.sampling)}
        default_steps = {gen.config.sampling.steps} | ({1000} if gen.config.sampling.solver == "pc" else set())
        for steps in args.steps or sorted(default_steps):
            rows[f"{args.label} CSP k=1, {steps} steps"] = csp_row(gen, truth, steps, 1, args.seed, args.threads)
            print(rows[f"{args.label} CSP k=1, {steps} steps"], flush=True)
        if args.k20:
            steps = gen.config.sampling.steps
            rows[f"{args.label} CSP k=20, {steps} steps"] = csp_row(gen, truth, steps, 20, args.seed + 100, args.threads)
        torch.set_num_threads(args.threads)
        start = time.perf_counter()
        samples = gen.sample(args.n_gen, seed=args.seed + 1000)
        seconds = time.perf_counter() - start
        torch.set_num_threads(1)
        train = read_cdvae_csv(args.data / "val.csv").structures
        gen_metrics = evaluate(samples, truth, task="gen", train=train)
        rows[f"{args.label} de novo, {gen.config.sampling.steps} steps"] = {
            **gen_metrics, "s_per_structure": seconds / args.n_gen}
    result = {
        "benchmark": "Perov-5 CSP and de novo generation",
        "subset": {"file": "perov_5/test.csv", "n": len(truth), "seed": args.seed, "material_ids": ids},
        "matcher": {"stol": 0.5, "ltol": 0.3, "angle_tol": 10, "valid_filter": "diffcsp"},
        "model": model_info,
        "rows": rows,
        "published": PUBLISHED,
        "machine": {"platform": platform.platform(), "threads": args.threads, "torch": torch.__version__},
        "seconds": time.perf_counter() - clock,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float))
    for name, row in rows.items():
        print(f"{name:<45} " + "  ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, (int, float))))
    return result


if __name__ == "__main__":
    main()
