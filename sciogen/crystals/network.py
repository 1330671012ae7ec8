"""A periodic E(3)-invariant denoiser in the style of DiffCSP's CSPNet (Jiao et al. 2023).

Every atom i carries a feature h_i (its element embedding, the diffusion times); every
ordered pair (i, j) of atoms of the same cell exchanges a message

    m_ij = phi_m(h_i, h_j, G / s^2, psi(f_j - f_i)),      h_i <- h_i + phi_h(h_i, mean_j m_ij)

where G = L L^T is the Gram matrix of the lattice vectors (rows of L; invariant under
rotations L -> L R^T), s the crystal's length scale, and psi the Fourier features
sin / cos(2 pi k d), k = 0 .. K-1, of the fractional displacement d (invariant under a
periodic translation of all atoms). The outputs are

- the normalised score of the fractional coordinates, a linear map of h_i: (N, 3), invariant
  under rotations and translations, equivariant under atom permutations;
- the lattice prediction (eps or v of the lattice process) H L with H a 3 x 3 matrix read
  from mean_i h_i: rotates with the lattice (H L R^T), so the lattice process is
  O(3)-equivariant;
- logits of the element types (de novo generation): (N, K_types).

With ``cond_dim`` > 0 the network also takes scalar conditions (normalised properties):
condition k contributes ``w_k c_k + b_k`` when given and a learned null embedding ``n_k``
when not (dropped in training, unknown, or the unconditional half of classifier-free
guidance); the sum, through an MLP, is added to the time embedding of every atom.

Dense batches: all pairs of a padded (B, N) batch, masked; fine for cells of <= ~60 atoms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from sciogen.nn.embeddings import sinusoidal_embedding

__all__ = ["CSPNetConfig", "CSPNet", "ConditionEmbedding", "fourier_features"]


@dataclass
class CSPNetConfig:
    """Sizes of :class:`CSPNet` (DiffCSP: hidden 512, 6 layers, 128 frequencies); ``cond_dim``:
    number of scalar conditions (0: unconditional, no condition parameters)."""

    num_types: int
    hidden: int = 256
    layers: int = 4
    frequencies: int = 32
    time_dim: int = 64
    cond_dim: int = 0


class ConditionEmbedding(nn.Module):
    """Scalar conditions -> one vector: ``MLP(sum_k [w_k c_k + b_k if given else n_k])``.

    Shapes: cond (B, K) float (normalised values; anything where not given),
    given (B, K) bool -> (B, hidden).
    """

    def __init__(self, cond_dim: int, hidden: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cond_dim, hidden) / math.sqrt(hidden))
        self.bias = nn.Parameter(torch.zeros(cond_dim, hidden))
        self.null = nn.Parameter(torch.randn(cond_dim, hidden) / math.sqrt(hidden))
        self.mlp = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, cond: torch.Tensor, given: torch.Tensor) -> torch.Tensor:
        value = cond.nan_to_num().unsqueeze(-1) * self.weight + self.bias  # (B, K, hidden)
        per = torch.where(given.unsqueeze(-1), value, self.null.expand_as(value))
        return self.mlp(per.sum(1))


def fourier_features(d: torch.Tensor, frequencies: int) -> torch.Tensor:
    """Sin / cos(2 pi k d) for k = 0 .. frequencies-1 of fractional displacements.

    Shapes: d (..., 3) -> (..., 6 * frequencies). Periodic in every coordinate.
    """
    k = torch.arange(frequencies, device=d.device, dtype=d.dtype)
    args = 2.0 * math.pi * d.unsqueeze(-1) * k  # (..., 3, K)
    return torch.cat([args.sin(), args.cos()], dim=-1).flatten(-2)


class _Layer(nn.Module):
    """One message-passing layer over all pairs of atoms of a cell (CSPLayer)."""

    def __init__(self, hidden: int, edge_in: int):
        super().__init__()
        self.edge = nn.Sequential(nn.Linear(2 * hidden + edge_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.node = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.norm = nn.LayerNorm(hidden)

    def forward(self, h: torch.Tensor, edge_feat: torch.Tensor, pair_mask: torch.Tensor) -> torch.Tensor:
        b, n, d = h.shape
        x = self.norm(h)
        hi = x.unsqueeze(2).expand(b, n, n, d)
        hj = x.unsqueeze(1).expand(b, n, n, d)
        m = self.edge(torch.cat([hi, hj, edge_feat], dim=-1)) * pair_mask.unsqueeze(-1)
        agg = m.sum(2) / pair_mask.sum(2, keepdim=True).clamp_min(1.0)
        return h + self.node(torch.cat([x, agg], dim=-1))


class CSPNet(nn.Module):
    """Periodic invariant denoiser of (types, fractional coordinates, lattice).

    ``forward(types, frac, lattice, mask, t, t_types, cond=None, cond_mask=None)``:

    Shapes:
        types (B, N) long in [0, K) (noisy or clean element indices; anything on padding),
        frac (B, N, 3) in [0, 1), lattice (B, 3, 3) scaled to O(1) (rows = vectors),
        mask (B, N) bool, t (B,) time of lattice and coordinates, t_types (B,) time of the
        types (0 = the types are given, as in crystal structure prediction).
        -> dict(frac=(B, N, 3) normalised score, lattice=(B, 3, 3) eps or v, types=(B, N, K) logits).
    """

    def __init__(self, config: CSPNetConfig):
        super().__init__()
        self.config = c = config
        self.type_embed = nn.Embedding(c.num_types, c.hidden)
        self.time_mlp = nn.Sequential(nn.Linear(2 * c.time_dim, c.hidden), nn.SiLU(), nn.Linear(c.hidden, c.hidden))
        self.inp = nn.Linear(2 * c.hidden, c.hidden)
        edge_in = 9 + 6 * c.frequencies
        self.layers = nn.ModuleList([_Layer(c.hidden, edge_in) for _ in range(c.layers)])
        self.out_norm = nn.LayerNorm(c.hidden)
        self.frac_out = nn.Linear(c.hidden, 3, bias=False)
        self.lattice_out = nn.Linear(c.hidden, 9, bias=False)
        self.type_out = nn.Linear(c.hidden, c.num_types)
        # created last, and only for conditional models: unconditional ones keep their parameters
        self.cond_embed = ConditionEmbedding(c.cond_dim, c.hidden) if c.cond_dim else None

    def forward(self, types, frac, lattice, mask, t, t_types, cond=None, cond_mask=None) -> dict[str, torch.Tensor]:
        b, n = types.shape
        maskf = mask.to(frac.dtype)
        time = torch.cat([sinusoidal_embedding(t, self.config.time_dim),
                          sinusoidal_embedding(t_types, self.config.time_dim)], -1).to(frac.dtype)
        h = self.type_embed(types.clamp_min(0))
        time_h = self.time_mlp(time)
        if self.cond_embed is not None:
            if cond is None:
                cond = torch.zeros(b, self.config.cond_dim, dtype=frac.dtype, device=frac.device)
                cond_mask = torch.zeros(b, self.config.cond_dim, dtype=torch.bool, device=frac.device)
            time_h = time_h + self.cond_embed(cond.to(frac.dtype), cond_mask)
        elif cond is not None:
            raise ValueError("this CSPNet was built without conditions (cond_dim=0)")
        h = self.inp(torch.cat([h, time_h.unsqueeze(1).expand(b, n, -1)], -1))
        gram = (lattice @ lattice.transpose(-1, -2)).flatten(-2)  # (B, 9)
        d = frac.unsqueeze(1) - frac.unsqueeze(2)  # (B, N, N, 3): d[b, i, j] = f_j - f_i
        edge_feat = torch.cat([gram[:, None, None, :].expand(b, n, n, 9), fourier_features(d, self.config.frequencies)], -1)
        eye = torch.eye(n, dtype=torch.bool, device=mask.device)
        pair_mask = (mask.unsqueeze(1) & mask.unsqueeze(2) & ~eye).to(frac.dtype)
        for layer in self.layers:
            h = layer(h, edge_feat, pair_mask) * maskf.unsqueeze(-1)
        h = self.out_norm(h) * maskf.unsqueeze(-1)
        graph = h.sum(1) / maskf.sum(1, keepdim=True).clamp_min(1.0)
        lattice_eps = self.lattice_out(graph).view(b, 3, 3) @ lattice
        return {
            "frac": self.frac_out(h) * maskf.unsqueeze(-1),
            "lattice": lattice_eps,
            "types": self.type_out(h),
        }
