"""Forecasts beyond the trained window: block-wise TSDiff on exchange_rate_nips, horizon 2 x 30.

The shipped model sees windows of 120 + 30 steps. A 60-step forecast is generated block by
block (``TimeSeriesGenerator.forecast`` with ``prediction_length=60``): each path's first
30 steps are forecast from the observed past, then the next 30 from the past extended by
that path, so every block is conditioned on the blocks before it. Scored on the rolling
test windows whose 60 following values are known (the first 4 of 5 per series, 32
forecasts), beside Seasonal Naive and the one-block (30-step) forecasts of the same origins.

    python benchmarks/timeseries_long.py --samples 100 --threads 2

Writes ``benchmarks/results/timeseries_long.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from timeseries import DATA, KEYS, _load  # noqa: E402  (benchmarks/ is the working folder of the scripts)

from sciogen.timeseries import read_gluonts, seasonality
from sciogen.timeseries.baselines import seasonal_naive
from sciogen.timeseries.metrics import evaluate

OUT = Path(__file__).parent / "results" / "timeseries_long.json"


def long_horizon_windows(data, blocks: int):
    """(pasts, truths) for every rolling test origin with ``blocks x prediction_length`` known
    values after it. GluonTS's test split holds W rolling windows per series, the last one
    the whole series; origin k of W is ``len - (W - k) x prediction_length``."""
    h = data.prediction_length
    windows = len(data.test) // len(data.train)
    pasts, truths = [], []
    for full in data.test[-len(data.train):]:  # the last rolling window: the whole series
        values = np.asarray(full.target, dtype=np.float64)
        for k in range(windows - blocks + 1):
            origin = len(values) - (windows - k) * h
            pasts.append(values[:origin])
            truths.append(values[origin : origin + blocks * h])
    return pasts, np.stack(truths)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="timeseries/exchange_rate")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = read_gluonts(args.data)
    gen = _load(args.model)
    pasts, truth = long_horizon_windows(data, args.blocks)
    h, horizon, freq = data.prediction_length, args.blocks * data.prediction_length, data.freq
    opts = gen._guidance(**gen.FAST_GUIDANCE)
    start = time.perf_counter()
    paths = gen.forecast(pasts, horizon, args.samples, seed=args.seed, **opts)
    seconds = time.perf_counter() - start
    naive = seasonal_naive(pasts, horizon, seasonality(freq))

    def score(samples, steps):
        m = evaluate(samples[..., :steps], truth[:, :steps], past=pasts, freq=freq)
        return {k: round(m[k], 5) for k in KEYS}

    rows = {
        f"sciogen TSDiff, {args.blocks} blocks (fast: ddim 25 steps, context replaced, {args.samples} paths)":
            {**score(paths, horizon), "seconds_per_series": round(seconds / len(pasts), 3)},
        "Seasonal Naive": score(naive, horizon),
        "sciogen TSDiff, first block only (steps 1-30)": score(paths, h),
        "Seasonal Naive, steps 1-30": score(naive, h),
    }
    late = {"sciogen TSDiff, second block (steps 31-60)": evaluate(paths[..., h:horizon], truth[:, h:horizon])["CRPS"],
            "Seasonal Naive, steps 31-60": evaluate(naive[..., h:horizon], truth[:, h:horizon])["CRPS"]}
    result = {"dataset": f"exchange_rate_nips test origins with {horizon} known future values ({len(pasts)} forecasts)",
              "horizon": horizon, "trained_prediction_length": h, "guidance": opts, "rows": rows,
              "crps_of_the_later_block": {k: round(v, 5) for k, v in late.items()}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
