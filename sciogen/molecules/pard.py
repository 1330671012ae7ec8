"""PARD's training targets, loss and block-by-block sampling (Zhao et al. 2024).

A molecule with nodes sorted by block (core first, :func:`sciogen.molecules.order_by_blocks`)
factorises as

    p(G) = p(s_0, d_0) prod_k p(B_k | B_<k, d_k) p(s_{k+1}, d_{k+1} | B_<=k),

with (s_k, d_k) the size and degree of block k (``s = 0`` stops) and p(B_k | ...) a
discrete diffusion over block k's atom types and all its bonds (to earlier blocks and
within the block), both with marginal transitions (:class:`sciogen.diffusion.CategoricalProcess`).
Training draws one time per block and scores every block in one pass of
:class:`~sciogen.molecules.network.PARDNet`; sampling generates block after block with
``steps`` ancestral steps each. ``one_block=True`` puts the whole molecule in one block,
which gives a DiGress-like one-shot model with the same code.

Dense layout (N = max_atoms): ``X`` (M, N) atom types, ``E`` (M, N, N) bond types
(symmetric, 0 = none), ``block`` (M, N) block index (-1 = padding), ``degree`` (M, N)
degree of each node's block, ``next_class`` (M, N) the (size, degree) class of block
m + 1 after prefix m (0 = stop; -1 where block m does not exist), ``first_class`` (M,).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch.nn import functional as F
from torch_geometric.data import Data

from sciogen.diffusion import CategoricalProcess, stratified_times

from .blocks import order_by_blocks
from .network import PARDNet

__all__ = ["MoleculeTensors", "to_block_tensors", "block_class", "pard_loss", "sample_graphs", "marginals"]


@dataclass
class MoleculeTensors:
    """Dense, block-ordered molecules (see the module docstring for the fields)."""

    X: torch.Tensor
    E: torch.Tensor
    block: torch.Tensor
    degree: torch.Tensor
    next_class: torch.Tensor
    first_class: torch.Tensor

    def __len__(self) -> int:
        return self.X.shape[0]

    def __getitem__(self, i) -> dict[str, torch.Tensor]:
        return {"X": self.X[i].long(), "E": self.E[i].long(), "block": self.block[i].long(), "degree": self.degree[i].long(),
                "next_class": self.next_class[i].long(), "first_class": self.first_class[i].long()}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, k) for k in ("X", "E", "block", "degree", "next_class", "first_class")}


def block_class(size, degree, max_degree: int):
    """The (size, degree) class index: ``size * (max_degree + 1) + degree``."""
    return size * (max_degree + 1) + degree


def to_block_tensors(
    graphs: Sequence[Data], max_atoms: int, max_degree: int, *, hops: int = 3, weighting: str = "pard", one_block: bool = False,
) -> MoleculeTensors:
    """Peel every graph into PARD blocks and pack the batch densely (int8 storage)."""
    m, n = len(graphs), int(max_atoms)
    X = torch.zeros(m, n, dtype=torch.int8)
    E = torch.zeros(m, n, n, dtype=torch.int8)
    block = torch.full((m, n), -1, dtype=torch.int8)
    degree = torch.zeros(m, n, dtype=torch.int8)
    next_class = torch.full((m, n), -1, dtype=torch.int16)
    first_class = torch.zeros(m, dtype=torch.int16)
    for i, g in enumerate(graphs):
        k = int(g.num_nodes)
        if k > n:
            raise ValueError(f"graph {i} has {k} nodes, more than max_atoms={n}")
        if one_block:
            sizes, degrees, bi, order = torch.tensor([k]), torch.tensor([0]), torch.zeros(k, dtype=torch.long), g
        else:
            order = order_by_blocks(g, hops=hops, weighting=weighting)
            sizes, degrees, bi = order.block_sizes, order.block_degrees.clamp_max(max_degree), order.block_index
        X[i, :k] = order.x.view(-1).to(torch.int8)
        if order.edge_index.numel():
            E[i, order.edge_index[0], order.edge_index[1]] = order.edge_attr.view(-1).to(torch.int8)
        block[i, :k] = bi.to(torch.int8)
        degree[i, :k] = degrees[bi].to(torch.int8)
        classes = block_class(sizes, degrees, max_degree)
        first_class[i] = int(classes[0])
        next_class[i, : len(sizes)] = torch.cat([classes[1:], torch.zeros(1, dtype=classes.dtype)]).to(torch.int16)
    return MoleculeTensors(X, E, block, degree, next_class, first_class)


def marginals(data: MoleculeTensors, num_atom_types: int, num_bond_types: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Atom-type frequencies over real atoms and bond-type frequencies over real atom pairs (i < j)."""
    real = data.block >= 0
    atoms = torch.bincount(data.X[real].long(), minlength=num_atom_types).double()
    pairs = real[:, :, None] & real[:, None, :] & torch.ones(real.shape[1], real.shape[1], dtype=torch.bool).triu(1)
    bonds = torch.bincount(data.E[pairs].long(), minlength=num_bond_types).double()
    # every class keeps a little mass so the process can reach it
    atoms, bonds = atoms + 1.0, bonds + 1.0
    return atoms / atoms.sum(), bonds / bonds.sum()


