"""Pre-norm transformer with a key/value cache, optionally conditioned per token by AdaLN.

One stack serves both autoregressive heads: the per-token head runs it causally; the
block-wise head runs it under a block-causal mask and conditions every token on its
diffusion time through AdaLN (DiT-style, Peebles & Xie 2023).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from sciogen.config import to_dict

from ..nn.adaln import AdaLNModulation, modulate
from ..nn.attention import KVCache, SelfAttention

__all__ = ["TransformerConfig", "TransformerBlock", "Transformer"]


@dataclass
class TransformerConfig:
    """Sizes of a :class:`Transformer`.

    Attributes:
        dim: model width D.
        depth: number of blocks.
        heads: attention heads (divide ``dim``).
        mlp_ratio: width of the feed-forward layer relative to ``dim``.
        dropout: dropout in attention and feed-forward (training only).
        cond_dim: size of a per-token conditioning vector fed to AdaLN in every block;
            ``None`` for plain (learned-affine) layer norms.
    """

    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    cond_dim: int | None = None

    def __post_init__(self):
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {self.depth}")

    def to_dict(self) -> dict:
        return to_dict(self)


class TransformerBlock(nn.Module):
    """``x + Attn(LN(x)); x + MLP(LN(x))``; with ``cond_dim`` the norms are AdaLN-Zero
    (shift, scale and a gate on each branch predicted from the per-token condition).

    Shapes: x (B, N, D), cond (B, N, cond_dim) or None -> (B, N, D).
    """

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        adaptive = cfg.cond_dim is not None
        self.norm1 = nn.LayerNorm(cfg.dim, elementwise_affine=not adaptive, eps=1e-6)
        self.attn = SelfAttention(cfg.dim, cfg.heads, dropout=cfg.dropout)
        self.norm2 = nn.LayerNorm(cfg.dim, elementwise_affine=not adaptive, eps=1e-6)
        hidden = int(cfg.dim * cfg.mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.dim, hidden), nn.GELU(approximate="tanh"), nn.Dropout(cfg.dropout), nn.Linear(hidden, cfg.dim)
        )
        self.ada = AdaLNModulation(cfg.cond_dim, cfg.dim, 6) if adaptive else None

    def forward(self, x, cond=None, *, mask=None, causal=False, cache=None, commit=True):
        if self.ada is None:
            x = x + self.attn(self.norm1(x), mask=mask, causal=causal, cache=cache, commit=commit)
            return x + self.mlp(self.norm2(x))
        if cond is None:
            raise ValueError("this block is AdaLN-conditioned: pass cond (B, N, cond_dim)")
        s1, c1, g1, s2, c2, g2 = self.ada(cond)
        h = self.attn(modulate(self.norm1(x), s1, c1), mask=mask, causal=causal, cache=cache, commit=commit)
        x = x + g1 * h
        return x + g2 * self.mlp(modulate(self.norm2(x), s2, c2))


class Transformer(nn.Module):
    """A stack of :class:`TransformerBlock` and a final layer norm.

    Positions are the caller's business (add them to the input embeddings).

    Shapes: x (B, N, D), cond (B, N, cond_dim) or None -> (B, N, D).

    Args of :meth:`forward`:
        mask: bool (B or 1, 1, N, N_total), True = may attend; N_total = len(cache) + N.
        causal: causal attention over the cache and the new tokens.
        cache: a :class:`~sciogen.nn.attention.KVCache` from :meth:`new_cache`, or None.
        commit: keep the new tokens' keys/values in the cache (False: query only).
    """

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.apply(_init_weights)

    def new_cache(self, capacity: int = 256) -> KVCache:
        """An empty key/value cache for this stack."""
        return KVCache(len(self.blocks), capacity)

    def forward(self, x, cond=None, *, mask=None, causal=False, cache: KVCache | None = None, commit=True):
        for i, block in enumerate(self.blocks):
            x = block(x, cond, mask=mask, causal=causal, cache=None if cache is None else cache[i], commit=commit)
        return self.norm(x)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear) and not _is_zero(module):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _is_zero(linear: nn.Linear) -> bool:
    return bool((linear.weight == 0).all())
