"""``sciogen demo`` for 3D molecules: the shipped ``molecules3d/qm9-unigenx`` model at work.

Generates molecules de novo (SMILES and 3D coordinates), scores them with EDM's metrics
(atom / molecule stability, validity, uniqueness), generates conformers of a few small
molecules from their SMILES beside RDKit's ETKDG, and writes ``molecules3d.sdf``,
``conformers.sdf``, ``results.json`` and ``molecules3d.png`` (3D views of the first samples)
to the output folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

__all__ = ["run_demo", "NAME", "plot_molecules"]

NAME = "molecules3d/qm9-unigenx"
#: small molecules whose conformers the demo generates
CONFORMER_SMILES = ("CCO", "OCC(O)CO", "CC(=O)NC")


def run_demo(out_dir: str | Path, quick: bool = False) -> list[dict[str, Any]]:
    """Run the demo, write its files to ``out_dir`` and return the result rows."""
    from rdkit import Chem

    from sciogen import registry

    from .generator import Molecule3DGenerator
    from .metrics import best_rmsd, etkdg_conformers
    from .representation import to_sdf

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gen = registry.load(NAME, device="cpu")
    n = 100 if quick else 500
    start = time.perf_counter()
    mols = gen.sample(n, seed=0)
    seconds = time.perf_counter() - start
    metrics = gen.evaluate(mols)
    rows = [{"model": f"{NAME}, de novo ({gen.config.sampling.steps} {gen.config.sampling.solver} steps per atom)",
             "atom stability": metrics["atom_stability"], "molecule stability": metrics["molecule_stability"],
             "validity": metrics["validity"], "uniqueness": metrics["uniqueness"], "closest to ETKDG (A)": "-",
             "s per 1000": 1000 * seconds / n}]
    conformers = []
    for smiles in CONFORMER_SMILES:
        start = time.perf_counter()
        mol = gen.conformers(smiles, 5, seed=0)
        seconds = time.perf_counter() - start
        reference = etkdg_conformers(smiles, 1, seed=0)  # ETKDGv3 + MMFF
        rmsd = min(best_rmsd(Chem.Mol(mol, confId=c.GetId()), reference) for c in mol.GetConformers())
        rows.append({"model": f"{NAME}, 5 conformers of {smiles}", "atom stability": "-", "molecule stability": "-",
                     "validity": "-", "uniqueness": "-", "closest to ETKDG (A)": rmsd, "s per 1000": 1000 * seconds / 5})
        conformers.extend(Chem.Mol(mol, confId=c.GetId()) for c in mol.GetConformers())
    Molecule3DGenerator.write_samples(mols, out_dir / "molecules3d.sdf")
    to_sdf(conformers, out_dir / "conformers.sdf")
    (out_dir / "results.json").write_text(json.dumps({"rows": rows, "metrics": metrics}, indent=2, default=float))
    plot_molecules(mols, out_dir / "molecules3d.png")
    return rows


def plot_molecules(mols, path: str | Path | None = None, count: int = 6):
    """3D views (matplotlib) of the first ``count`` molecules RDKit could build: atoms coloured by
    element, bonds as lines. Returns the figure (saved to ``path`` when given); None without matplotlib."""
    try:
        import matplotlib

        if path is not None:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    colours = {"H": "0.85", "C": "0.25", "N": "tab:blue", "O": "tab:red", "F": "tab:green"}
    shown = [m for m in mols if m is not None][:count]
    fig = plt.figure(figsize=(3.2 * max(len(shown), 1), 3.2))
    for k, mol in enumerate(shown):
        ax = fig.add_subplot(1, max(len(shown), 1), k + 1, projection="3d")
        xyz = mol.GetConformer().GetPositions()
        for bond in mol.GetBonds():
            i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
            ax.plot(*zip(xyz[i], xyz[j]), color="0.5", linewidth=1.0 + bond.GetBondTypeAsDouble())
        symbols = [a.GetSymbol() for a in mol.GetAtoms()]
        ax.scatter(*xyz.T, c=[colours.get(s, "tab:purple") for s in symbols], s=[40 if s == "H" else 120 for s in symbols],
                   edgecolors="k", depthshade=True)
        ax.set_axis_off()
        from rdkit import Chem

        ax.set_title(Chem.MolToSmiles(Chem.RemoveHs(mol)), fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=100)
    return fig
