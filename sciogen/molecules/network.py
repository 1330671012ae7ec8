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

__all__ = ["PARDNetConfig", "PARDNet", "PARDOutput", "Views", "graph_views"]


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
        atoms: (B, Nn, num_atom_types) x0 logits of the noisy atoms.
        cross: (B, Nn, Nc, num_bond_types) x0 logits of the bonds between noisy atom i and
            clean atom j (read where b(j) < b(i)).
        within: (B, Nn, Nn, num_bond_types) symmetric x0 logits of the bonds between two
            noisy atoms (read where they are in the same block).
        next_block: (B, Nc, num_block_classes) logits of the block after clean block m
            (row m; rows of absent blocks are meaningless).
        first_block: (B, num_block_classes) logits of block 0 (from the conditions alone).
    """

    atoms: torch.Tensor
    cross: torch.Tensor
    within: torch.Tensor
    next_block: torch.Tensor
    first_block: torch.Tensor

    def bonds(self, block: torch.Tensor) -> torch.Tensor:
        """Training layout (clean and noisy copies of the same N atoms with blocks ``block``):
        the (B, N, N, K) symmetric logits of every bond, each read from the block that owns it
        (the later of its two atoms' blocks)."""
        bi, bj = block[:, :, None], block[:, None, :]
        return torch.where((bi == bj)[..., None], self.within,
                           torch.where((bj < bi)[..., None], self.cross, self.cross.transpose(1, 2)))


def graph_views(clean_block: torch.Tensor, noisy_block: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Visibility of the doubled graph.

    Returns ``vis`` (B, Nc + Nn, Nc + Nn) bool, ``vis[p, q]`` = q in V(p) (padding sees itself
    only), and ``pair`` (B, Nc + Nn, Nc + Nn) bool, the pairs that stand for a bond of some view
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

    def qkv_heads(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, d = h.shape
        return self.qkv(h).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)

    def attend(self, q, k, v, e: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        """Queries (B, H, P, dh) over keys (B, H, Q, dh) with bias e (B, P, Q, edge_dim), mask vis (B, P, Q)."""
        bias = self.bias(e).permute(0, 3, 1, 2).masked_fill(~vis[:, None], float("-inf"))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0)
        b, heads, n, dh = q.shape
        return self.out(y.transpose(1, 2).reshape(b, n, heads * dh))


def _mlp(dim: int, ratio: int = 2) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, ratio * dim), nn.SiLU(), nn.Linear(ratio * dim, dim))


def _cf(x: torch.Tensor) -> torch.Tensor:
    """(B, P, Q, C) -> channels first (B, C, P, Q), for batched matrix products."""
    return x.permute(0, 3, 1, 2)


@dataclass
class Views:
    """The visibility blocks of the doubled graph [clean (Nc), noisy (Nn)]: ``cc`` (B, Nc, Nc),
    ``nc`` (B, Nn, Nc), ``nn`` (B, Nn, Nn) of ``vis``; clean never sees noisy. ``*_pair``: the
    pairs that stand for a bond; ``count_*``: (B, N, 1) how many pairs a node pools."""

    cc: torch.Tensor
    nc: torch.Tensor
    nn: torch.Tensor
    cc_pair: torch.Tensor
    nc_pair: torch.Tensor
    nn_pair: torch.Tensor

    @classmethod
    def of(cls, clean_block: torch.Tensor, noisy_block: torch.Tensor) -> "Views":
        vis, pair = graph_views(clean_block, noisy_block)
        c = clean_block.shape[1]
        return cls(vis[:, :c, :c], vis[:, c:, :c], vis[:, c:, c:], pair[:, :c, :c], pair[:, c:, :c], pair[:, c:, c:])


