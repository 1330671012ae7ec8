"""PARD's denoiser: a block-causal PPGN + graph transformer over a doubled graph.

PARD (Zhao et al. 2024) generates a molecule block after block; block k is a discrete
diffusion over its atoms and over every bond that touches it, conditioned on the clean
blocks < k. To train every block in one pass (as a GPT trains every token), the network
reads a *doubled* graph of 2N nodes, ACDiT's skip-causal layout of :mod:`sciogen.ar`:

    nodes 0 .. N-1      the clean molecule (atom types X, bonds E), block b(i);
    nodes N .. 2N-1     a noised copy: atom types X_t, bonds E_t, each block at its own time.

With V(p) the nodes node p may see (:func:`sciogen.ar.skip_causal_mask`: a clean node of
block m sees clean nodes of blocks <= m; a noisy node of block k sees clean nodes of
blocks < k and the noisy nodes of block k), the pair (p, q) stands for a bond when
q in V(p) or p in V(q), and it sees V(p, q) = V(p) if q in V(p) else V(q). Every
operation keeps to these sets:

- attention of node p over q in V(p), biased by the pair features e_pq;
- node -> pair: e_pq += W h_p + W h_q (V(q) is inside V(p) when q in V(p));
- the PPGN product (Maron et al. 2019), restricted:

      (A o B)_pq = sum_{l in V(p, q)} A_pl B_lq / N,

  which is two batched matrix products, one per side of the "q in V(p)" split;
- pair -> node: h_p += mean of e_pq over q in V(p).

So nothing about a block reaches an earlier block or its own clean copy: the noisy block k
sees exactly what it sees at generation time, when the doubled graph holds the clean
prefix and block k alone (``tests/test_molecules_network.py`` checks this, and
equivariance under node permutations). Pairs outside every view carry values that are
never read.

Inputs are dense (a batch of graphs padded to N = ``max_atoms``); block index -1 marks
absent nodes. Outputs are x0 logits of the noisy atoms and bonds, and the logits of the
next block's (size, degree) class after each clean prefix (``size = 0`` stops).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from sciogen.ar import skip_causal_mask
from sciogen.nn.embeddings import TimeEmbedding

__all__ = ["PARDNetConfig", "PARDNet", "PARDOutput", "graph_views"]


@dataclass
class PARDNetConfig:
    """Sizes of a :class:`PARDNet`.

    Attributes:
        num_atom_types, num_bond_types: classes of X and of E (E includes 0 = no bond).
        max_atoms: N, the largest molecule.
        max_degree: the largest block degree (degree classes 0 .. max_degree).
        cond_dim: number of graph-level conditions (properties; 0 = unconditional).
        node_dim, edge_dim, layers, heads: the network.
        dropout: attention / MLP dropout.
    """

    num_atom_types: int = 8
    num_bond_types: int = 4
    max_atoms: int = 9
    max_degree: int = 4
    cond_dim: int = 0
    node_dim: int = 128
    edge_dim: int = 64
    layers: int = 5
    heads: int = 4
    dropout: float = 0.0

    def __post_init__(self):
        if self.node_dim % self.heads:
            raise ValueError(f"node_dim={self.node_dim} must be divisible by heads={self.heads}")
        for name in ("num_atom_types", "num_bond_types", "max_atoms", "layers", "heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def num_block_classes(self) -> int:
        """(size, degree) classes of a block: size 0 .. max_atoms times degree 0 .. max_degree."""
        return (self.max_atoms + 1) * (self.max_degree + 1)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PARDOutput:
    """What :meth:`PARDNet.forward` returns.

    Attributes:
        atoms: (B, N, num_atom_types) x0 logits of the noisy atoms.
        bonds: (B, N, N, num_bond_types) symmetric x0 logits of the noisy bonds (pair i, j
            is read where max(b(i), b(j)) is a noisy block).
        next_block: (B, N, num_block_classes) logits of the block after clean block m
            (row m; rows of absent blocks are meaningless).
        first_block: (B, num_block_classes) logits of block 0 (from the conditions alone).
    """

    atoms: torch.Tensor
    bonds: torch.Tensor
    next_block: torch.Tensor
    first_block: torch.Tensor


def graph_views(clean_block: torch.Tensor, noisy_block: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Visibility of the doubled graph.

    Returns ``vis`` (B, 2N, 2N) bool, ``vis[p, q]`` = q in V(p) (padding sees itself only),
    and ``pair`` (B, 2N, 2N) bool, the pairs that stand for a bond of some view
    (``vis | vis^T`` without padding).
    """
    vis = skip_causal_mask(clean_block, noisy_block)
    real = torch.cat([clean_block, noisy_block], -1) >= 0
    pair = (vis | vis.transpose(-1, -2)) & real[..., :, None] & real[..., None, :]
    return vis, pair