def _symmetric(e: torch.Tensor) -> torch.Tensor:
    upper = torch.triu(e, diagonal=1)
    return upper + upper.transpose(1, 2)


def pard_loss(
    model: PARDNet, batch: dict, atoms: CategoricalProcess, bonds: CategoricalProcess, generator: torch.Generator, *,
    bond_weight: float = 5.0, block_weight: float = 1.0, cond=None, cond_mask=None,
) -> torch.Tensor:
    """Per-molecule loss (B,): atom and bond cross-entropy of every block at its own time,
    plus the cross-entropy of every next-block (size, degree) class."""
    X, E, block, degree = batch["X"], batch["E"], batch["block"], batch["degree"]
    b, n = X.shape
    real = block >= 0
    t_blocks = stratified_times(b * n, atoms.t_min, generator, X.device).view(b, n)
    idx = block.clamp_min(0)
    t_node = t_blocks.gather(1, idx) * real
    pair_block = torch.maximum(idx[:, :, None], idx[:, None, :])
    t_pair = t_blocks.gather(1, pair_block.view(b, -1)).view(b, n, n)
    Xt = atoms.noise(X, t_node.clamp_min(atoms.t_min), generator)
    Et = _symmetric(bonds.noise(E, t_pair.clamp_min(atoms.t_min), generator))
    out = model(X, E, block, Xt, Et, block, t_node, degree, cond, cond_mask)
    pair_mask = real[:, :, None] & real[:, None, :] & torch.ones(n, n, dtype=torch.bool, device=X.device).triu(1)
    atom_loss = atoms.loss(out.atoms, X, kind="ce", mask=real)
    bond_loss = bonds.loss(out.bonds, E, kind="ce", mask=pair_mask)
    nxt = batch["next_class"]
    has = nxt >= 0
    ce_next = F.cross_entropy(out.next_block.transpose(1, 2), nxt.clamp_min(0), reduction="none") * has
    ce_first = F.cross_entropy(out.first_block, batch["first_class"], reduction="none")
    block_loss = (ce_next.sum(1) + ce_first) / (has.sum(1) + 1)
    return atom_loss + bond_weight * bond_loss + block_weight * block_loss


def _guided(logits_fn, guidance: float, cond, cond_mask):
    """Log-probabilities with classifier-free guidance: lu + s (lc - lu) (s = 1: conditional)."""
    if cond is None or guidance == 1.0:
        return [torch.log_softmax(x, -1) for x in logits_fn(cond, cond_mask)]
    cond_l = logits_fn(cond, cond_mask)
    free = logits_fn(cond, torch.zeros_like(cond_mask))
    return [torch.log_softmax(u, -1) + guidance * (torch.log_softmax(c, -1) - torch.log_softmax(u, -1)) for c, u in zip(cond_l, free)]


