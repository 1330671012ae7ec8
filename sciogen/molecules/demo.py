"""``sciogen demo`` for molecules: the shipped ``molecules/qm9`` PARD model at work.

Samples molecules unconditionally (20 ancestral steps per block), scores them (validity,
uniqueness; novelty and FCD too when QM9 is in the dataset cache (``$SCIOGEN_CACHE``) or
an installed qm9pack), draws molecules conditioned on a QED target with classifier-free
guidance, and writes ``molecules.sdf``, ``molecules.csv``, ``results.json`` and
``molecules.png`` (a grid of the first valid molecules) to the output folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["run_demo", "NAME"]

NAME = "molecules/qm9"


def run_demo(out_dir: str | Path, quick: bool = False) -> list[dict[str, Any]]:
    """Run the demo, write its files to ``out_dir`` and return the result rows."""
    from sciogen import registry

    from .generator import MoleculeGenerator, _reference_smiles
    from .metrics import evaluate

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gen = registry.load(NAME, device="cpu")
    n = 200 if quick else 1000
    start = time.perf_counter()
    mols = gen.sample(n, seed=0)
    seconds = time.perf_counter() - start
    try:
        train, reference = _reference_smiles("qm9")
    except FileNotFoundError:  # no QM9 copy: validity and uniqueness only
        train, reference = None, None
    metrics = evaluate(mols, train_smiles=train, reference_smiles=reference, fcd=reference is not None and not quick)
    target = 0.6
    steps = gen.config.sampling.steps
    retries = gen.config.sampling.valence_retries
    sampler = f"valence check, at most {retries} redraws per block" if retries else "plain PARD sampler"
    rows = [_row(f"{NAME}, unconditional ({steps} steps per block, {sampler})", metrics, mols, target, 1000 * seconds / n)]
    if "qed" in gen.conditions:
        k = 100 if quick else 300
        start = time.perf_counter()
        conditioned = gen.sample(k, seed=1, condition={"qed": target}, guidance=2.0)
        seconds = time.perf_counter() - start
        rows.append(_row(f"{NAME}, QED = {target} (guidance 2)", evaluate(conditioned, fcd=False, properties=False),
                         conditioned, target, 1000 * seconds / k))
    MoleculeGenerator.write_samples(mols, out_dir / "molecules.sdf")
    MoleculeGenerator.write_samples(mols, out_dir / "molecules.csv")
    (out_dir / "results.json").write_text(json.dumps({"rows": rows, "metrics": metrics}, indent=2, default=float))
    _picture(out_dir / "molecules.png", mols)
    return rows


def _row(name: str, metrics: dict, mols, target: float, seconds_per_1000: float) -> dict[str, Any]:
    from rdkit import Chem

    from .generator import molecule_properties

    smiles = [Chem.MolToSmiles(m) if m is not None else None for m in mols]
    qed = molecule_properties(smiles, ("qed",))[:, 0]
    return {"model": name, "validity": metrics["validity"], "uniqueness": metrics["uniqueness"],
            "novelty": metrics.get("novelty", float("nan")), "FCD": metrics.get("fcd", float("nan")),
            f"mean |QED - {target}|": float(np.nanmean(np.abs(qed - target))), "s per 1000": seconds_per_1000}


def _picture(path: Path, mols, count: int = 24) -> None:
    try:
        from rdkit.Chem import Draw

        valid = [m for m in mols if m is not None][:count]
        image = Draw.MolsToGridImage(valid, molsPerRow=6, subImgSize=(200, 160))
        image.save(str(path))
    except ImportError:  # drawing needs Pillow
        return
