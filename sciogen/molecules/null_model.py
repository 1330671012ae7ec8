"""A null model: independent atom and bond types drawn from the data marginals.

The baseline that any trained model must beat (and the prior of DiGress's "marginal"
transitions): the number of atoms n ~ the empirical distribution of sizes, every atom type
i.i.d. from the atom-type marginal, every atom pair i < j i.i.d. from the marginal of
bond types over all pairs (0 = no bond). No structure is learned, so validity is low.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch_geometric.data import Data

from .representation import MoleculeSpec, from_dense

__all__ = ["NullModel"]


@dataclass
class NullModel:
    """Marginals of a graph dataset.

    Attributes:
        spec: the representation of the graphs.
        size_probs: (max_n + 1,) probability of each number of atoms.
        atom_probs: (num_atom_types,) marginal of atom types.
        bond_probs: (num_bond_types,) marginal of bond types over atom pairs (0 = no bond).
    """

    spec: MoleculeSpec
    size_probs: torch.Tensor
    atom_probs: torch.Tensor
    bond_probs: torch.Tensor

    @classmethod
    def fit(cls, graphs: Iterable[Data], spec: MoleculeSpec) -> "NullModel":
        sizes: list[int] = []
        atoms = torch.zeros(spec.num_atom_types, dtype=torch.float64)
        bonds = torch.zeros(spec.num_bond_types, dtype=torch.float64)
        for g in graphs:
            n = int(g.num_nodes)
            sizes.append(n)
            atoms += torch.bincount(g.x.view(-1), minlength=spec.num_atom_types).double()
            counts = torch.bincount(g.edge_attr.view(-1), minlength=spec.num_bond_types).double() / 2
            bonds += counts
            bonds[0] += n * (n - 1) / 2 - counts[1:].sum()
        if not sizes:
            raise ValueError("cannot fit a null model on no graphs")
        size_probs = torch.bincount(torch.tensor(sizes)).double()
        return cls(spec, size_probs / size_probs.sum(), atoms / atoms.sum(), bonds / bonds.sum())

    def sample(self, num: int, generator: torch.Generator | None = None) -> list[Data]:
        """``num`` graphs; randomness only from ``generator``."""
        sizes = torch.multinomial(self.size_probs.float(), num, replacement=True, generator=generator)
        out: list[Data] = []
        for n in sizes.tolist():
            if not n:
                x, e = torch.zeros(0, dtype=torch.long), torch.zeros(0, 0, dtype=torch.long)
            else:
                x = torch.multinomial(self.atom_probs.float(), n, replacement=True, generator=generator)
                e = torch.multinomial(self.bond_probs.float(), n * n, replacement=True, generator=generator).view(n, n)
            e = torch.triu(e, diagonal=1)
            out.extend(from_dense(x[None], (e + e.T)[None]))
        return out
