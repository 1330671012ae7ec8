"""Space group on request with the shipped Perov-5 model: success rate per group, against the anchor.

One run, one CPU thread, pymatgen's SpacegroupAnalyzer at symprec 0.1 Å for every check:

1. the space-group distribution of the training file (val.csv, which the model was trained on) and
   of test.csv: Perov-5 holds five groups, P4/mmm (123), Pmm2 (25), P4mm (99), Pm-3m (221) and
   Pmmm (47), the five groups measured here;
2. anchor: ``--n-free`` unconstrained de novo samples: their group distribution, its total-variation
   distance to the training file's, and per group the fraction that lands in it by itself;
3. per group, ``--n`` de novo samples with ``space_group=`` and the training crystals' Wyckoff
   templates (``reference=`` the training file, the default when the data can be read);
4. per group, ``--n-uniform`` de novo samples with no reference (every Wyckoff assignment that fits
   equally likely, the fallback without training data);
5. per group, structure prediction for ``--n-csp`` compositions of test crystals in that group, with
   ``space_group=`` and without (its anchor).

Per row: the rate in the requested group over all samples and over the structurally valid ones,
structural / compositional validity, the groups found, seconds per structure.

    python benchmarks/crystals_spacegroup.py [--data ../shared/datasets/crystals/perov_5] [--n 50]

Writes ``benchmarks/results/crystals_spacegroup.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

import sciogen
from sciogen.crystals import read_cdvae_csv
from sciogen.crystals.metrics import assess
from sciogen.crystals.symmetry import SYMPREC, detect_space_group, space_group, space_group_distance

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results" / "crystals_spacegroup.json"
DATA = ROOT.parent / "shared" / "datasets" / "crystals" / "perov_5"
GROUPS = (221, 123, 99, 25, 47)


def score(structures: list, group: int | None, seconds: float) -> dict:
    """Rate in ``group`` (all samples / structurally valid ones), validity, the groups found."""
    found = [detect_space_group(s) for s in structures]
    checked = [assess(s) for s in structures]
    valid = [f for f, a in zip(found, checked) if a.structural]
    out = {"n": len(structures), "structural_validity": sum(a.structural for a in checked) / len(checked),
           "compositional_validity": sum(a.compositional for a in checked) / len(checked),
           "groups_found": {str(k[0]) if k else "none": v for k, v in Counter(found).most_common()},
           "s_per_structure": seconds / len(structures)}
    if group is not None:
        out["rate"] = sum(1 for f in found if f and f[0] == group) / len(found)
        out["rate_of_valid"] = sum(1 for f in valid if f and f[0] == group) / max(len(valid), 1)
    return out


def distribution(structures: list) -> dict[int, float]:
    counts = Counter(f[0] for s in structures if (f := detect_space_group(s)) is not None)
    total = sum(counts.values())
    return {k: counts[k] / total for k in sorted(counts)}


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder with the Perov-5 val.csv and test.csv")
    parser.add_argument("--model", default="crystals/perov5")
    parser.add_argument("--groups", type=int, nargs="+", default=list(GROUPS))
    parser.add_argument("--n", type=int, default=50, help="de novo samples per group, training templates")
    parser.add_argument("--n-uniform", type=int, default=20, help="de novo samples per group, no reference")
    parser.add_argument("--n-csp", type=int, default=20, help="test compositions per group (CSP, with and without)")
    parser.add_argument("--n-free", type=int, default=200, help="unconstrained de novo samples (the anchor)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    train = read_cdvae_csv(args.data / "val.csv").structures
    test = read_cdvae_csv(args.data / "test.csv").structures
    gen = sciogen.load(args.model)
    steps = args.steps or gen.config.sampling.steps
    result: dict = {
        "benchmark": "space group on request, Perov-5", "model": args.model, "steps": steps, "symprec": SYMPREC,
        "method": "projection onto a Wyckoff template after every step (sciogen.crystals.symmetry)",
        "distributions": {"train (val.csv)": distribution(train), "test": distribution(test)}, "rows": {},
    }
    rows = result["rows"]
    print(f"train groups: {result['distributions']['train (val.csv)']}", flush=True)

    free, sec = timed(lambda: gen.sample(args.n_free, steps=steps, seed=args.seed))
    rows["unconstrained"] = score(free, None, sec)
    rows["unconstrained"]["distribution"] = distribution(free)
    rows["unconstrained"]["tv_distance_to_train"] = space_group_distance(distribution(free),
                                                                         result["distributions"]["train (val.csv)"])
    print("unconstrained", rows["unconstrained"], flush=True)

    test_groups = [f[0] if (f := detect_space_group(s)) else None for s in test]
    for i, group in enumerate(args.groups):
        name = space_group(group).name
        seed = args.seed + 100 * (i + 1)
        out, sec = timed(lambda: gen.sample(args.n, space_group=group, reference=train, steps=steps, seed=seed))
        rows[f"{name}: de novo, training templates"] = {**score(out, group, sec),
                                                        "anchor_unconstrained": rows["unconstrained"]["distribution"]
                                                        .get(group, 0.0), "templates": dict(Counter(out.templates))}
        out, sec = timed(lambda: gen.sample(args.n_uniform, space_group=group, reference=[], steps=steps, seed=seed))
        rows[f"{name}: de novo, uniform templates"] = score(out, group, sec)
        picks = [s for s, g in zip(test, test_groups) if g == group]
        picks = [picks[j] for j in np.random.default_rng(seed).choice(len(picks), min(args.n_csp, len(picks)),
                                                                         replace=False)]
        out, sec = timed(lambda: gen.sample(len(picks), composition=picks, space_group=group, reference=train,
                                            steps=steps, seed=seed))
        rows[f"{name}: CSP, training templates"] = score(out, group, sec)
        out, sec = timed(lambda: gen.sample(len(picks), composition=picks, steps=steps, seed=seed))
        rows[f"{name}: CSP, unconstrained (anchor)"] = score(out, group, sec)
        for key in [k for k in rows if k.startswith(name)]:
            print(key, {k: v for k, v in rows[key].items() if k != "templates"}, flush=True)
    result["machine"] = {"platform": platform.platform(), "threads": 1, "torch": torch.__version__}
    result["seconds"] = time.perf_counter() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} in {result['seconds']:.0f} s")
    return result


if __name__ == "__main__":
    main()
