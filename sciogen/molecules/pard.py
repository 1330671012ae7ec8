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
from tqdm.auto import tqdm

from sciogen.diffusion import CategoricalProcess, stratified_times

from .blocks import order_by_blocks
from .network import PARDNet, Views
from .representation import BOND_ORDERS

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
    out = model(X, E, block, Xt, Et, Et, block, t_node, degree, degree, cond, cond_mask)
    pair_mask = real[:, :, None] & real[:, None, :] & torch.ones(n, n, dtype=torch.bool, device=X.device).triu(1)
    atom_loss = atoms.loss(out.atoms, X, kind="ce", mask=real)
    bond_loss = bonds.loss(out.bonds(block), E, kind="ce", mask=pair_mask)
    nxt = batch["next_class"]
    has = nxt >= 0
    ce_next = F.cross_entropy(out.next_block.transpose(1, 2), nxt.clamp_min(0), reduction="none") * has
    ce_first = F.cross_entropy(out.first_block, batch["first_class"], reduction="none")
    block_loss = (ce_next.sum(1) + ce_first) / (has.sum(1) + 1)
    return atom_loss + bond_weight * bond_loss + block_weight * block_loss


def _combine(logits: Sequence[torch.Tensor], guidance: float) -> torch.Tensor:
    """Log-probabilities of one or, with classifier-free guidance, two predictions
    (conditional, unconditional): lu + s (lc - lu)."""
    if len(logits) == 1:
        return torch.log_softmax(logits[0], -1)
    lc, lu = torch.log_softmax(logits[0], -1), torch.log_softmax(logits[1], -1)
    return lu + guidance * (lc - lu)


def _finite(logits: torch.Tensor, block: int, what: str, step: str) -> torch.Tensor:
    """``logits`` unchanged, or FloatingPointError naming the block and step (as the core solvers do)."""
    if not bool(torch.isfinite(logits).all()):
        raise FloatingPointError(
            f"non-finite values (NaN or inf) in the network's {what} logits at block {block}, {step}; check the "
            "checkpoint (a diverged training gives NaN weights) and the conditions, or lower the guidance scale")
    return logits


@torch.no_grad()
def over_valence(Xp, Ep, Bp, Xn, Ec, Ew, real, max_valence) -> torch.Tensor:
    """(b,) True where a new block gives some atom more bonds than its type allows.

    ``Xp, Ep, Bp``: the clean prefix's atoms, bonds and block indices (-1 = padding);
    ``Xn``: the new block's atoms, ``Ec`` its bonds to the prefix, ``Ew`` within it, ``real``
    its slots in use; ``max_valence``: the largest valence of each atom class. Bond classes
    count 0 / 1 / 2 / 3 / 1.5 (none, single, double, triple, aromatic).
    """
    order = torch.tensor(BOND_ORDERS, dtype=torch.float32, device=Xn.device)
    max_valence = max_valence.to(Xn.device, torch.float32)
    in_prefix = Bp >= 0
    to_prefix = order[Ec] * (real[:, :, None] & in_prefix[:, None, :])
    eye = torch.eye(real.shape[1], dtype=torch.bool, device=Xn.device)
    within = order[Ew] * (real[:, :, None] & real[:, None, :] & ~eye)
    prefix_used = order[Ep].sum(-1) + to_prefix.sum(1)
    new_used = to_prefix.sum(2) + within.sum(2)
    tol = 1e-6
    over_prefix = (prefix_used > max_valence[Xp] + tol) & in_prefix
    over_new = (new_used > max_valence[Xn] + tol) & real
    return over_prefix.any(1) | over_new.any(1)


