"""TSDiff on exchange_rate_nips, beside the naive baselines that fit the data, a ridge
forecaster and published numbers, with interval coverage and a conformal correction.

One run, every row scored by the same GluonTS-exact code (:mod:`sciogen.timeseries.metrics`)
on the same test windows (default: all of them, 8 series x 5 rolling windows = 40 forecasts of
30 business days): CRPS (mean_wQuantileLoss), ND, NRMSE, MASE, the coverage of the central
50 / 80 / 90 % intervals of the paths, and CRPS-sum (TimeGrad's, the 8 series' paths summed
window by window: independent paths for every univariate row).

Rows: the shipped model's stored forecasting default and its fast setting (DDIM 25 steps,
observed context replaced at every step, no gradient; ``--no-fast`` to skip, ``--no-default``
to score the fast setting alone); the random walk with volatility (last value + Gaussian
increments with the volatility of the last 200 steps); the seasonal naive with
seasonal-difference noise; Seasonal Naive; the ridge forecaster. Every row with more than one
path is scored again after a split-conformal correction of its intervals
(:mod:`sciogen.timeseries.calibration`) fitted on its own forecasts of the last
``--calibration-windows`` windows of the *training* range (0: no conformal rows;
``--model-calibration-windows`` for the diffusion rows, whose forecasts cost the most). The
ridge model for those windows is refitted without them; the diffusion model was trained on the
whole training range, so for it they are in-sample. Published anchors (TSDiff paper, Kollovieh et
al. 2023, Table 2, CRPS; TimeGrad, Rasul et al. 2021, CRPS-sum) are quoted, not re-run.

    python benchmarks/timeseries.py --data PATH/exchange_rate_nips --threads 1
    python benchmarks/timeseries.py --model-calibration-windows 1           # a cheaper conformal row
    python benchmarks/timeseries.py --model runs/x --solver ddpm --steps 100 --scale 8

Without ``--data`` the dataset registry's cached copy is used (``--download`` fetches it).
Writes ``benchmarks/results/timeseries.json`` after every row (``"complete": true`` at the end).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sciogen.timeseries import TimeSeriesGenerator, load_exchange_rate_nips, seasonality
from sciogen.timeseries.baselines import RidgeForecaster, random_walk, seasonal_difference_naive, seasonal_naive
from sciogen.timeseries.calibration import calibration_windows, fit_conformal
from sciogen.timeseries.metrics import COVERAGE_LEVELS, crps_sum, evaluate, split_test_set

OUT = Path(__file__).parent / "results" / "timeseries.json"
PUBLISHED = {  # exchange_rate_nips; TSDiff paper Table 2 (CRPS, mean over runs), TimeGrad Table 2 (CRPS-sum)
    "TSDiff-Q (published)": {"CRPS": 0.011},
    "DeepAR (published)": {"CRPS": 0.011},
    "TFT (published)": {"CRPS": 0.007},
    "TimeGrad (published, multivariate)": {"CRPS-sum": 0.006},
}
KEYS = ("CRPS", "ND", "NRMSE", "MASE")
COVERAGE = tuple(f"Coverage{round(100 * c)}" for c in COVERAGE_LEVELS)
Predict = Callable[[list, int], np.ndarray]  # (pasts, seed) -> (B, S, H)


@dataclass
class Forecaster:
    """One benchmark row: ``predict`` on the test windows, ``calibrate`` on the last
    ``calibration`` training windows per series (None or 0: no conformal row), ``settings``
    recorded with the row."""

    label: str
    predict: Predict
    calibrate: Predict | None = None
    calibration: int = 0
    settings: dict | None = None


def _load(model: str) -> TimeSeriesGenerator:
    from sciogen import registry

    if Path(model).exists():
        return TimeSeriesGenerator.load(model, device="cpu")
    checkpoint, _ = registry.read_checkpoint(model)
    return TimeSeriesGenerator.from_checkpoint(checkpoint, device="cpu")


def _row(samples: np.ndarray, truth: np.ndarray, pasts: list, freq: str, num_series: int,
         seconds: float | None = None) -> dict:
    """The metrics of one row; CRPS-sum over the ``num_series`` series of each window."""
    m = evaluate(samples, truth, past=pasts, freq=freq, coverage_levels=COVERAGE_LEVELS)
    row = {k: round(m[k], 5) for k in KEYS}
    if samples.shape[1] > 1:  # one path has no interval
        row.update({key: round(m[f"IntervalCoverage[{c}]"], 4) for key, c in zip(COVERAGE, COVERAGE_LEVELS)})
    w = len(pasts) // num_series
    joint = samples.reshape(w, num_series, *samples.shape[1:]).transpose(0, 2, 1, 3)  # (W, S, D, H)
    row["CRPS-sum"] = round(crps_sum(joint, truth.reshape(w, num_series, -1)), 5)
    if seconds is not None:
        row["seconds_per_series"] = round(seconds / len(pasts), 3)
    return row


def _print(name: str, row: dict, width: int = 84) -> None:  # a longer name shifts its line
    cells = [f"{row[k]:8.4f}" if k in row else f"{'':>8}" for k in (*KEYS, *COVERAGE, "CRPS-sum")]
    cells.append(f"{row['seconds_per_series']:8.3f}" if "seconds_per_series" in row else f"{'':>8}")
    print(f"{name:<{width}}  " + "  ".join(cells), flush=True)


def _guidance_label(opts: dict, n: int) -> str:
    how = "replacement" if opts["scale"] == 0 and opts["replace"] else (
        f"TSDiff-{'Q' if opts['loss'] == 'quantile' else 'MS'}, scale {opts['scale']}"
        + (" + replacement" if opts["replace"] else ""))
    return f"sciogen TSDiff ({how}, {opts['solver']} {opts['steps']} steps, {n} paths)"


def forecasters(gen: TimeSeriesGenerator, train: list, horizon: int, freq: str, settings: list[dict], *,
                num_samples: int, calibration: int, model_calibration: int, seed: int) -> list[Forecaster]:
    """The rows, cheap ones first, the stored default last; ``calibration`` / ``model_calibration``
    training windows for the conformal rows of the baselines / of the diffusion model."""
    n, m = num_samples, seasonality(freq)
    ridge = RidgeForecaster(horizon, gen.context_length, seed=seed).fit(train)
    cut = calibration * horizon  # the ridge model of the calibration windows never sees them
    ridge_cal = RidgeForecaster(horizon, gen.context_length, seed=seed).fit([s.target[:-cut] for s in train]) \
        if calibration else None

    def walk(x, s):
        return random_walk(x, horizon, n, window=200, generator=s)

    def seasonal_walk(x, s):
        return seasonal_difference_naive(x, horizon, m, n, generator=s)

    rows = [
        Forecaster(f"Random walk with volatility (last 200 steps, {n} paths)", walk, walk, calibration),
        Forecaster(f"Seasonal naive + seasonal-difference noise (m = {m}, {n} paths)", seasonal_walk, seasonal_walk,
                   calibration),
        Forecaster("Seasonal Naive", lambda x, s: seasonal_naive(x, horizon, m)),  # one path: nothing to calibrate
        Forecaster(f"Ridge (context {gen.context_length}, {n} residual paths)", lambda x, s: ridge.predict(x, n),
                   (lambda x, s: ridge_cal.predict(x, n)) if ridge_cal else None, calibration),
    ]
    for opts in settings[::-1]:
        def model(x, s, o=opts):
            return np.asarray(gen.forecast(x, horizon, n, seed=s, **o))

        rows.append(Forecaster(_guidance_label(opts, n), model, model, model_calibration, opts))
    return rows


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="timeseries/exchange_rate", help="shipped name, checkpoint or run folder")
    p.add_argument("--data", default=None, help="exchange_rate_nips folder or .tar.gz (default: the dataset cache)")
    p.add_argument("--download", action="store_true", help="fetch exchange_rate_nips into the cache if absent")
    p.add_argument("--solver", default=None, choices=("ddim", "ddpm"), help="default: the model's config")
    p.add_argument("--steps", type=int, default=None, help="default: the model's config")
    p.add_argument("--replace", default=None, choices=("yes", "no"), help="replace the observed context (default: config)")
    p.add_argument("--scale", type=float, default=None, help="guidance scale (default: the model's config)")
    p.add_argument("--loss", default=None, choices=("quantile", "mse"))
    p.add_argument("--no-fast", action="store_true", help="skip the fast DDIM-replacement row")
    p.add_argument("--no-default", action="store_true", help="skip the stored (or given) setting: the fast one alone")
    p.add_argument("--samples", type=int, default=100, help="paths per forecast, every row")
    p.add_argument("--windows", type=int, default=None, help="only the last W rolling test windows (default: all)")
    p.add_argument("--calibration-windows", type=int, default=5,
                   help="last training windows per series for the conformal rows (0: no conformal rows)")
    p.add_argument("--model-calibration-windows", type=int, default=None,
                   help="the same for the diffusion rows (default: --calibration-windows)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_exchange_rate_nips(args.data, download=args.download)
    num_series, horizon, freq = len(data.train), data.prediction_length, data.freq
    test = data.test if args.windows is None else data.test[-num_series * args.windows :]
    pasts, truth = split_test_set(test, horizon)
    if len(pasts) % num_series or any(len(pasts[i]) != len(pasts[i - i % num_series]) for i in range(len(pasts))):
        raise ValueError(f"the test set is not {num_series} series window by window; CRPS-sum needs that order")

    gen = _load(args.model)
    guidance = {"solver": args.solver, "steps": args.steps, "scale": args.scale, "loss": args.loss,
                "replace": None if args.replace is None else args.replace == "yes"}
    stored = gen._guidance(**{k: v for k, v in guidance.items() if v is not None})
    fast = gen._guidance(**gen.FAST_GUIDANCE)
    settings = [] if args.no_default else [stored]
    if not args.no_fast and fast not in settings:
        settings.append(fast)
    model_calibration = args.calibration_windows if args.model_calibration_windows is None \
        else args.model_calibration_windows
    rows_todo = forecasters(gen, data.train, horizon, freq, settings, num_samples=args.samples,
                            calibration=args.calibration_windows, model_calibration=model_calibration, seed=args.seed)

    result = {
        "dataset": f"exchange_rate_nips ({len(pasts)} forecasts: {num_series} series x {len(pasts) // num_series} "
                   f"rolling windows{'' if args.windows is None else ' (the last ones)'} of the test set "
                   f"({len(data.test) // num_series} windows), horizon {horizon}, freq {freq})",
        "setting": {"samples": args.samples, "windows": args.windows, "calibration_windows": args.calibration_windows,
                    "model_calibration_windows": model_calibration, "seed": args.seed},
        "metrics": "GluonTS Evaluator definitions (sciogen.timeseries.metrics); CRPS = mean_wQuantileLoss over "
                   "0.1..0.9; CRPS-sum = the same over 0.05..0.95 of the sum of the 8 series per window "
                   "(TimeGrad's m_sum_mean_wQuantileLoss; the paths of univariate rows are independent)",
        "coverage": "fraction of the true values inside the central 50 / 80 / 90 % intervals of the paths "
                    "(sciogen.timeseries.metrics.interval_coverage)",
        "conformal": (f"split-conformal interval factors (sciogen.timeseries.calibration) fitted on each "
                      f"forecaster's own {args.samples}-path forecasts of the last windows of {horizon} steps of "
                      f"the training series ({args.calibration_windows} per series for the baselines, "
                      f"{model_calibration} for the diffusion rows; seed + 1), applied to its test paths; ridge "
                      "refitted without those windows, the diffusion model trained on them (in-sample)"
                      if args.calibration_windows or model_calibration else "not run"),
        "model": {"name": args.model, "trained_steps": gen.trained_steps, "context_length": gen.context_length,
                  "lags": gen.lags, "normalization": gen.config.data.normalization, "guidance": stored},
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "cpu": platform.machine(), "device": "cpu"},
        "complete": False,
        "rows": {},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows, test_paths = {}, {}

    def write() -> None:  # after every row: a long run leaves what it has measured
        order = [name for f in rows_todo for name in rows if name == f.label or name.startswith(f"{f.label} + conformal")]
        result["rows"] = {**{name: rows[name] for name in order}, **PUBLISHED}
        out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"{'model':<84}  " + "  ".join(f"{k:>8}" for k in (*KEYS, *COVERAGE, "CRPS-sum", "s/series")), flush=True)
    for f in rows_todo:  # every test row first (the stored default before any calibration)
        start = time.perf_counter()
        test_paths[f.label] = np.asarray(f.predict(pasts, args.seed), dtype=np.float64)
        rows[f.label] = _row(test_paths[f.label], truth, pasts, freq, num_series, time.perf_counter() - start)
        if f.settings is not None:
            rows[f.label]["settings"] = f.settings
        _print(f.label, rows[f.label])
        write()
    for f in rows_todo:
        if f.calibrate is None or not f.calibration:
            continue
        start = time.perf_counter()
        cal_pasts, cal_truth = calibration_windows(data.train, horizon, f.calibration)
        cal = fit_conformal(f.calibrate(cal_pasts, args.seed + 1), cal_truth, COVERAGE_LEVELS)
        name = f"{f.label} + conformal ({f.calibration} training windows per series)"
        rows[name] = {**_row(cal.apply(test_paths[f.label]), truth, pasts, freq, num_series),
                      "calibration_seconds": round(time.perf_counter() - start, 1),
                      "factors": {str(c): round(v, 4) for c, v in zip(cal.levels, cal.factors)}}
        _print(name, rows[name])
        write()
    result["complete"] = True
    write()
    return result


if __name__ == "__main__":
    main()
