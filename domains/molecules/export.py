"""Turn a training run into the shipped ``molecules/qm9`` checkpoint.

    python domains/molecules/export.py runs/qm9 sciogen/checkpoints/molecules-qm9.pt

Keeps the EMA weights only (as the sampling weights, single precision: the network is
small) and drops the optimizer and trainer state.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sciogen.molecules import MoleculeGenerator
from sciogen.train.checkpoint import save_checkpoint


def export(source: str | Path, destination: str | Path) -> Path:
    gen = MoleculeGenerator.load(source, device="cpu")
    checkpoint = gen.checkpoint()
    checkpoint["model"] = checkpoint["ema"] if checkpoint["ema"] is not None else checkpoint["model"]
    checkpoint["ema"] = None
    return save_checkpoint(checkpoint, destination)


if __name__ == "__main__":
    print(export(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "sciogen/checkpoints/molecules-qm9.pt"))
