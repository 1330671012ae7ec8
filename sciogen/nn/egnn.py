"""E(n)-equivariant graph neural network on dense, padded batches of point clouds.

EGNN of Satorras, Hoogeboom & Welling (2021, "E(n) Equivariant Graph Neural Networks"),
in the variant of EDM (Hoogeboom, Satorras, Vignac & Welling 2022, "Equivariant Diffusion
for Molecule Generation in 3D", ICML 2022): coordinate steps normalised by
``distance + norm_constant`` and optionally bounded by ``tanh``, squared distances (raw or
as sinusoids) of the current and of the input coordinates on every edge, attention-like
edge gating, node and edge masks for padded batches, and a coordinate output whose
displacement has zero mean over the real atoms, so a diffusion in the zero centre-of-mass
subspace stays there.

The graph is fully connected, as in EDM: every ordered pair ``i != j`` of real atoms of one
molecule is an edge. Molecules are padded to a common size ``N``; ``node_mask`` marks the real
atoms and padded atoms neither send nor receive messages.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

__all__ = ["EGNN", "remove_mean", "check_mean_zero", "equivariant_displacement"]

Aggregation = Literal["sum", "mean"]
_AGGREGATIONS = ("sum", "mean")
_EPS = 1e-8  # inside square roots of squared distances, so coincident atoms have finite gradients


def _as_node_mask(node_mask: torch.Tensor, batch: int, nodes: int) -> torch.Tensor:
    """(B, N) or (B, N, 1) mask of any dtype (non-zero = real atom) -> (B, N) bool."""
    if node_mask.ndim == 3 and node_mask.shape[-1] == 1:
        node_mask = node_mask[..., 0]
    if tuple(node_mask.shape) != (batch, nodes):
        raise ValueError(f"node_mask must have shape (B, N) = ({batch}, {nodes}), got {tuple(node_mask.shape)}")
    return node_mask if node_mask.dtype == torch.bool else node_mask != 0


def remove_mean(x: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
    """Subtract from each molecule the mean of its real atoms; padded atoms become exactly 0.

    ``x_i - (1/n) sum_{j real} x_j`` for real atoms ``i``, with ``n`` the molecule's number of
    real atoms (a molecule without real atoms is all zeros). This is the projection onto the
    zero centre-of-mass subspace in which EDM's coordinate diffusion lives.

    Args:
        x: (B, N, D) positions or displacements; padded entries may hold anything finite or not.
        node_mask: (B, N) (or (B, N, 1)), True / non-zero for real atoms.

    Returns:
        (B, N, D) tensor with zero mean over the real atoms of each molecule.
    """
    if x.ndim != 3:
        raise ValueError(f"x must have shape (B, N, D), got {tuple(x.shape)}")
    mask = _as_node_mask(node_mask, x.shape[0], x.shape[1])[..., None]
    x = torch.where(mask, x, 0.0)
    count = mask.sum(dim=1, keepdim=True).clamp(min=1).to(x.dtype)
    return torch.where(mask, x - x.sum(dim=1, keepdim=True) / count, 0.0)


def check_mean_zero(x: torch.Tensor, node_mask: torch.Tensor, atol: float = 1e-4) -> None:
    """Raise unless ``x`` is zero on padded atoms and has zero mean over each molecule's real atoms.

    Args:
        x: (B, N, D) positions or displacements.
        node_mask: (B, N) (or (B, N, 1)), True / non-zero for real atoms.
        atol: largest absolute value tolerated for a padded entry and for a component of a mean.

    Raises:
        ValueError: naming the first offending molecule, its error and the fix.
    """
    if x.ndim != 3:
        raise ValueError(f"x must have shape (B, N, D), got {tuple(x.shape)}")
    mask = _as_node_mask(node_mask, x.shape[0], x.shape[1])[..., None]
    padded = torch.where(mask, 0.0, x).abs().amax(dim=(1, 2))
    if not bool((padded <= atol).all()):
        b = int(torch.nonzero(~(padded <= atol))[0])
        raise ValueError(
            f"x is not masked: molecule {b} has a padded entry of size {float(padded[b]):.3g} > atol={atol}; "
            "set padded atoms to zero, e.g. with remove_mean(x, node_mask)"
        )
    count = mask.sum(dim=1).clamp(min=1).to(x.dtype)
    mean = (torch.where(mask, x, 0.0).sum(dim=1) / count).abs().amax(dim=-1)
    if not bool((mean <= atol).all()):
        b = int(torch.nonzero(~(mean <= atol))[0])
        raise ValueError(
            f"x does not have zero mean over the real atoms: molecule {b} has |mean| = {float(mean[b]):.3g} > atol={atol}; "
            "centre it with remove_mean(x, node_mask)"
        )


def equivariant_displacement(x_out: torch.Tensor, x_in: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
    """``remove_mean(x_out - x_in)``: the coordinate prediction of EDM's network (its eps_x).

    Translation invariant and rotation / reflection equivariant when ``x_out`` is the output
    of :class:`EGNN` for ``x_in``. Shapes: (B, N, 3), (B, N, 3), (B, N) -> (B, N, 3).
    """
    if x_out.shape != x_in.shape:
        raise ValueError(f"x_out {tuple(x_out.shape)} and x_in {tuple(x_in.shape)} must have the same shape")
    return remove_mean(x_out - x_in, node_mask)


class _DistanceSinusoids(nn.Module):
    """Sinusoids of the distance ``d = sqrt(d2)`` at geometric frequencies (EDM's ``sin_embedding``).

    ``[sin(w_k d), cos(w_k d)]`` with ``w_k = 2 pi div^k / max_res`` for ``k = 0 .. K-1``, and
    ``K = floor(log_div(max_res / min_res)) + 1``: wavelengths from ``max_res`` down to about
    ``min_res`` (Å). Shapes: d2 (..., 1) -> (..., 2K).
    """

    def __init__(self, max_res: float = 15.0, min_res: float = 15.0 / 2000.0, div: float = 4.0):
        super().__init__()
        self.count = int(math.log(max_res / min_res, div)) + 1
        self.max_res, self.div = float(max_res), float(div)
        self.dim = 2 * self.count

    def forward(self, d2: torch.Tensor) -> torch.Tensor:
        # frequencies made in the input's dtype: float32 ones would cost float64 inputs ~1e-4 rad at the top one
        freqs = 2 * math.pi * self.div ** torch.arange(self.count, dtype=d2.dtype, device=d2.device) / self.max_res
        angle = torch.sqrt(d2 + _EPS) * freqs
        return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


class _PairLinear(nn.Module):
    """``Linear([h_i, h_j, e_ij])`` computed as ``A h_i + B h_j + C e_ij + b``, without building the
    (B, N, N, 2F + E) concatenation. Shapes: h (B, N, F), e (B, N, N, E) -> (B, N, N, out)."""

    def __init__(self, node_dim: int, edge_dim: int, out_dim: int):
        super().__init__()
        self.source = nn.Linear(node_dim, out_dim)
        self.target = nn.Linear(node_dim, out_dim, bias=False)
        self.edge = nn.Linear(edge_dim, out_dim, bias=False)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return self.source(h)[:, :, None] + self.target(h)[:, None, :] + self.edge(e)


def _aggregate(messages: torch.Tensor, edge_mask: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """``sum_j mask_ij m_ij / norm_i``. Shapes: (B, N, N, C), (B, N, N, 1), (B, N, 1) -> (B, N, C)."""
    return (messages * edge_mask).sum(dim=2) / norm


class _InvariantLayer(nn.Module):
    """One message-passing update of the invariant features (EGNN Eq. 3, 5, 6, with edge gating).

    ``m_ij = phi_e(h_i, h_j, e_ij)``, gated ``m_ij <- m_ij * sigmoid(w . m_ij)`` when ``attention``,
    ``h_i <- h_i + phi_h(h_i, sum_j m_ij / Z_i)``.
    """

    def __init__(self, hidden: int, edge_dim: int, attention: bool):
        super().__init__()
        self.edge_in = _PairLinear(hidden, edge_dim, hidden)
        self.edge_mlp = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.gate = nn.Sequential(nn.Linear(hidden, 1), nn.Sigmoid()) if attention else None
        self.node_mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, h, e, node_mask, edge_mask, norm):
        m = self.edge_mlp(self.edge_in(h, e))
        if self.gate is not None:
            m = m * self.gate(m)
        h = h + self.node_mlp(torch.cat([h, _aggregate(m, edge_mask, norm)], dim=-1))
        return h * node_mask


class _CoordinateUpdate(nn.Module):
    """EDM's coordinate update: ``x_i <- x_i + sum_j (x_i - x_j) / (d_ij + C) phi_x(h_i, h_j, e_ij) / Z_i``.

    With ``tanh``, ``phi_x = coords_range * tanh(.)``, so no edge moves an atom by more than
    ``coords_range`` in one layer. The last linear map starts near zero (Xavier gain 1e-3), so
    the network starts close to the identity on coordinates.
    """

    def __init__(self, hidden: int, edge_dim: int, tanh: bool, coords_range: float):
        super().__init__()
        self.tanh = tanh
        self.coords_range = coords_range
        out = nn.Linear(hidden, 1, bias=False)
        nn.init.xavier_uniform_(out.weight, gain=1e-3)
        self.edge_in = _PairLinear(hidden, edge_dim, hidden)
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), out)

    def forward(self, h, x, unit_diff, e, node_mask, edge_mask, norm):
        phi = self.mlp(self.edge_in(h, e))
        if self.tanh:
            phi = self.coords_range * torch.tanh(phi)
        return (x + _aggregate(unit_diff * phi, edge_mask, norm)) * node_mask


class _EquivariantBlock(nn.Module):
    """``sublayers`` invariant updates of h, then one coordinate update, on edge features
    ``[f(|x_i - x_j|^2), f(|x0_i - x0_j|^2), a_ij]`` from the block's input coordinates x, the
    network's input coordinates x0 and the user's edge attributes a."""

    def __init__(self, hidden: int, edge_dim: int, sublayers: int, attention: bool, tanh: bool, coords_range: float):
        super().__init__()
        self.layers = nn.ModuleList(_InvariantLayer(hidden, edge_dim, attention) for _ in range(sublayers))
        self.coord = _CoordinateUpdate(hidden, edge_dim, tanh, coords_range)

    def forward(self, h, x, e, unit_diff, node_mask, edge_mask, norm):
        for layer in self.layers:
            h = layer(h, e, node_mask, edge_mask, norm)
        return h, self.coord(h, x, unit_diff, e, node_mask, edge_mask, norm)


class EGNN(nn.Module):
    r"""E(n)-equivariant graph network (Satorras et al. 2021) in the EDM variant (Hoogeboom et al. 2022).

    ``h -> Linear -> layers x [sublayers x invariant update, coordinate update] -> Linear``. Each
    block ``l`` starts from coordinates ``x^l`` (``x^0`` = the input) and uses the edge features

        e_ij = [f(d_ij^l), f(d_ij^0), a_ij],   d_ij^l = |x_i^l - x_j^l|^2,

    with ``f`` the identity or, with ``sin_embedding``, sinusoids of the distance. An invariant
    update is ``m_ij = phi_e(h_i, h_j, e_ij) * sigmoid(w . m_ij)`` (the gate only with
    ``attention``), ``h_i <- h_i + phi_h(h_i, sum_{j != i} m_ij / Z_i)``; the coordinate update is

        x_i <- x_i + sum_{j != i} (x_i - x_j) / (sqrt(d_ij) + norm_constant) * phi_x(h_i, h_j, e_ij) / Z_i,

    ``phi_x`` bounded by ``coords_range * tanh`` when ``tanh``. Sums run over the real atoms of
    the molecule; ``Z_i = normalization_factor`` (``aggregation="sum"``) or the number of
    neighbours of ``i`` (``"mean"``). Finally the displacement is centred over the real atoms:

        x_out = x^0 + remove_mean(x^L - x^0),

    so ``x_out`` has the centre of mass of ``x^0`` (a zero-CoM input gives a zero-CoM output).
    ``h_out`` is invariant and ``x_out`` equivariant under rotations, reflections, translations
    and permutations of the atoms. Unlike EDM's code, the distance sinusoids are not detached,
    so gradients with respect to the coordinates are exact.

    Args:
        node_features: size F of the input node features (atom types, charges, time, context...).
        hidden: width of every MLP.
        layers: number of equivariant blocks (coordinate updates).
        out_node_features: size of ``h_out`` (default ``node_features``).
        edge_features: size E of the optional invariant edge attributes ``edge_attr`` (0 = none).
        tanh: bound each edge's coordinate coefficient by ``coords_range * tanh(.)``.
        coords_range: that bound, in the coordinates' units (Å), per block.
        norm_constant: ``C`` in the ``(x_i - x_j) / (|x_i - x_j| + C)`` normalisation (EDM: 1).
        attention: gate each message by ``sigmoid(Linear(m_ij))`` (EDM's "inference of edges").
        sublayers: invariant updates per block.
        aggregation: ``"sum"`` (divided by ``normalization_factor``) or ``"mean"`` over neighbours.
        normalization_factor: divisor of the summed messages (EDM: 1 on QM9, 1 or 100 elsewhere).
        sin_embedding: edge features as distance sinusoids instead of raw squared distances.

    Shapes:
        h (B, N, F), x (B, N, 3), node_mask (B, N) bool (True = real atom; (B, N, 1) or 0/1
        numbers are accepted), edge_attr (B, N, N, E) -> h_out (B, N, out_node_features),
        x_out (B, N, 3). Padded atoms' outputs are exactly 0 and their inputs are ignored
        (they may hold any values, NaN included).
    """

    def __init__(
        self,
        node_features: int,
        hidden: int = 128,
        layers: int = 4,
        out_node_features: int | None = None,
        edge_features: int = 0,
        tanh: bool = True,
        coords_range: float = 15.0,
        norm_constant: float = 1.0,
        attention: bool = True,
        sublayers: int = 2,
        aggregation: Aggregation = "sum",
        normalization_factor: float = 1.0,
        sin_embedding: bool = False,
    ):
        super().__init__()
        for name, value in (("node_features", node_features), ("hidden", hidden), ("layers", layers), ("sublayers", sublayers)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        out_node_features = node_features if out_node_features is None else out_node_features
        if out_node_features < 1:
            raise ValueError(f"out_node_features must be >= 1, got {out_node_features}")
        if edge_features < 0:
            raise ValueError(f"edge_features must be >= 0, got {edge_features}")
        if aggregation not in _AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {_AGGREGATIONS}, got {aggregation!r}")
        if not normalization_factor > 0:
            raise ValueError(f"normalization_factor must be > 0, got {normalization_factor}")
        if not coords_range > 0:
            raise ValueError(f"coords_range must be > 0, got {coords_range}")
        if not norm_constant >= 0:
            raise ValueError(f"norm_constant must be >= 0, got {norm_constant}")
        self.node_features = node_features
        self.out_node_features = out_node_features
        self.edge_features = edge_features
        self.norm_constant = float(norm_constant)
        self.aggregation = aggregation
        self.normalization_factor = float(normalization_factor)
        self.distance_features = _DistanceSinusoids() if sin_embedding else None
        distance_dim = self.distance_features.dim if sin_embedding else 1
        edge_dim = 2 * distance_dim + edge_features
        self.embedding = nn.Linear(node_features, hidden)
        self.blocks = nn.ModuleList(
            _EquivariantBlock(hidden, edge_dim, sublayers, attention, tanh, float(coords_range)) for _ in range(layers)
        )
        self.embedding_out = nn.Linear(hidden, out_node_features)

    def _distance(self, d2: torch.Tensor) -> torch.Tensor:
        return d2 if self.distance_features is None else self.distance_features(d2)

    def _geometry(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Squared distances (B, N, N, 1) and normalised differences (x_i - x_j) / (|x_i - x_j| + C) (B, N, N, 3)."""
        diff = x[:, :, None, :] - x[:, None, :, :]
        d2 = (diff**2).sum(dim=-1, keepdim=True)
        return d2, diff / (torch.sqrt(d2 + _EPS) + self.norm_constant)

    def _check(self, h, x, node_mask, edge_attr) -> torch.Tensor:
        if h.ndim != 3 or h.shape[-1] != self.node_features:
            raise ValueError(f"h must have shape (B, N, node_features={self.node_features}), got {tuple(h.shape)}")
        batch, nodes = h.shape[:2]
        if tuple(x.shape) != (batch, nodes, 3):
            raise ValueError(f"x must have shape (B, N, 3) = ({batch}, {nodes}, 3) like h, got {tuple(x.shape)}")
        if not (h.is_floating_point() and x.is_floating_point()):
            raise ValueError(f"h and x must be floating point, got {h.dtype} and {x.dtype}")
        mask = _as_node_mask(node_mask, batch, nodes)
        if self.edge_features and edge_attr is None:
            raise ValueError(f"edge_attr (B, N, N, {self.edge_features}) is required: the model has edge_features={self.edge_features}")
        if not self.edge_features and edge_attr is not None:
            raise ValueError("edge_attr was given but the model has edge_features=0; build it with EGNN(..., edge_features=E)")
        if edge_attr is not None and tuple(edge_attr.shape) != (batch, nodes, nodes, self.edge_features):
            raise ValueError(
                f"edge_attr must have shape (B, N, N, edge_features) = ({batch}, {nodes}, {nodes}, {self.edge_features}), "
                f"got {tuple(edge_attr.shape)}"
            )
        return mask

    def forward(
        self, h: torch.Tensor, x: torch.Tensor, node_mask: torch.Tensor, edge_attr: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Update node features and coordinates of a padded batch of molecules.

        Args:
            h: (B, N, node_features) invariant node features.
            x: (B, N, 3) coordinates.
            node_mask: (B, N) bool, True for real atoms.
            edge_attr: (B, N, N, edge_features) invariant edge attributes (bond types...), or None.

        Returns:
            ``(h_out, x_out)``: (B, N, out_node_features) invariant features and (B, N, 3) updated
            coordinates with ``mean(x_out - x) = 0`` over each molecule's real atoms; both are 0
            on padded atoms.
        """
        mask = self._check(h, x, node_mask, edge_attr)
        eye = torch.eye(mask.shape[1], dtype=torch.bool, device=mask.device)
        edge_bool = mask[:, :, None] & mask[:, None, :] & ~eye
        node_w, edge_w = mask[..., None].to(x.dtype), edge_bool[..., None].to(x.dtype)
        if self.aggregation == "sum":
            norm = torch.full_like(node_w, self.normalization_factor)
        else:
            norm = edge_w.sum(dim=2).clamp(min=1)
        h = torch.where(mask[..., None], h, 0.0)
        x0 = torch.where(mask[..., None], x, 0.0)
        d2_0, unit_diff = self._geometry(x0)
        static = [self._distance(d2_0)]
        if edge_attr is not None:
            static.append(torch.where(edge_bool[..., None], edge_attr, 0.0).to(x.dtype))
        h = self.embedding(h) * node_w
        x_l = x0
        for i, block in enumerate(self.blocks):
            d2 = d2_0
            if i > 0:
                d2, unit_diff = self._geometry(x_l)
            e = torch.cat([self._distance(d2), *static], dim=-1)
            h, x_l = block(h, x_l, e, unit_diff, node_w, edge_w, norm)
        h_out = torch.where(mask[..., None], self.embedding_out(h), 0.0)
        x_out = x0 + remove_mean(x_l - x0, mask)
        return h_out, x_out
