"""``sciogen demo`` for time series: the shipped ``timeseries/exchange_rate`` model at work.

The shipped checkpoint carries one example window of its data (the pasts and truths of the
last ``exchange_rate_nips`` test window, 8 series), so the demo needs no download. It
forecasts those 8 series with TSDiff-Q, compares with Seasonal Naive on the same window
(GluonTS metrics), imputes a hidden block of one context and draws synthetic series.
Writes ``forecast.csv``, ``truth.csv``, ``results.json`` and ``timeseries.png``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run_demo", "load_shipped"]

NAME = "timeseries/exchange_rate"


def load_shipped(device: str = "cpu"):
    """The shipped model, through the registry when the domain is registered there."""
    from sciogen import registry

    from .generator import TimeSeriesGenerator

    try:
        return registry.load(NAME, device=device)
    except registry.UnknownNameError:
        if NAME in registry.available():
            checkpoint, _ = registry.read_checkpoint(NAME)
            return TimeSeriesGenerator.from_checkpoint(checkpoint, device=device)
        raise


def run_demo(out_dir: str | Path, quick: bool = False) -> list[dict[str, Any]]:
    """Run the demo, write its files to ``out_dir`` and return the result rows."""
    from .baselines import seasonal_naive
    from .io import write_forecast, write_truth
    from .metrics import evaluate
    from .representation import seasonality

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gen = load_shipped()
    example = gen.example
    if example is None:
        raise RuntimeError(f"the {NAME} checkpoint carries no example window")
    pasts, truth, freq = example["pasts"], example["truth"], gen.config.data.freq
    horizon = truth.shape[1]
    # the fast setting (DDIM, context replaced, no gradients): the model's own default may be
    # TSDiff's 100-step DDPM guidance, minutes for the 8 series on a CPU
    opts = {**gen.FAST_GUIDANCE, "steps": 20 if quick else 25}
    n = 8 if quick else 100
    start = time.perf_counter()
    paths = gen.forecast(pasts, horizon, n, seed=0, **opts)
    seconds = time.perf_counter() - start
    naive = seasonal_naive(pasts, horizon, seasonality(freq))
    rows = []
    for name, samples, secs in ((f"{NAME} (DDIM {opts['steps']} steps, context replaced, {n} paths)", paths, seconds),
                                ("Seasonal Naive", naive, None)):
        m = evaluate(samples, truth, past=pasts, freq=freq)
        rows.append({"model": name, "CRPS": m["CRPS"], "ND": m["ND"], "NRMSE": m["NRMSE"], "MASE": m["MASE"],
                     "seconds_per_series": secs / len(pasts) if secs else 0.0})
    write_forecast(paths, out_dir / "forecast.csv")
    write_truth(truth, out_dir / "truth.csv")
    # imputation: hide 20 values inside the first context
    hidden = np.array(pasts[0][-gen.context_length - gen.prediction_length :], dtype=np.float64)
    holes = hidden.copy()
    holes[40:60] = np.nan
    imputed = gen.impute(holes, num_samples=8 if quick else 32, seed=0, **opts)
    synthetic = gen.sample(4, steps=opts["steps"], solver="ddim", seed=0)
    (out_dir / "results.json").write_text(json.dumps({"window": "last exchange_rate_nips test window (8 series)",
                                                      "rows": rows}, indent=2))
    _picture(out_dir / "timeseries.png", pasts, truth, paths, hidden, holes, imputed, synthetic)
    return rows


def _picture(path, pasts, truth, paths, hidden, holes, imputed, synthetic) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # matplotlib is optional
        return
    from .plots import fan_chart, imputation_plot, samples_plot

    fig, axes = plt.subplots(2, 3, figsize=(14, 6))
    for i, ax in enumerate(axes[0]):
        hist = np.asarray(pasts[i])[-90:]
        fan_chart(paths[i], history=hist, truth=truth[i], ax=ax, title=f"series {i}: forecast")
    imputation_plot(holes, imputed, truth=hidden, ax=axes[1, 0], title="imputation of 20 hidden values")
    fan_chart(paths[3], history=np.asarray(pasts[3])[-90:], truth=truth[3], ax=axes[1, 1], title="series 3: forecast")
    samples_plot(np.asarray(synthetic), ax=axes[1, 2], title="synthetic series (unconditional)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