class _Layer(nn.Module):
    """Attention + node MLP, node -> pair, restricted PPGN product + pair MLP, pair -> node.

    Run in two passes: :meth:`clean` over the clean part alone (it never sees the noisy
    part), which returns what the noisy part reads from it, then :meth:`noisy` over the
    noisy atoms and their pairs (noisy-clean ``nc``, clean-noisy ``cn``, noisy-noisy ``nn``).
    Sampling runs the clean pass once per block and the noisy pass at every solver step.
    """

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

    def _pair_update(self, e: torch.Tensor, product: torch.Tensor) -> torch.Tensor:
        e = e + self.mix(torch.cat([self.norm_e(e), product.permute(0, 2, 3, 1) * self.scale], -1))
        return e + self.mlp_e(e)

    def _pool(self, *parts) -> torch.Tensor:
        """Pair -> node: mean of e_pq over the q that p sees; parts are (e, vis & pair) pairs."""
        total = sum((e * m[..., None]).sum(2) for e, m in parts)
        count = sum(m.sum(2, keepdim=True) for _, m in parts).clamp_min(1.0)
        return self.pair_to_node(total / count)

    def clean(self, h, e, v: Views):
        """One layer over the clean part: h (B, Nc, D), e (B, Nc, Nc, C) -> (h, e, cache)."""
        q, k, val = self.attn.qkv_heads(self.norm_h(h))
        h = h + self.attn.attend(q, k, val, e, v.cc)
        h = h + self.mlp_h(h)
        p = self.node_to_pair(h)
        e = e + p[:, :, None] + p[:, None, :]
        en = self.norm_e(e)
        a, b = _cf(self.m1(en)), _cf(self.m2(en))
        vis = v.cc[:, None].to(a.dtype)
        # pair (p, q) sums over V(p) when q in V(p), else over V(q)
        prod = torch.where(v.cc[:, None], (a * vis) @ b, a @ (b * vis.transpose(-1, -2)))
        cache = {"k": k, "v": val, "p": p, "m1": a, "m2": b}
        e = self._pair_update(e, prod)
        h = h + self._pool((e, (v.cc & v.cc_pair).to(h.dtype)))
        return h, e, cache

    def noisy(self, h, e_nc, e_cn, e_nn, cache, v: Views):
        """One layer over the noisy atoms given the clean pass' cache of the same layer."""
        q, k, val = self.attn.qkv_heads(self.norm_h(h))
        keys, values = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], val], 2)
        h = h + self.attn.attend(q, keys, values, torch.cat([e_nc, e_nn], 2), torch.cat([v.nc, v.nn], 2))
        h = h + self.mlp_h(h)
        p, pc = self.node_to_pair(h), cache["p"]
        e_nc = e_nc + p[:, :, None] + pc[:, None, :]
        e_cn = e_cn + pc[:, :, None] + p[:, None, :]
        e_nn = e_nn + p[:, :, None] + p[:, None, :]
        a_nc, b_nc = _cf(self.m1(self.norm_e(e_nc))), _cf(self.m2(self.norm_e(e_nc)))
        a_cn, b_cn = _cf(self.m1(self.norm_e(e_cn))), _cf(self.m2(self.norm_e(e_cn)))
        a_nn, b_nn = _cf(self.m1(self.norm_e(e_nn))), _cf(self.m2(self.norm_e(e_nn)))
        vnc, vnn = v.nc[:, None].to(a_nc.dtype), v.nn[:, None].to(a_nc.dtype)
        a_nc_v, a_nn_v = a_nc * vnc, a_nn * vnn
        # noisy i, clean j (j in V(i)): sum over l in V(i) = clean l in V(i) and the noisy block
        prod_nc = a_nc_v @ cache["m2"] + a_nn_v @ b_nc
        # clean j, noisy i (j does not see i): sum over l in V(i)
        prod_cn = cache["m1"] @ (b_cn * vnc.transpose(-1, -2)) + a_cn @ (b_nn * vnn.transpose(-1, -2))
        # two noisy atoms of one block: sum over l in V(i)
        prod_nn = a_nc_v @ b_cn + a_nn_v @ b_nn
        e_nc, e_cn, e_nn = self._pair_update(e_nc, prod_nc), self._pair_update(e_cn, prod_cn), self._pair_update(e_nn, prod_nn)
        h = h + self._pool((e_nc, (v.nc & v.nc_pair).to(h.dtype)), (e_nn, (v.nn & v.nn_pair).to(h.dtype)))
        return h, e_nc, e_cn, e_nn


