"""PARD's training targets, loss and block-by-block sampling (Zhao et al. 2024).

A molecule with nodes sorted by block (core first, :func:`sciogen.molecules.order_by_blocks`)
factorises as

    p(G) = p(s_0, d_0) prod_k p(B_k | B_<k, d_k) p(s_{k+1}, d_{k+1} | B_<=k),

with (s_k, d_k) the size and degree of block k (``s = 0`` stops) and p(B_k | ...) a
discrete diffusion over block k's atom types and all its bonds (to earlier blocks and
within the block), both with marginal transitions (:class:`sciogen.diffusion.CategoricalProcess`).
Training draws one time per block and scores every block in one pass of
:class:`~sciogen.molecules.network.PARDNet`; sampling runs the shared block loop of
:func:`sciogen.ar.generate_blocks`, each block drawn by the joint ancestral sampler of
:class:`~sciogen.diffusion.JointProcess` in ``steps`` steps. ``one_block=True`` puts the whole molecule in one block,
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

from sciogen.ar.loop import BlockSampler, generate_blocks
from sciogen.diffusion import CategoricalProcess, JointProcess, stratified_times

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
    """Generate ``num`` molecules block after block (:func:`sciogen.ar.generate_blocks`).

    Before block k the clean prefix of every unfinished molecule is encoded once; the
    next-block head draws its (size, degree) class (size 0 finishes the molecule); the
    block's atoms and bonds are drawn by the joint ancestral sampler
    (:meth:`~sciogen.diffusion.JointProcess.sample`, ``steps`` steps on a uniform grid 1 -> 0).

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
    run = _Molecules(model, num, atoms, bonds, steps=steps, cond=cond, cond_mask=cond_mask, guidance=guidance,
                     prompt=prompt, one_block=one_block, max_valence=max_valence)
    generate_blocks(run, num, first_block=run.first_block, max_blocks=model.config.max_atoms - run.first_block,
                    retries=valence_retries if max_valence is not None else 0, generator=generator,
                    device=run.device, progress=f"sampling {num} molecules" if progress else None)
    return run.X, run.E, run.count


#: the fields of a block: its atoms, its bonds to earlier blocks and its bonds within
_BLOCK_FIELDS = ("atoms", "cross", "within")
_FIELD_NAMES = {"atoms": "atom type", "cross": "bond (to earlier blocks)", "within": "bond (within block)"}


@dataclass
class _Prefix:
    """The clean prefix of some molecules (``rows``) before a block: atoms ``X`` (R, m),
    bonds ``E`` (R, m, m), ``block`` and ``degree`` (R, m), and per condition variant
    (conditional[, unconditional]) its condition embedding and the network's clean-pass
    caches; ``states``: the clean pass' node states per variant (for the next-block head)."""

    rows: torch.Tensor
    X: torch.Tensor
    E: torch.Tensor
    block: torch.Tensor
    degree: torch.Tensor
    variants: list
    states: list | None = None

    def select(self, r: torch.Tensor) -> "_Prefix":
        variants = [(ch[r], [{key: v[r] for key, v in cache.items()} for cache in caches])
                    for ch, caches in self.variants]
        return _Prefix(self.rows[r], self.X[r], self.E[r], self.block[r], self.degree[r], variants)