class _Attention(nn.Module):
    """Multi-head attention over nodes with a per-head bias from the pair features."""

    def __init__(self, node_dim: int, edge_dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(node_dim, 3 * node_dim)
        self.bias = nn.Linear(edge_dim, heads)
        self.out = nn.Linear(node_dim, node_dim)
        self.dropout = dropout

    def forward(self, h: torch.Tensor, e: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        b, n, d = h.shape
        q, k, v = self.qkv(h).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.bias(e).permute(0, 3, 1, 2)  # (B, H, 2N, 2N)
        bias = bias.masked_fill(~vis[:, None], float("-inf"))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


def _mlp(dim: int, ratio: int = 2) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, ratio * dim), nn.SiLU(), nn.Linear(ratio * dim, dim))


class _Layer(nn.Module):
    """Attention + node MLP, node -> pair, restricted PPGN product + pair MLP, pair -> node."""

    def __init__(self, c: PARDNetConfig):
        super().__init__()
        self.norm_h = nn.LayerNorm(c.node_dim)
        self.attn = _Attention(c.node_dim, c.edge_dim, c.heads, c.dropout)
        self.mlp_h = _mlp(c.node_dim)
        self.node_to_pair = nn.Sequential(nn.LayerNorm(c.node_dim), nn.Linear(c.node_dim, c.edge_dim))
        self.norm_e = nn.LayerNorm(c.edge_dim)
        self.m1 = nn.Linear(c.edge_dim, c.edge_dim)
        self.m2 = nn.Linear(c.edge_dim, c.edge_dim)
        self.mix = nn.Linear(2 * c.edge_dim, c.edge_dim)
        self.mlp_e = _mlp(c.edge_dim)
        self.pair_to_node = nn.Sequential(nn.LayerNorm(c.edge_dim), nn.Linear(c.edge_dim, c.node_dim))
        self.scale = 1.0 / c.max_atoms

    def product(self, e: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        """sum over l in V(p, q) of m1(e)_pl m2(e)_lq, per channel."""
        a = self.m1(e).permute(0, 3, 1, 2)  # (B, C, P, L)
        b = self.m2(e).permute(0, 3, 1, 2)  # (B, C, L, Q)
        v = vis[:, None].to(a.dtype)
        left = (a * v) @ b  # l in V(p)
        right = a @ (b * v.transpose(-1, -2))  # l in V(q)
        out = torch.where(vis[:, None], left, right)
        return out.permute(0, 2, 3, 1) * self.scale

    def forward(self, h, e, vis, vis_f, count):
        h = h + self.attn(self.norm_h(h), e, vis)
        h = h + self.mlp_h(h)
        p = self.node_to_pair(h)
        e = e + p[:, :, None] + p[:, None, :]
        en = self.norm_e(e)
        e = e + self.mix(torch.cat([en, self.product(en, vis)], -1))
        e = e + self.mlp_e(e)
        h = h + self.pair_to_node((e * vis_f[..., None]).sum(2) / count)
        return h, e


class PARDNet(nn.Module):
    """The PARD denoiser and block-property model (see the module docstring).

    Shapes (B graphs padded to N atoms):
        clean_x (B, N) long, clean_e (B, N, N) long, clean_block (B, N) long (-1 absent);
        noisy_x (B, N) long, noisy_e (B, N, N) long, noisy_block (B, N) long (-1 absent);
        t (B, N) float, the diffusion time of each noisy node (0 elsewhere);
        degree (B, N) long, the degree class of each node's block;
        cond (B, cond_dim) float and cond_mask (B, cond_dim) bool (False = not given).
    """

    def __init__(self, config: PARDNetConfig):
        super().__init__()
        self.config = c = config
        self.atom_embed = nn.Embedding(c.num_atom_types, c.node_dim)
        self.bond_embed = nn.Embedding(c.num_bond_types, c.edge_dim)
        self.block_embed = nn.Embedding(c.max_atoms + 1, c.node_dim)
        self.degree_embed = nn.Embedding(c.max_degree + 1, c.node_dim)
        self.noisy_embed = nn.Embedding(2, c.node_dim)
        self.pair_kind = nn.Embedding(3, c.edge_dim)  # clean pair, pair with a noisy node, diagonal
        self.time_node = TimeEmbedding(c.node_dim)
        self.time_pair = TimeEmbedding(c.edge_dim)
        self.cond_embed = nn.Sequential(nn.Linear(2 * c.cond_dim, c.node_dim), nn.SiLU(), nn.Linear(c.node_dim, c.node_dim)) if c.cond_dim else None
        self.layers = nn.ModuleList(_Layer(c) for _ in range(c.layers))
        self.atom_out = nn.Sequential(nn.LayerNorm(c.node_dim), nn.Linear(c.node_dim, c.num_atom_types))
        self.bond_out = nn.Sequential(nn.LayerNorm(c.edge_dim), nn.Linear(c.edge_dim, c.num_bond_types))
        self.block_out = nn.Sequential(
            nn.LayerNorm(2 * c.node_dim), nn.Linear(2 * c.node_dim, c.node_dim), nn.SiLU(), nn.Linear(c.node_dim, c.num_block_classes)
        )
        self.first_out = nn.Sequential(nn.Linear(c.node_dim, c.node_dim), nn.SiLU(), nn.Linear(c.node_dim, c.num_block_classes))

    def condition(self, cond: torch.Tensor | None, cond_mask: torch.Tensor | None, batch: int, device) -> torch.Tensor:
        """Graph-level condition embedding (B, node_dim); zeros without conditions."""
        c = self.config
        if self.cond_embed is None:
            return torch.zeros(batch, c.node_dim, device=device)
        if cond is None:
            cond = torch.zeros(batch, c.cond_dim, device=device)
            cond_mask = torch.zeros(batch, c.cond_dim, dtype=torch.bool, device=device)
        given = cond_mask.to(cond.dtype)
        return self.cond_embed(torch.cat([cond * given, given], -1))

    def first_block(self, cond=None, cond_mask=None, batch: int = 1, device=None) -> torch.Tensor:
        """Logits (B, num_block_classes) of block 0's (size, degree) class."""
        if cond is not None:
            batch, device = cond.shape[0], cond.device
        device = device or self.atom_embed.weight.device
        return self.first_out(self.condition(cond, cond_mask, batch, device))

    def forward(
        self, clean_x, clean_e, clean_block, noisy_x, noisy_e, noisy_block, t, degree, cond=None, cond_mask=None,
    ) -> PARDOutput:
        c = self.config
        b, n = clean_x.shape
        vis, pair = graph_views(clean_block, noisy_block)
        blocks = torch.cat([clean_block, noisy_block], 1)
        real = blocks >= 0
        noisy = torch.cat([torch.zeros_like(clean_block, dtype=torch.bool), torch.ones_like(noisy_block, dtype=torch.bool)], 1)
        t2 = torch.cat([torch.zeros_like(t), t], 1) * noisy
        cond_h = self.condition(cond, cond_mask, b, clean_x.device)
        h = (
            self.atom_embed(torch.cat([clean_x, noisy_x], 1))
            + self.block_embed(blocks.clamp(0, c.max_atoms))
            + self.degree_embed(torch.cat([degree, degree], 1).clamp(0, c.max_degree))
            + self.noisy_embed(noisy.long())
            + self.time_node(t2)
            + cond_h[:, None]
        ) * real[..., None]
        e_types = torch.cat([torch.cat([clean_e, noisy_e], 2), torch.cat([noisy_e, noisy_e], 2)], 1)
        pair_noisy = noisy[:, :, None] | noisy[:, None, :]
        kind = pair_noisy.long()
        kind = torch.where(torch.eye(2 * n, dtype=torch.bool, device=kind.device), torch.full_like(kind, 2), kind)
        pair_t = torch.maximum(t2[:, :, None], t2[:, None, :])
        e = (self.bond_embed(e_types) + self.pair_kind(kind) + self.time_pair(pair_t)) * pair[..., None]
        vis_f = (vis & pair).to(h.dtype)
        count = vis_f.sum(-1, keepdim=True).clamp_min(1.0)
        for layer in self.layers:
            h, e = layer(h, e, vis, vis_f, count)
        atoms = self.atom_out(h[:, n:])
        logits = self.bond_out(e)
        nn_, nc, cn = logits[:, n:, n:], logits[:, n:, :n], logits[:, :n, n:]
        within = 0.5 * (nn_ + nn_.transpose(1, 2))
        across = 0.5 * (nc + cn.transpose(1, 2))  # (noisy i, clean j) for b(j) < b(i)
        bi, bj = noisy_block[:, :, None], noisy_block[:, None, :]
        later = (clean_block[:, None, :] < bi)[..., None]  # i is the noisy one
        same = (bi == bj)[..., None]
        bonds = torch.where(same, within, torch.where(later, across, across.transpose(1, 2)))
        next_block = self._next_block(h[:, :n], clean_block)
        first = self.first_out(cond_h)
        return PARDOutput(atoms, bonds, next_block, first)

    def _next_block(self, h_clean: torch.Tensor, clean_block: torch.Tensor) -> torch.Tensor:
        """Readout of clean prefix m (blocks <= m): mean of its nodes and mean of block m's nodes."""
        n = h_clean.shape[1]
        m = torch.arange(n, device=h_clean.device)
        upto = (clean_block[:, None, :] <= m[None, :, None]) & (clean_block[:, None, :] >= 0)  # (B, M, N)
        this = clean_block[:, None, :] == m[None, :, None]
        pool = lambda w: (w.to(h_clean.dtype) @ h_clean) / w.sum(-1, keepdim=True).clamp_min(1)  # noqa: E731
        return self.block_out(torch.cat([pool(upto), pool(this)], -1))
