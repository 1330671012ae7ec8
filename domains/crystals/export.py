"""Turn a training run into the shipped ``crystals/perov5`` checkpoint.

    python domains/crystals/export.py runs/perov5 sciogen/checkpoints/crystals-perov5.pt

Keeps the EMA weights only, stored in half precision (loading casts them back to the
model's float32; ``benchmarks/crystals.py`` measured the exported file, so its numbers
include the rounding), and drops the optimizer and trainer state. When the run started
from another run's weights (``train.init_from``), the metadata records the steps of both
stages.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sciogen.crystals import CrystalGenerator
from sciogen.train.checkpoint import record_stages, save_checkpoint


def export(source: str | Path, destination: str | Path) -> Path:
    gen = CrystalGenerator.load(source, device="cpu")
    checkpoint = gen.checkpoint()
    weights = checkpoint["ema"] if checkpoint["ema"] is not None else checkpoint["model"]
    checkpoint["model"] = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
    checkpoint["ema"] = None
    return save_checkpoint(record_stages(checkpoint, gen.config.train.init_from, gen.trained_steps), destination)


if __name__ == "__main__":
    print(export(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "sciogen/checkpoints/crystals-perov5.pt"))