@torch.no_grad()
def sample_graphs(
    model: PARDNet, num: int, atoms: CategoricalProcess, bonds: CategoricalProcess, *, steps: int = 20,
    generator: torch.Generator | None = None, cond=None, cond_mask=None, guidance: float = 1.0,
    prompt: MoleculeTensors | None = None, one_block: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Generate ``num`` molecules block after block.

    Args:
        model: a trained :class:`PARDNet`.
        atoms, bonds: the processes it was trained with.
        steps: ancestral steps per block (uniform grid 1 -> 0).
        generator: the only source of randomness.
        cond, cond_mask: (num, P) normalised conditions and which are given.
        guidance: classifier-free guidance scale (1 = plain conditional).
        prompt: fixed first blocks (one molecule, e.g. a scaffold), kept unchanged.
        one_block: the model generates the whole molecule as one block.

    Returns:
        X (num, N) long, E (num, N, N) long symmetric, count (num,) long atoms per molecule.
    """
    c = model.config
    n, d1 = c.max_atoms, c.max_degree + 1
    device = next(model.parameters()).device
    X = torch.zeros(num, n, dtype=torch.long, device=device)
    E = torch.zeros(num, n, n, dtype=torch.long, device=device)
    block = torch.full((num, n), -1, dtype=torch.long, device=device)
    degree = torch.zeros(num, n, dtype=torch.long, device=device)
    count = torch.zeros(num, dtype=torch.long, device=device)
    k0 = 0
    if prompt is not None:
        X[:], E[:], block[:], degree[:] = (getattr(prompt, f)[:1].long().to(device) for f in ("X", "E", "block", "degree"))
        count[:] = int((prompt.block[0] >= 0).sum())
        k0 = int(prompt.block[0].max()) + 1
    active = torch.ones(num, dtype=torch.bool, device=device)
    positions = torch.arange(n, device=device)
    empty = torch.full_like(block, -1)
    zeros_t = torch.zeros(num, n, device=device)
    for k in range(k0, n):
        # 1. the next block's size and degree
        if k == 0:
            (lp,) = _guided(lambda cc, cm: [model.first_block(cc, cm, num, device)], guidance, cond, cond_mask)
        else:
            def prefix_logits(cc, cm):
                return [model(X, E, block, X, E, empty, zeros_t, degree, cc, cm).next_block[:, k - 1]]
            (lp,) = _guided(prefix_logits, guidance, cond, cond_mask)
        size = torch.arange(c.num_block_classes, device=device) // d1
        allowed = (size <= (n - count)[:, None]) & ((size > 0) if k == 0 else True)
        if one_block and k > 0:
            allowed = size == 0
        lp = lp.masked_fill(~allowed, float("-inf"))
        cls = torch.multinomial(lp.softmax(-1), 1, generator=generator).squeeze(1)
        new_size, new_degree = cls // d1, cls % d1
        active &= new_size > 0
        new_size = new_size * active
        if not bool(active.any()):
            break
        new = (positions >= count[:, None]) & (positions < (count + new_size)[:, None])
        noisy_block = torch.where(new, torch.full_like(block, k), empty)
        degree = torch.where(new, new_degree[:, None].expand_as(degree), degree)
        touched = (new[:, :, None] & (block >= 0)[:, None, :]) | (new[:, :, None] & new[:, None, :])
        touched = (touched | touched.transpose(1, 2)) & ~torch.eye(n, dtype=torch.bool, device=device)
        # 2. diffusion over the block's atoms and bonds
        Xt = atoms.prior((num, n), generator, device)
        Et = _symmetric(bonds.prior((num, n, n), generator, device))
        grid = torch.linspace(1.0, 0.0, steps + 1)
        for j in range(steps):
            t = torch.full((num,), float(grid[j]), device=device)
            s = torch.full((num,), float(grid[j + 1]), device=device)
            t_node = t[:, None] * new

            def denoise(cc, cm):
                out = model(X, E, block, Xt, Et, noisy_block, t_node, degree, cc, cm)
                return [out.atoms, out.bonds]

            la, lb = _guided(denoise, guidance, cond, cond_mask)
            Xt = atoms.step(Xt, la, t, s, generator)
            Et = _symmetric(bonds.step(Et, lb, t, s, generator))
        X = torch.where(new, Xt, X)
        E = torch.where(touched, Et, E)
        block = torch.where(new, noisy_block, block)
        count = count + new_size
    return X, E, count