class _Molecules(BlockSampler):
    """PARD's moves for :func:`~sciogen.ar.generate_blocks`; the molecules are dense tensors
    ``X`` (num, N), ``E`` (num, N, N), ``block``, ``degree`` (num, N) and ``count`` (num,)."""

    def __init__(self, model: PARDNet, num: int, atoms: CategoricalProcess, bonds: CategoricalProcess, *, steps: int,
                 cond, cond_mask, guidance: float, prompt: MoleculeTensors | None, one_block: bool,
                 max_valence: torch.Tensor | None):
        c = model.config
        self.model, self.steps, self.guidance, self.one_block = model, int(steps), guidance, one_block
        self.cond, self.cond_mask, self.max_valence = cond, cond_mask, max_valence
        self.n, self.d1 = c.max_atoms, c.max_degree + 1
        self.device = device = next(model.parameters()).device
        self.X = torch.zeros(num, self.n, dtype=torch.long, device=device)
        self.E = torch.zeros(num, self.n, self.n, dtype=torch.long, device=device)
        self.block = torch.full((num, self.n), -1, dtype=torch.long, device=device)
        self.degree = torch.zeros(num, self.n, dtype=torch.long, device=device)
        self.count = torch.zeros(num, dtype=torch.long, device=device)
        self.first_block = 0
        if prompt is not None:
            self.X[:], self.E[:], self.block[:], self.degree[:] = (
                getattr(prompt, f)[:1].long().to(device) for f in ("X", "E", "block", "degree"))
            self.count[:] = int((prompt.block[0] >= 0).sum())
            self.first_block = int(prompt.block[0].max()) + 1
        self.classes = torch.arange(c.num_block_classes, device=device)
        self.joint = JointProcess(dict(zip(_BLOCK_FIELDS, (atoms, bonds, bonds))))
        self.grid = torch.linspace(1.0, 0.0, self.steps + 1)

    def _conditions(self, rows):
        if self.cond is None:
            return [(None, None)]
        if self.guidance == 1.0:
            return [(self.cond[rows], self.cond_mask[rows])]
        return [(self.cond[rows], self.cond_mask[rows]), (self.cond[rows], torch.zeros_like(self.cond_mask[rows]))]

    def prefix(self, k, rows):
        # the clean prefix is encoded once per block (it never sees the noisy block), once per
        # condition variant: (conditional[, unconditional])
        m = int(self.count[rows].max())
        X, E, B, D = self.X[rows, :m], self.E[rows, :m, :m], self.block[rows, :m], self.degree[rows, :m]
        views = Views.of(B, B[:, :0])
        variants, states = [], []
        for c, c_mask in self._conditions(rows):
            cond_h = self.model.condition(c, c_mask, rows.numel(), self.device)
            h, caches = self.model.encode_prefix(X, E, B, D, views, cond_h)
            variants.append((cond_h, caches))
            states.append(h)
        return _Prefix(rows, X, E, B, D, variants, states)

    def select(self, prefix, rows):
        return prefix.select(rows)

    def plan(self, k, prefix, generator):
        """The next block's (size, degree) class of every molecule, from the next-block head."""
        if k == 0:
            lp = _combine([self.model.first_out(ch) for ch, _ in prefix.variants], self.guidance)
        else:
            heads = [self.model.next_block_logits(h, prefix.block)[:, k - 1] for h in prefix.states]
            lp = _combine(heads, self.guidance)
        _finite(lp, k, "block size and degree", "before its denoising steps")
        size = self.classes // self.d1
        allowed = (size[None, :] <= (self.n - self.count[prefix.rows])[:, None]) & ((size > 0) if k == 0 else True)
        if self.one_block and k > 0:
            allowed = (size == 0).expand_as(allowed)
        lp = lp.masked_fill(~allowed, float("-inf"))
        cls = torch.multinomial(lp.softmax(-1), 1, generator=generator).squeeze(1)
        new_size = cls // self.d1
        slots = torch.arange(int(new_size.max()), device=self.device)
        # real: (R, s_max) the block's slots in use, s_max the largest block of this step
        return {"size": new_size, "degree": cls % self.d1, "real": slots[None, :] < new_size[:, None]}

    def draw(self, k, prefix, plan, generator):
        """Block k's atoms and bonds by the joint ancestral sampler, with classifier-free guidance."""
        real = plan["real"]
        rows, s_max = real.shape
        noisy_block = torch.where(real, torch.full_like(real, k, dtype=torch.long),
                                  torch.full_like(real, -1, dtype=torch.long))
        noisy_degree = plan["degree"][:, None].expand(rows, s_max)
        views = Views.of(prefix.block, noisy_block)
        shapes = {"atoms": (rows, s_max), "cross": (rows, s_max, prefix.X.shape[1]), "within": (rows, s_max, s_max)}
        x_T = _symmetric_within(self.joint.prior(shapes, generator, self.device))

        def denoise(x, t):
            t_node = t["atoms"][:, None] * real
            outs = [self.model.denoise(caches, x["atoms"], x["cross"], x["within"], noisy_block, t_node, noisy_degree,
                                       views, ch) for ch, caches in prefix.variants]
            return {name: _combine([o[i] for o in outs], self.guidance) for i, name in enumerate(_BLOCK_FIELDS)}

        def checked(pred, j, t, corrector):
            where = f"denoising step {j + 1} of {self.steps} (t = {t:.5f})"
            return {name: _finite(pred[name], k, _FIELD_NAMES[name], where) for name in _BLOCK_FIELDS}

        return self.joint.sample(denoise, x_T, self.steps, generator, grid=self.grid, on_prediction=checked,
                                 project=_symmetric_within)

    def reject(self, k, prefix, plan, block):
        """The molecules whose new block exceeds some atom's valence."""
        return over_valence(prefix.X, prefix.E, prefix.block, block["atoms"], block["cross"], block["within"],
                            plan["real"], self.max_valence)

    def commit(self, k, rows, prefix, plan, block):
        """Write the block into the molecules, after their ``count`` atoms."""
        real, X, E = plan["real"], self.X, self.E
        s_max = real.shape[1]
        at = self.count[rows][:, None] + torch.arange(s_max, device=self.device)[None, :]  # where each new atom goes
        bb, ii = real.nonzero(as_tuple=True)
        r, gi = rows[bb], at[bb, ii]
        X[r, gi] = block["atoms"][bb, ii]
        self.block[r, gi] = k
        self.degree[r, gi] = plan["degree"][bb]
        to_prefix = real[:, :, None] & (prefix.block >= 0)[:, None, :]
        bb, ii, jj = to_prefix.nonzero(as_tuple=True)
        E[rows[bb], at[bb, ii], jj] = block["cross"][bb, ii, jj]
        E[rows[bb], jj, at[bb, ii]] = block["cross"][bb, ii, jj]
        inside = real[:, :, None] & real[:, None, :] & ~torch.eye(s_max, dtype=torch.bool, device=self.device)
        bb, ii, jj = inside.nonzero(as_tuple=True)
        E[rows[bb], at[bb, ii], at[bb, jj]] = block["within"][bb, ii, jj]
        self.count[rows] = self.count[rows] + plan["size"]


def _symmetric_within(x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The block's state with its within-block bonds made symmetric (the upper triangle mirrored)."""
    return {**x, "within": _symmetric(x["within"])}
