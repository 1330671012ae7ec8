"""Multi-head self-attention with an optional key/value cache.

Built on :func:`torch.nn.functional.scaled_dot_product_attention`, so the fastest kernel
available on the device is used. Masks are boolean, ``True`` = may attend.

The cache supports the two ways autoregressive generation uses it:

- ``commit=True``: the new tokens' keys/values are appended to the cache (a new token of
  a sequence, or a finished clean block);
- ``commit=False``: the new tokens attend to the cache and to each other, but are not
  kept (a noisy block being denoised: it is queried many times, then thrown away).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["LayerKV", "KVCache", "SelfAttention", "causal_mask"]


class LayerKV:
    """Keys and values of one attention layer, stored in a growing buffer.

    Shapes: keys and values (B, H, capacity, Dh); the first ``length`` positions are valid.
    """

    def __init__(self, capacity: int = 256):
        self.capacity = int(capacity)
        self.length = 0
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def _reserve(self, like: torch.Tensor, needed: int) -> None:
        same = self.k is not None and self.k.shape[:2] == like.shape[:2] and self.k.dtype == like.dtype
        if same and needed <= self.k.shape[2]:
            return
        cap = max(self.capacity, needed)
        if same:
            cap = max(cap, 2 * self.k.shape[2])
        b, h, _, d = like.shape
        k = like.new_empty(b, h, cap, d)
        v = like.new_empty(b, h, cap, d)
        if same and self.length:
            k[:, :, : self.length] = self.k[:, :, : self.length]
            v[:, :, : self.length] = self.v[:, :, : self.length]
        self.k, self.v = k, v

    def extend(self, k: torch.Tensor, v: torch.Tensor, commit: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Write new keys/values (B, H, N, Dh) after the cached ones and return all of them
        (B, H, length + N, Dh). With ``commit=False`` the cache length does not advance, so
        the next call overwrites them."""
        if self.length and (k.shape[:2] != self.k.shape[:2] or k.dtype != self.k.dtype):
            raise ValueError(
                f"cached keys have batch/heads {tuple(self.k.shape[:2])} and dtype {self.k.dtype}, new keys "
                f"{tuple(k.shape[:2])} and {k.dtype}; use one cache per batch"
            )
        end = self.length + k.shape[2]
        self._reserve(k, end)
        self.k[:, :, self.length : end] = k
        self.v[:, :, self.length : end] = v
        if commit:
            self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]


class KVCache:
    """Key/value cache of a stack of attention layers.

    Args:
        num_layers: number of attention layers (one :class:`LayerKV` each).
        capacity: initial number of positions reserved per layer (the buffers double when full).
    """

    def __init__(self, num_layers: int, capacity: int = 256):
        self.layers = [LayerKV(capacity) for _ in range(num_layers)]

    def __len__(self) -> int:
        return self.layers[0].length if self.layers else 0

    def __getitem__(self, i: int) -> LayerKV:
        return self.layers[i]

    def crop(self, length: int) -> None:
        """Forget every position from ``length`` on."""
        if not 0 <= length <= len(self):
            raise ValueError(f"cannot crop a cache of length {len(self)} to {length}")
        for layer in self.layers:
            layer.length = length


def causal_mask(n_query: int, n_key: int, device=None) -> torch.Tensor:
    """Boolean (n_query, n_key) mask where query i (the last n_query of n_key positions)
    sees keys j <= n_key - n_query + i."""
    offset = n_key - n_query
    q = torch.arange(n_query, device=device)[:, None] + offset
    return torch.arange(n_key, device=device)[None, :] <= q


class SelfAttention(nn.Module):
    """Multi-head self-attention (pre-projected q, k, v; output projection).

    ``softmax(q k^T / sqrt(Dh) + mask) v`` per head, through ``scaled_dot_product_attention``.

    Args:
        dim: model width D (divisible by ``heads``).
        heads: number of heads H.
        dropout: attention dropout (training only).

    Shapes: x (B, N, D) -> (B, N, D). ``mask``: bool, broadcastable to (B, H, N, N_total)
    with N_total = cached length + N. ``causal=True`` lets each new token see every cached
    position and the new tokens up to itself.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.out = nn.Linear(dim, dim, bias=bias)

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        causal: bool = False,
        cache: LayerKV | None = None,
        commit: bool = True,
    ) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.extend(k, v, commit=commit)
        is_causal = False
        if causal:
            if mask is not None:
                raise ValueError("give either a mask or causal=True, not both")
            if past == 0:
                is_causal = n > 1
            elif n > 1:
                mask = causal_mask(n, past + n, device=x.device)
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop, is_causal=is_causal)
        return self.out(y.transpose(1, 2).reshape(b, n, d))
