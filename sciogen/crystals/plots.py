"""Pictures of crystals: the unit cell with its atoms (matplotlib, no extra dependency).

>>> fig = plot_structures(structures[:6], titles=[s.composition.reduced_formula for s in structures[:6]])  # doctest: +SKIP
"""

from __future__ import annotations

from itertools import product
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from pymatgen.core import Structure

__all__ = ["plot_structure", "plot_structures"]


def _color(z: int):
    import matplotlib

    return matplotlib.colormaps["tab20"]((z * 7) % 20)


def plot_structure(structure: "Structure", ax=None, title: str | None = None, images: bool = True):
    """Draw the unit cell (12 edges) and its atoms in Cartesian Å on a 3D axis.

    ``images`` also draws the periodic copies of atoms that sit on a face, edge or corner,
    so a cubic perovskite shows its full octahedra. Atom sizes follow the atomic radius;
    colours are per element with a legend. Returns the axis.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        ax = plt.figure(figsize=(4, 4)).add_subplot(projection="3d")
    lattice = np.asarray(structure.lattice.matrix)
    corners = np.array(list(product([0, 1], repeat=3)), dtype=float)
    for i, j in product(range(8), range(8)):
        if i < j and np.abs(corners[i] - corners[j]).sum() == 1:
            seg = corners[[i, j]] @ lattice
            ax.plot(*seg.T, color="0.4", lw=0.8)
    seen = set()
    for site in structure:
        frac = np.mod(site.frac_coords, 1.0)
        copies = [frac]
        if images:
            near = [[0.0, 1.0] if min(f, 1 - f) < 1e-3 else [f] for f in frac]
            copies = [np.array(c) for c in product(*near)]
        xyz = np.array(copies) @ lattice
        el = site.specie
        radius = float(el.atomic_radius or 1.0)
        label = el.symbol if el.symbol not in seen else None
        seen.add(el.symbol)
        ax.scatter(*xyz.T, s=120 * radius**2, color=_color(el.Z), edgecolors="k", linewidths=0.4, label=label, depthshade=False)
    ax.set_axis_off()
    ax.set_box_aspect(np.ptp(np.vstack([corners @ lattice]), axis=0).clip(min=1e-3))
    ax.legend(loc="upper left", fontsize=7, frameon=False)
    ax.set_title(title or structure.composition.reduced_formula, fontsize=9)
    return ax


def plot_structures(structures: Sequence["Structure | None"], titles: Sequence[str] | None = None, columns: int = 3):
    """A grid of :func:`plot_structure` panels (None entries are shown as empty panels)."""
    import matplotlib.pyplot as plt

    n = max(1, len(structures))
    rows = (n + columns - 1) // columns
    fig = plt.figure(figsize=(3.2 * columns, 3.2 * rows))
    for i, s in enumerate(structures):
        ax = fig.add_subplot(rows, columns, i + 1, projection="3d")
        if s is None:
            ax.set_axis_off()
            ax.set_title("(failed)", fontsize=9)
            continue
        plot_structure(s, ax, titles[i] if titles else None)
    fig.tight_layout()
    return fig
