"""EDM's denoiser: an EGNN over (positions, noisy atom-type vectors, time, property).

``EDMDynamics(state, t, mask=..., condition=...)`` takes the noisy state of the core's dict
interface, ``{"pos": (B, N, 3), "types": (B, N, K)}``, and returns the predicted noise of
each field in the same layout: the position noise is the EGNN's coordinate displacement
with its mean over the real atoms removed (so it lives in the zero centre-of-mass subspace,
Hoogeboom et al. 2022, Sec. 3), the type noise its invariant node output. Time enters as a
node feature (as in EDM); a scalar property as a learned embedding, replaced by a learned
null vector where it is missing or dropped, so one network is both the conditional and the
unconditional model of classifier-free guidance.
"""

from __future__ import annotations

import torch
from torch import nn

from sciogen.nn import EGNN, equivariant_displacement

__all__ = ["EDMDynamics"]


class EDMDynamics(nn.Module):
    """The noise-prediction network of the 3D molecules domain.

    Args:
        num_types: size K of the atom-type vectors.
        hidden, layers, sublayers, attention: the EGNN's size (see :class:`sciogen.nn.EGNN`).
        conditional: whether the network takes a scalar property (normalised by the generator).
        condition_dim: width of the property embedding appended to every node's features.
    """

    def __init__(self, num_types: int, hidden: int = 128, layers: int = 6, sublayers: int = 2, attention: bool = True,
                 conditional: bool = False, condition_dim: int = 16):
        super().__init__()
        self.num_types = int(num_types)
        self.conditional = bool(conditional)
        extra = condition_dim if conditional else 0
        if conditional:
            self.condition_embed = nn.Sequential(nn.Linear(1, condition_dim), nn.SiLU(), nn.Linear(condition_dim, condition_dim))
            self.null_condition = nn.Parameter(torch.zeros(condition_dim))
        self.egnn = EGNN(self.num_types + 1 + extra, hidden=hidden, layers=layers, out_node_features=self.num_types,
                         sublayers=sublayers, attention=attention, tanh=True, coords_range=15.0, norm_constant=1.0,
                         normalization_factor=1.0, aggregation="sum", sin_embedding=False)

    def _condition_features(self, condition: torch.Tensor | None, batch: int, nodes: int, like: torch.Tensor) -> torch.Tensor:
        """(B, N, condition_dim): the embedded property, the learned null where it is NaN / absent."""
        null = self.null_condition.to(like.dtype).expand(batch, -1)
        if condition is None:
            feats = null
        else:
            condition = torch.as_tensor(condition, dtype=like.dtype, device=like.device).reshape(batch)
            present = torch.isfinite(condition)
            embedded = self.condition_embed(torch.where(present, condition, 0.0)[:, None])
            feats = torch.where(present[:, None], embedded, null)
        return feats[:, None, :].expand(batch, nodes, -1)

    def forward(self, state: dict[str, torch.Tensor], t: torch.Tensor, *, mask: torch.Tensor,
                condition: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        pos, types = state["pos"], state["types"]
        b, n, _ = pos.shape
        if types.shape != (b, n, self.num_types):
            raise ValueError(f"types must have shape (B, N, K) = ({b}, {n}, {self.num_types}), got {tuple(types.shape)}")
        node = mask.to(pos.dtype)[..., None]
        t = torch.as_tensor(t, dtype=pos.dtype, device=pos.device).reshape(-1)
        t = t.expand(b) if t.numel() == 1 else t
        features = [types, t[:, None, None].expand(b, n, 1)]
        if self.conditional:
            features.append(self._condition_features(condition, b, n, pos))
        elif condition is not None:
            raise ValueError("this model was trained without a property condition; retrain with data.condition set")
        h = torch.cat(features, dim=-1) * node
        h_out, x_out = self.egnn(h, pos, mask)
        return {"pos": equivariant_displacement(x_out, pos, mask), "types": h_out * node}
