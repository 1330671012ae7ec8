"""TSDiff on exchange_rate_nips, beside Seasonal Naive, a ridge forecaster and published numbers.

One run over the full test set (8 series x 5 rolling windows = 40 forecasts of 30
business days), every model scored by the same GluonTS-exact metrics code
(:mod:`sciogen.timeseries.metrics`): CRPS (mean_wQuantileLoss), ND, NRMSE, MASE. The
published anchors (TSDiff paper, Kollovieh et al. 2023, Table 2, CRPS only) are quoted,
not re-run.

    python benchmarks/timeseries.py                      # shipped model, its own forecasting defaults, 100 paths
    python benchmarks/timeseries.py --model runs/x --solver ddpm --steps 100 --scale 8 --samples 100

Besides the model's (or the given) forecasting setting, a fast setting is scored in the same
run: DDIM 25 steps with the observed context replaced at every step and no gradient
(``--no-fast`` to skip).

Writes ``benchmarks/results/timeseries.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from sciogen.timeseries import TimeSeriesGenerator, read_gluonts, seasonality
from sciogen.timeseries.baselines import RidgeForecaster, seasonal_naive
from sciogen.timeseries.metrics import evaluate, split_test_set

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results" / "timeseries.json"
DATA = ROOT.parent / "shared" / "datasets" / "timeseries" / "exchange_rate_nips"
PUBLISHED = {  # CRPS on exchange_rate_nips, TSDiff paper Table 2 (mean over runs)
    "TSDiff-Q (published)": 0.011,
    "DeepAR (published)": 0.011,
    "TFT (published)": 0.007,
}
KEYS = ("CRPS", "ND", "NRMSE", "MASE")


def _load(model: str) -> TimeSeriesGenerator:
    from sciogen import registry

    if Path(model).exists():
        return TimeSeriesGenerator.load(model, device="cpu")
    checkpoint, _ = registry.read_checkpoint(model)
    return TimeSeriesGenerator.from_checkpoint(checkpoint, device="cpu")


def _row(samples, truth, pasts, freq, seconds=None) -> dict:
    m = evaluate(samples, truth, past=pasts, freq=freq)
    row = {k: round(m[k], 5) for k in KEYS}
    if seconds is not None:
        row["seconds_per_series"] = round(seconds / len(pasts), 3)
    return row


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="timeseries/exchange_rate", help="shipped name, checkpoint or run folder")
    p.add_argument("--data", default=str(DATA), help="GluonTS-format exchange_rate_nips folder or archive")
    p.add_argument("--solver", default=None, choices=("ddim", "ddpm"), help="default: the model's config")
    p.add_argument("--steps", type=int, default=None, help="default: the model's config")
    p.add_argument("--replace", default=None, choices=("yes", "no"), help="replace the observed context (default: config)")
    p.add_argument("--no-fast", action="store_true", help="skip the fast DDIM-replacement row")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--scale", type=float, default=None, help="guidance scale (default: the model's config)")
    p.add_argument("--loss", default=None, choices=("quantile", "mse"))
    p.add_argument("--windows", type=int, default=None, help="only the last W rolling windows (default: all)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    data = read_gluonts(args.data) if Path(args.data).is_dir() else None
    if data is None:
        from sciogen.timeseries import load_exchange_rate_nips

        data = load_exchange_rate_nips(args.data)
    test = data.test if args.windows is None else data.test[-len(data.train) * args.windows :]
    pasts, truth = split_test_set(test, data.prediction_length)
    freq, horizon = data.freq, data.prediction_length

    gen = _load(args.model)
    guidance = {"solver": args.solver, "steps": args.steps, "scale": args.scale, "loss": args.loss,
                "replace": None if args.replace is None else args.replace == "yes"}
    guidance = {k: v for k, v in guidance.items() if v is not None}
    settings = [gen._guidance(**guidance)]
    fast = gen._guidance(**gen.FAST_GUIDANCE)
    if not args.no_fast and fast != settings[0]:
        settings.append(fast)
    rows = {}
    for opts in settings:
        start = time.perf_counter()
        paths = gen.forecast(pasts, horizon, args.samples, seed=args.seed, **opts)
        seconds = time.perf_counter() - start
        how = "replacement" if opts["scale"] == 0 and opts["replace"] else (
            f"TSDiff-{'Q' if opts['loss'] == 'quantile' else 'MS'}, scale {opts['scale']}"
            + (" + replacement" if opts["replace"] else ""))
        label = f"sciogen TSDiff ({how}, {opts['solver']} {opts['steps']} steps, {args.samples} paths)"
        rows[label] = {**_row(paths, truth, pasts, freq, seconds), "settings": opts}

    start = time.perf_counter()
    naive = seasonal_naive(pasts, horizon, seasonality(freq))
    rows["Seasonal Naive"] = _row(naive, truth, pasts, freq, time.perf_counter() - start)

    start = time.perf_counter()
    ridge = RidgeForecaster(horizon, gen.context_length).fit(data.train)
    ridge_paths = ridge.predict(pasts, args.samples)
    rows[f"Ridge (context {gen.context_length}, {args.samples} residual paths)"] = _row(
        ridge_paths, truth, pasts, freq, time.perf_counter() - start)
    for name, crps in PUBLISHED.items():
        rows[name] = {"CRPS": crps}

    result = {
        "dataset": f"exchange_rate_nips ({len(pasts)} forecasts: {len(data.train)} series x "
                   f"{len(pasts) // len(data.train)} rolling windows, horizon {horizon}, freq {freq})",
        "metrics": "GluonTS Evaluator definitions (sciogen.timeseries.metrics); CRPS = mean_wQuantileLoss over 0.1..0.9",
        "model": {"name": args.model, "trained_steps": gen.trained_steps, "context_length": gen.context_length,
                  "lags": gen.lags, "normalization": gen.config.data.normalization, "guidance": settings[0]},
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "cpu": platform.machine(), "device": "cpu"},
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    width = max(map(len, rows))
    print(f"{'model':<{width}}  " + "  ".join(f"{k:>8}" for k in (*KEYS, "s/series")))
    for name, row in rows.items():
        cells = [f"{row[k]:8.4f}" if k in row else f"{'':>8}" for k in KEYS]
        cells.append(f"{row['seconds_per_series']:8.3f}" if "seconds_per_series" in row else f"{'':>8}")
        print(f"{name:<{width}}  " + "  ".join(cells))
    return result


if __name__ == "__main__":
    main()