@torch.no_grad()
def sample_graphs(
    model: PARDNet, num: int, atoms: CategoricalProcess, bonds: CategoricalProcess, *, steps: int = 20,
    generator: torch.Generator | None = None, cond=None, cond_mask=None, guidance: float = 1.0,
    prompt: MoleculeTensors | None = None, one_block: bool = False, progress: bool = False,
    max_valence: torch.Tensor | None = None, valence_retries: int = 0,
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
        progress: show a progress bar over blocks (tqdm).
        max_valence: (atom classes,) the largest valence each atom type may have
            (:func:`~sciogen.molecules.representation.max_valences`); with
            ``valence_retries`` > 0, a block that gives some atom a larger valence (sum of bond
            orders, aromatic 1.5) is denoised again from fresh noise, at most that many times
            (rejection sampling of the block, as GraphAF / GraphDF check valence while
            generating). 0 = PARD's plain sampler.

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
    classes = torch.arange(c.num_block_classes, device=device)

    def variant_conds(idx):
        if cond is None:
            return [(None, None)]
        if guidance == 1.0:
            return [(cond[idx], cond_mask[idx])]
        return [(cond[idx], cond_mask[idx]), (cond[idx], torch.zeros_like(cond_mask[idx]))]

    grid = torch.linspace(1.0, 0.0, steps + 1)
    bar = tqdm(total=None, desc=f"sampling {num} molecules", unit="block", disable=not progress, leave=False)
    for k in range(k0, n):
        bar.set_postfix(unfinished=int(active.sum()))
        bar.update()
        # only unfinished molecules; the network reads the clean prefix and the new block alone
        idx = active.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        b = idx.numel()
        m = int(count[idx].max())
        Xp, Ep, Bp, Dp = X[idx, :m], E[idx, :m, :m], block[idx, :m], degree[idx, :m]
        # the clean prefix is encoded once per block (it never sees the noisy block), once per
        # condition variant: (conditional[, unconditional])
        prefix_views = Views.of(Bp, Bp[:, :0])
        variants = []
        for c_, m_ in variant_conds(idx):
            cond_h = model.condition(c_, m_, b, device)
            h, caches = model.encode_prefix(Xp, Ep, Bp, Dp, prefix_views, cond_h)
            variants.append((cond_h, h, caches))
        # 1. the next block's size and degree
        if k == 0:
            lp = _combine([model.first_out(ch) for ch, _, _ in variants], guidance)
        else:
            lp = _combine([model.next_block_logits(h, Bp)[:, k - 1] for _, h, _ in variants], guidance)
        _finite(lp, k, "block size and degree", "before its denoising steps")
        size = classes // d1
        allowed = (size[None, :] <= (n - count[idx])[:, None]) & ((size > 0) if k == 0 else True)
        if one_block and k > 0:
            allowed = (size == 0).expand_as(allowed)
        lp = lp.masked_fill(~allowed, float("-inf"))
        cls = torch.multinomial(lp.softmax(-1), 1, generator=generator).squeeze(1)
        new_size, new_degree = cls // d1, cls % d1
        active[idx[new_size == 0]] = False
        keep = new_size > 0
        if not bool(keep.any()):
            break
        idx, new_size, new_degree = idx[keep], new_size[keep], new_degree[keep]
        Xp, Ep, Bp, Dp = Xp[keep], Ep[keep], Bp[keep], Dp[keep]
        variants = [(ch[keep], None, [{key: v[keep] for key, v in cache.items()} for cache in caches])
                    for ch, _, caches in variants]
        b, s_max = idx.numel(), int(new_size.max())
        slots = torch.arange(s_max, device=device)
        real = slots[None, :] < new_size[:, None]  # (b, s_max) noisy slots in use
        noisy_block = torch.where(real, torch.full_like(real, k, dtype=torch.long), torch.full_like(real, -1, dtype=torch.long))
        noisy_degree = new_degree[:, None].expand(b, s_max)

        # 2. diffusion over the block's atoms and bonds (of the rows ``r`` of this batch)
        def denoise_block(r):
            vs = variants if r is None else [(ch[r], None, [{key: v[r] for key, v in cache.items()} for cache in caches])
                                             for ch, _, caches in variants]
            real_r, block_r, degree_r = (real, noisy_block, noisy_degree) if r is None else (real[r], noisy_block[r], noisy_degree[r])
            views = Views.of(Bp if r is None else Bp[r], block_r)
            rows = real_r.shape[0]
            Xt = atoms.prior((rows, s_max), generator, device)
            Ec = bonds.prior((rows, s_max, m), generator, device)
            Ew = _symmetric(bonds.prior((rows, s_max, s_max), generator, device))
            for j in range(steps):
                t = torch.full((rows,), float(grid[j]), device=device)
                s = torch.full((rows,), float(grid[j + 1]), device=device)
                t_node = t[:, None] * real_r
                outs = [model.denoise(caches, Xt, Ec, Ew, block_r, t_node, degree_r, views, ch) for ch, _, caches in vs]
                where = f"denoising step {j + 1} of {steps} (t = {float(grid[j]):.5f})"
                la, lc, lw = (_finite(_combine([o[i] for o in outs], guidance), k, name, where)
                              for i, name in enumerate(("atom type", "bond (to earlier blocks)", "bond (within block)")))
                Xt = atoms.step(Xt, la, t, s, generator)
                Ec = bonds.step(Ec, lc, t, s, generator)
                Ew = _symmetric(bonds.step(Ew, lw, t, s, generator))
            return Xt, Ec, Ew

        Xt, Ec, Ew = denoise_block(None)
        for _ in range(valence_retries if max_valence is not None else 0):
            over = over_valence(Xp, Ep, Bp, Xt, Ec, Ew, real, max_valence)
            if not bool(over.any()):
                break
            r = over.nonzero().squeeze(1)
            Xt[r], Ec[r], Ew[r] = denoise_block(r)
        # 3. write the block into the molecules, after their count[b] atoms
        at = count[idx][:, None] + slots[None, :]  # (b, s_max) where each new atom goes
        bb, ii = real.nonzero(as_tuple=True)
        rows, gi = idx[bb], at[bb, ii]
        X[rows, gi] = Xt[bb, ii]
        block[rows, gi] = k
        degree[rows, gi] = new_degree[bb]
        to_prefix = real[:, :, None] & (Bp >= 0)[:, None, :]
        bb, ii, jj = to_prefix.nonzero(as_tuple=True)
        E[idx[bb], at[bb, ii], jj] = Ec[bb, ii, jj]
        E[idx[bb], jj, at[bb, ii]] = Ec[bb, ii, jj]
        inside = real[:, :, None] & real[:, None, :] & ~torch.eye(s_max, dtype=torch.bool, device=device)
        bb, ii, jj = inside.nonzero(as_tuple=True)
        E[idx[bb], at[bb, ii], at[bb, jj]] = Ew[bb, ii, jj]
        count[idx] = count[idx] + new_size
    bar.close()
    return X, E, count