class PARDNet(nn.Module):
    """The PARD denoiser and block-property model (see the module docstring).

    Shapes (B graphs; Nc clean atoms, Nn noisy atoms, padded; in training Nc = Nn = N, the
    same atoms twice; in sampling the clean prefix and the new block alone):
        clean_x (B, Nc) long, clean_e (B, Nc, Nc) long, clean_block (B, Nc) long (-1 absent);
        noisy_x (B, Nn) long, noisy_block (B, Nn) long (-1 absent);
        noisy_cross (B, Nn, Nc) long, bonds between noisy atom i and clean atom j;
        noisy_within (B, Nn, Nn) long symmetric, bonds between noisy atoms;
        t (B, Nn) float, the diffusion time of each noisy atom;
        clean_degree (B, Nc), noisy_degree (B, Nn) long, the degree class of each atom's block;
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
        self.cond_embed = (nn.Sequential(nn.Linear(2 * c.cond_dim, c.node_dim), nn.SiLU(), nn.Linear(c.node_dim, c.node_dim))
                           if c.cond_dim else None)
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

    def encode_prefix(self, clean_x, clean_e, clean_block, clean_degree, views: Views, cond_h) -> tuple[torch.Tensor, list]:
        """The clean pass: node states (B, Nc, D) after the last layer and each layer's cache."""
        c = self.config
        real = clean_block >= 0
        zero = torch.zeros_like(clean_block, dtype=cond_h.dtype)
        h = (self.atom_embed(clean_x) + self.block_embed(clean_block.clamp(0, c.max_atoms))
             + self.degree_embed(clean_degree.clamp(0, c.max_degree)) + self.noisy_embed.weight[0]
             + self.time_node(zero) + cond_h[:, None]) * real[..., None]
        n = clean_x.shape[1]
        diag = torch.eye(n, dtype=torch.bool, device=clean_x.device)
        kind = self.pair_kind.weight[torch.where(diag, 2, 0)]
        e = (self.bond_embed(clean_e) + kind + self.time_pair(zero)[:, :, None]) * views.cc_pair[..., None]
        caches = []
        for layer in self.layers:
            h, e, cache = layer.clean(h, e, views)
            caches.append(cache)
        return h, caches

    def denoise(self, caches: list, noisy_x, noisy_cross, noisy_within, noisy_block, t, noisy_degree, views: Views, cond_h):
        """The noisy pass given the clean pass' caches: (atoms, cross, within) logits."""
        c = self.config
        real = noisy_block >= 0
        t = t * real
        h = (self.atom_embed(noisy_x) + self.block_embed(noisy_block.clamp(0, c.max_atoms))
             + self.degree_embed(noisy_degree.clamp(0, c.max_degree)) + self.noisy_embed.weight[1]
             + self.time_node(t) + cond_h[:, None]) * real[..., None]
        te = self.time_pair(t)  # a pair's time is the later of its atoms' times: the noisy atom's
        n = noisy_x.shape[1]
        diag = torch.eye(n, dtype=torch.bool, device=noisy_x.device)
        later = torch.where((t[:, :, None] >= t[:, None, :])[..., None], te[:, :, None], te[:, None, :])
        e_nc = (self.bond_embed(noisy_cross) + self.pair_kind.weight[1] + te[:, :, None]) * views.nc_pair[..., None]
        e_cn = e_nc.transpose(1, 2)
        e_nn = (self.bond_embed(noisy_within) + self.pair_kind.weight[torch.where(diag, 2, 1)] + later) * views.nn_pair[..., None]
        for layer, cache in zip(self.layers, caches):
            h, e_nc, e_cn, e_nn = layer.noisy(h, e_nc, e_cn, e_nn, cache, views)
        within = self.bond_out(e_nn)
        cross = 0.5 * (self.bond_out(e_nc) + self.bond_out(e_cn).transpose(1, 2))
        return self.atom_out(h), cross, 0.5 * (within + within.transpose(1, 2))

    def forward(
        self, clean_x, clean_e, clean_block, noisy_x, noisy_cross, noisy_within, noisy_block, t, clean_degree, noisy_degree,
        cond=None, cond_mask=None,
    ) -> PARDOutput:
        views = Views.of(clean_block, noisy_block)
        cond_h = self.condition(cond, cond_mask, clean_x.shape[0], clean_x.device)
        h_clean, caches = self.encode_prefix(clean_x, clean_e, clean_block, clean_degree, views, cond_h)
        atoms, cross, within = self.denoise(caches, noisy_x, noisy_cross, noisy_within, noisy_block, t, noisy_degree, views, cond_h)
        return PARDOutput(atoms, cross, within, self.next_block_logits(h_clean, clean_block), self.first_out(cond_h))

    def next_block_logits(self, h_clean: torch.Tensor, clean_block: torch.Tensor) -> torch.Tensor:
        """Readout of clean prefix m (blocks <= m): mean of its nodes and mean of block m's nodes."""
        n = h_clean.shape[1]
        m = torch.arange(n, device=h_clean.device)
        upto = (clean_block[:, None, :] <= m[None, :, None]) & (clean_block[:, None, :] >= 0)  # (B, M, N)
        this = clean_block[:, None, :] == m[None, :, None]
        pool = lambda w: (w.to(h_clean.dtype) @ h_clean) / w.sum(-1, keepdim=True).clamp_min(1)  # noqa: E731
        return self.block_out(torch.cat([pool(upto), pool(this)], -1))
