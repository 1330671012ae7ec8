"""Longitudinal volumes (SADM-style) against the anchor of carrying the last visit forward.

The recipe ``domains/volumes/longitudinal.yaml`` is trained (resumed when its run folder has
checkpoints) on its synthetic longitudinal set. Evaluation uses *held-out synthetic subjects*:
the same four brains with new rates, visit times and deformation centres
(``synthetic_longitudinal(..., subjects_per_volume=3, missing=0, seed=123)``), 4 visits each.

- next visit: visit 3 predicted from visits {0, 1, 2}, {2} or {0, 2} (the others masked as
  missing), against the truth: mean |error| of one sample and of the mean of ``--n`` samples,
  PSNR (data range 2); the anchor is visit 2 itself (no change);
- forecast: visits 2 and 3 generated visit after visit from visits 0 and 1 (the generated
  visit 2 fed back), against carrying visit 1 forward.

    python benchmarks/volumes_longitudinal.py [--n 4] [--threads 2] [--runs runs]
        # writes benchmarks/results/volumes_longitudinal.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "volumes_longitudinal.json"
HISTORIES = {"visits 0, 1, 2 -> 3": [0, 1, 2], "visit 2 -> 3": [2], "visits 0, 2 -> 3": [0, 2]}


def _mean(values) -> float:
    return float(sum(values) / len(values))


def main() -> None:
    from sciogen.registry import load_run_config
    from sciogen.train.checkpoint import latest_checkpoint
    from sciogen.volumes import psnr
    from sciogen.volumes.longitudinal import LongitudinalVolumeGenerator, synthetic_longitudinal
    from sciogen.volumes.training import training_volumes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4, help="samples per prediction")
    parser.add_argument("--steps", type=int, default=20, help="solver steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", default=str(ROOT / "runs"))
    parser.add_argument("--train-steps", type=int, help="override the recipe's steps (a smoke run; not for results)")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    recipe = ROOT / "domains/volumes/longitudinal.yaml"
    config = load_run_config(recipe, [f"train.steps={args.train_steps}"] if args.train_steps else [])
    config.data.root = str(ROOT / config.data.root)
    run_dir = Path(args.runs) / "volumes-longitudinal"
    gen = LongitudinalVolumeGenerator(config)
    start = time.perf_counter()
    gen.fit(run_dir=run_dir, resume=latest_checkpoint(run_dir) is not None)
    train_seconds = time.perf_counter() - start

    volumes, _ = training_volumes(config.data)
    test = synthetic_longitudinal(volumes, visits=4, subjects_per_volume=3, missing=0.0, seed=123)
    results = {"benchmark": "longitudinal volumes: predicted next visit vs carrying the last visit forward",
               "recipe": "domains/volumes/longitudinal.yaml", "trained_steps": gen.trained_steps,
               "train_seconds_this_call": train_seconds, "held_out_subjects": len(test), "n": args.n,
               "steps": args.steps, "machine": {"cpu": platform.processor() or platform.machine(),
                                               "threads": args.threads, "torch": torch.__version__},
               "next_visit": {}, "forecast": {}}
    for name, keep in HISTORIES.items():
        last, one, mean, p_last, p_one = [], [], [], [], []
        for s in range(len(test)):
            present = torch.zeros(3, dtype=torch.bool)
            present[keep] = True
            truth = test.visits[s, 3]
            out = gen.predict(test.visits[s, :3], test.times[s, :3], float(test.times[s, 3]), present=present,
                              n=args.n, steps=args.steps, seed=s).as_tensor()
            carried = test.visits[s, max(keep)]
            last.append(float((carried - truth).abs().mean()))
            one.append(float((out[0] - truth).abs().mean()))
            mean.append(float((out.mean(0) - truth).abs().mean()))
            p_last.append(float(psnr(carried[None], truth[None], 2.0)))
            p_one.append(float(psnr(out[:1], truth[None], 2.0)))
        row = {"mae_last_visit": _mean(last), "mae_one_sample": _mean(one), "mae_mean_of_n": _mean(mean),
               "psnr_last_visit": _mean(p_last), "psnr_one_sample": _mean(p_one)}
        results["next_visit"][name] = row
        print(name, {k: round(v, 5) for k, v in row.items()}, flush=True)
    errors = {"carry visit 1 forward": [[], []], "one sample": [[], []], f"mean of {args.n}": [[], []]}
    for s in range(len(test)):
        out = gen.forecast(test.visits[s, :2], test.times[s, :2], test.times[s, 2:].tolist(), n=args.n,
                           steps=args.steps, seed=s).as_tensor()
        for j in range(2):
            truth = test.visits[s, 2 + j]
            errors["carry visit 1 forward"][j].append(float((test.visits[s, 1] - truth).abs().mean()))
            errors["one sample"][j].append(float((out[0, j] - truth).abs().mean()))
            errors[f"mean of {args.n}"][j].append(float((out[:, j].mean(0) - truth).abs().mean()))
    for name, (first, second) in errors.items():
        results["forecast"][name] = {"mae_visit_2": _mean(first), "mae_visit_3": _mean(second)}
        print("forecast", name, {k: round(v, 5) for k, v in results["forecast"][name].items()}, flush=True)
    out = Path(args.out)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
