"""Turn a training run into the shipped ``molecules/qm9`` checkpoint.

    python domains/molecules/export.py runs/qm9-stage2 [sciogen/checkpoints/molecules-qm9.pt] [--valence-retries 3]

Keeps the EMA weights only (as the sampling weights, single precision: the network is
small) and drops the optimizer and trainer state. Sets the sampling default
``sampling.valence_retries`` (a block that exceeds an atom's valence is denoised again, at
most that many times; 0 = PARD's plain sampler). When the run started from another run's
weights (``train.init_from``), the metadata records the steps of both stages.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sciogen.molecules import MoleculeGenerator
from sciogen.train.checkpoint import record_stages, save_checkpoint


def export(source: str | Path, destination: str | Path, valence_retries: int = 3) -> Path:
    gen = MoleculeGenerator.load(source, device="cpu")
    gen.config.sampling.valence_retries = int(valence_retries)
    checkpoint = gen.checkpoint()
    checkpoint["model"] = checkpoint["ema"] if checkpoint["ema"] is not None else checkpoint["model"]
    checkpoint["ema"] = None
    return save_checkpoint(record_stages(checkpoint, gen.config.train.init_from, gen.trained_steps), destination)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run folder or checkpoint")
    parser.add_argument("destination", nargs="?", default="sciogen/checkpoints/molecules-qm9.pt")
    parser.add_argument("--valence-retries", type=int, default=3)
    args = parser.parse_args()
    print(export(args.run, args.destination, args.valence_retries))
