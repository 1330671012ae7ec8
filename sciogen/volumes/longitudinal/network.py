"""The longitudinal network: a visit encoder, the sequence-aware conditioner (attention over
earlier visits and their times under the block-causal mask of :mod:`sciogen.ar`) and MONAI's
``DiffusionModelUNet`` that cross-attends to it.

Every visit k is encoded into ``tokens^3`` tokens (a coarse spatial grid) plus embeddings of
the token's place and the visit's time stamp; every visit slot also owns ``queries`` query
tokens carrying the embeddings of its time and of the gap to the latest earlier present visit.
One transformer runs over ``[visit tokens, query tokens]`` under
:func:`sciogen.ar.skip_causal_mask` with the visit number as block index and -1 for a missing
visit: visit tokens of k see present visits <= k, the queries of k see present visits < k and
each other, missing visits are seen by nobody. The queries' outputs ``(M, D)`` are the U-Net's
cross-attention context (MONAI ``with_conditioning`` has no key-padding mask, so the masking
happens here and the context is never padded), their mean is added to the U-Net's time
embedding (MONAI's ``class_labels`` path), and the latest present earlier visit is
concatenated to the noisy input with a channel saying whether there is one.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from monai.networks.nets import DiffusionModelUNet
from torch import nn

from sciogen.ar import Transformer, TransformerConfig, skip_causal_mask
from sciogen.nn.embeddings import TimeEmbedding

from .data import latest_earlier, previous_visit

__all__ = ["VisitEncoder", "SequenceConditioner", "LongitudinalUNet"]


class VisitEncoder(nn.Module):
    """One visit -> ``tokens^3`` tokens: strided 3D convolutions (GroupNorm, SiLU), then
    average pooling to a ``tokens^3`` grid and a linear map to ``dim``. Each visit is
    encoded on its own (no batch statistics), so visits cannot leak into each other here.

    Shapes: (N, 1, X, Y, Z) -> (N, tokens^3, dim).
    """

    def __init__(self, channels: Sequence[int], dim: int, tokens: int, groups: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv3d(1, channels[0], 3, padding=1)]
        previous = channels[0]
        for c in channels:
            layers += [nn.GroupNorm(groups, previous), nn.SiLU(), nn.Conv3d(previous, c, 3, stride=2, padding=1)]
            previous = c
        layers += [nn.GroupNorm(groups, previous), nn.SiLU(), nn.AdaptiveAvgPool3d(tokens)]
        self.net = nn.Sequential(*layers)
        self.proj = nn.Linear(previous, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.net(x).flatten(2).transpose(1, 2))


class SequenceConditioner(nn.Module):
    """Attention over earlier visits with their time stamps (module docstring).

    Args:
        encoder_channels, tokens, groups: the :class:`VisitEncoder`.
        dim: token width D (the U-Net's cross-attention width).
        queries: query tokens M per visit slot (the context length).
        depth, heads: the transformer (:class:`sciogen.ar.Transformer`).
        time_scale: time units mapped to 1 in the time embeddings.

    :meth:`forward` takes visits ``(B, V, 1, X, Y, Z)``, times ``(B, V)``, present ``(B, V)``
    bool and returns the context of every slot ``(B, V, M, D)``: slot k's depends only on
    the present visits before k and their times, and on t_k. Missing visits are replaced by
    zeros before anything reads them (NaN there is harmless).
    """

    def __init__(self, encoder_channels: Sequence[int], dim: int, tokens: int, queries: int, depth: int, heads: int,
                 groups: int, time_scale: float):
        super().__init__()
        self.time_scale = float(time_scale)
        self.encoder = VisitEncoder(encoder_channels, dim, tokens, groups)
        self.place = nn.Parameter(torch.randn(tokens**3, dim) * 0.02)
        self.queries = nn.Parameter(torch.randn(queries, dim) * 0.02)
        self.time_embed = TimeEmbedding(dim)
        self.gap_embed = TimeEmbedding(dim)
        self.no_history = nn.Parameter(torch.zeros(dim))
        self.transformer = Transformer(TransformerConfig(dim=dim, depth=depth, heads=heads))

    def forward(self, visits: torch.Tensor, times: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        b, v = present.shape
        present = present.to(visits.device)
        images = torch.where(present.view(b, v, 1, 1, 1, 1), visits, torch.zeros((), device=visits.device))
        when = torch.where(torch.isfinite(times), times, torch.zeros((), device=times.device)).float() / self.time_scale
        tokens = self.encoder(images.flatten(0, 1).float()).view(b, v, *self.place.shape)
        tokens = tokens + self.place + self.time_embed(when)[:, :, None]
        last = latest_earlier(present)
        gap = when - when.gather(1, last.clamp_min(0))
        history = torch.where((last >= 0)[..., None], self.gap_embed(gap), self.no_history)
        queries = self.queries + (self.time_embed(when) + history)[:, :, None]
        m = self.queries.shape[0]
        clean = torch.where(present, torch.arange(v, device=visits.device), -1).repeat_interleave(tokens.shape[2], 1)
        slots = torch.arange(v, device=visits.device).repeat_interleave(m)
        mask = skip_causal_mask(clean, slots)[:, None]
        sequence = torch.cat([tokens.flatten(1, 2), queries.flatten(1, 2)], 1)
        return self.transformer(sequence, mask=mask)[:, clean.shape[1]:].view(b, v, m, -1)


class LongitudinalUNet(nn.Module):
    """MONAI ``DiffusionModelUNet`` with a :class:`SequenceConditioner` (module docstring).

    :meth:`condition` gives every slot's conditions; :meth:`forward` denoises targets:
    ``network(x, timesteps, context=(N, M, D), summary=(N, D), previous=(N, 2, X, Y, Z))``
    with precomputed conditions, or ``network(x, timesteps, visits=, times=, present=,
    index=(N, 2))`` computing them (``index`` rows: (subject, slot) of each row of x),
    which is how training runs, so data-parallel training sees one forward.
    """

    def __init__(self, unet_options: Mapping[str, Any], conditioner: SequenceConditioner, previous_image: bool):
        super().__init__()
        self.previous_image = bool(previous_image)
        options = dict(unet_options)
        dim = conditioner.queries.shape[1]
        options.update(in_channels=1 + (2 if self.previous_image else 0), with_conditioning=True,
                       cross_attention_dim=dim, num_class_embeds=1)
        self.conditioner = conditioner
        self.unet = DiffusionModelUNet(**options)
        # MONAI adds class_embedding(class_labels) to the time embedding: here the pooled context
        self.unet.class_embedding = nn.Linear(dim, 4 * options["channels"][0])

    def condition(self, visits: torch.Tensor, times: torch.Tensor, present: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"context": (B, V, M, D), "summary": (B, V, D), "previous": (B, V, 2, X, Y, Z)}``:
        slot k's conditions (``previous``: the latest present visit before k and a channel of
        ones, or zeros when there is none)."""
        context = self.conditioner(visits, times, present)
        out = {"context": context, "summary": context.mean(2)}
        if self.previous_image:
            image, has = previous_visit(visits, present)
            out["previous"] = torch.cat([image, has.to(image.dtype)[..., None, None, None, None].expand_as(image)], 2)
        return out

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None,
                summary: torch.Tensor | None = None, previous: torch.Tensor | None = None, *,
                visits: torch.Tensor | None = None, times: torch.Tensor | None = None,
                present: torch.Tensor | None = None, index: torch.Tensor | None = None) -> torch.Tensor:
        if visits is not None:
            cond = self.condition(visits, times, present)
            context, summary = cond["context"][index[:, 0], index[:, 1]], cond["summary"][index[:, 0], index[:, 1]]
            previous = cond["previous"][index[:, 0], index[:, 1]] if self.previous_image else None
        if context is None or summary is None:
            raise ValueError("pass the conditions (context=, summary=) or the history (visits=, times=, present=, "
                             "index=)")
        if self.previous_image:
            if previous is None:
                raise ValueError("this network concatenates the previous visit: pass previous=")
            x = torch.cat([x, previous.to(x.dtype)], 1)
        return self.unet(x, timesteps=timesteps, context=context.to(x.dtype), class_labels=summary.to(x.dtype))
