"""``sciogen demo`` for crystals: the shipped ``crystals/perov5`` model at work.

Predicts the structure of SrTiO3 (CSP, composition given), generates crystals de novo and
scores them (structural and SMACT compositional validity; with the Perov-5 test file in the
dataset cache (``$SCIOGEN_CACHE/perov_5``), also the CSP match rate and RMSE on the first test crystals and the Wasserstein
distances of density and number of elements), and writes ``csp_SrTiO3/`` and ``denovo/``
(CIF files with a ``summary.csv``), ``results.json`` and ``crystals.png`` to the output folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

__all__ = ["run_demo", "NAME"]

NAME = "crystals/perov5"


def run_demo(out_dir: str | Path, quick: bool = False) -> list[dict[str, Any]]:
    """Run the demo, write its files to ``out_dir`` and return the result rows."""
    from sciogen import registry
    from sciogen.data.output import write_atomically

    from .datasets import load_cdvae
    from .generator import CrystalGenerator
    from .metrics import match_rate_and_rmse, validity

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gen = registry.load(NAME, device="cpu")
    steps = 50 if quick else gen.config.sampling.steps
    rows: list[dict[str, Any]] = []

    start = time.perf_counter()
    srtio3 = gen.sample(4 if quick else 10, composition="SrTiO3", steps=steps, seed=0)
    seconds = (time.perf_counter() - start) / len(srtio3)
    write_atomically(CrystalGenerator.write_samples, srtio3, out_dir / "csp_SrTiO3")
    lengths = [s.lattice.abc[0] for s in srtio3 if s is not None]
    rows.append({"task": f"CSP SrTiO3 ({steps} steps)", "structural validity": validity(srtio3)["structural"],
                 "a (Å), mean": sum(lengths) / max(1, len(lengths)), "s per structure": seconds})

    try:
        truth = load_cdvae("perov_5", "test", limit=20 if quick else 100).structures
    except FileNotFoundError:  # not in the cache: the demo downloads nothing
        truth = []
    if truth:
        start = time.perf_counter()
        preds = gen.sample(len(truth), composition=truth, steps=steps, seed=1)
        seconds = (time.perf_counter() - start) / len(truth)
        m = match_rate_and_rmse(preds, truth)
        rows.append({"task": f"CSP, first {len(truth)} Perov-5 test crystals", "match rate": m["match_rate"],
                     "RMSE": m["rmse"], "s per structure": seconds})

    n = 20 if quick else 100
    start = time.perf_counter()
    denovo = gen.sample(n, steps=steps, seed=2)
    seconds = (time.perf_counter() - start) / n
    write_atomically(CrystalGenerator.write_samples, denovo, out_dir / "denovo")
    v = validity(denovo)
    rows.append({"task": f"de novo ({n} crystals)", "structural validity": v["structural"],
                 "compositional validity": v["compositional"], "s per structure": seconds})
    (out_dir / "results.json").write_text(json.dumps({"model": NAME, "rows": rows}, indent=2, default=float))
    _picture(out_dir / "crystals.png", srtio3[:3] + denovo[:3])
    return rows


def _picture(path: Path, structures) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plots import plot_structures

    titles = [f"CSP: {s.composition.reduced_formula}" if s is not None else "" for s in structures[:3]]
    titles += [f"de novo: {s.composition.reduced_formula}" if s is not None else "" for s in structures[3:]]
    fig = plot_structures(structures, titles=titles)
    fig.savefig(path, dpi=90)
    plt.close(fig)
