"""Turn a training run into the shipped ``timeseries/exchange_rate`` checkpoint.

    python domains/timeseries/export.py runs/exchange_rate sciogen/checkpoints/timeseries-exchange_rate.pt

Keeps the EMA weights only (as the sampling weights), in half precision (the S4D kernel
parameters in single precision), drops the trainer
state, and stores the last test window of exchange_rate_nips (8 pasts of lag history +
context, and their truths) so that ``sciogen demo`` and the notebook need no download. The forecasting
defaults (guidance scale, replacement of the context, solver) are chosen by
:meth:`TimeSeriesGenerator.select_guidance` among ``CANDIDATES`` on the last two
30-step windows of the *training* series (16 paths), never on the test set.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sciogen.timeseries import TimeSeriesGenerator, read_gluonts
from sciogen.timeseries.metrics import split_test_set
from sciogen.train.checkpoint import save_checkpoint

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "timeseries" / "exchange_rate_nips"


#: forecasting settings tried on the validation windows: TSDiff-Q guidance with DDPM (the paper's,
#: scale 8 included) and with DDIM (fast), and replacement of the observed context (not in TSDiff)
CANDIDATES = (
    *({"solver": "ddpm", "steps": 100, "scale": s, "replace": False} for s in (1.0, 2.0, 4.0, 8.0)),
    {"solver": "ddpm", "steps": 100, "scale": 1.0, "replace": True},
    {"solver": "ddim", "steps": 25, "scale": 0.5, "replace": False},
    *({"solver": "ddim", "steps": 25, "scale": s, "replace": True} for s in (0.0, 0.5)),
)


def export(source: str, destination: str, data: str | Path = DATA, candidates=CANDIDATES) -> Path:
    gen = TimeSeriesGenerator.load(source, device="cpu")
    dataset = read_gluonts(data)
    if candidates:
        for options, crps in gen.select_guidance(dataset.train, candidates, windows=2, num_samples=16):
            print(f"validation CRPS {crps:.5f}  {options}")
        print("chosen:", gen._guidance())
    pasts, truth = split_test_set(dataset.test[-len(dataset.train):], dataset.prediction_length)
    gen.set_example(pasts, truth)
    checkpoint = gen.checkpoint()
    weights = checkpoint["ema"] if checkpoint["ema"] is not None else checkpoint["model"]
    # half precision except the S4D kernels (their frequencies pi n need the float32 mantissa)
    checkpoint["model"] = {k: v.half() if v.is_floating_point() and ".kernel." not in k else v for k, v in weights.items()}
    checkpoint["ema"] = None
    return save_checkpoint(checkpoint, destination)


if __name__ == "__main__":
    print(export(sys.argv[1], sys.argv[2]))
