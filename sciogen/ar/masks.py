"""The attention masks of block-wise autoregressive diffusion (ACDiT's skip-causal layout).

A block-wise model reads a clean sequence followed by a noised copy, every token labelled
with its block; these masks say which token may attend to which. :class:`~sciogen.ar.BlockAR`
trains under them, and PARD's graph network (:mod:`sciogen.molecules.network`) and the
longitudinal volumes model build their views from them.
"""

from __future__ import annotations

import torch

__all__ = ["skip_causal_mask", "block_causal_mask"]


def skip_causal_mask(clean_index: torch.Tensor, noisy_index: torch.Tensor) -> torch.Tensor:
    """Attention mask of the sequence ``[clean tokens, noisy tokens]`` (True = may attend).

    With b(i) the block of token i:

    - clean i -> clean j  iff b(j) <= b(i);
    - noisy i -> clean j  iff b(j) <  b(i);
    - noisy i -> noisy j  iff b(j) == b(i);
    - clean i -> noisy j  never.

    Tokens with a negative block (padding) are seen by nobody and see only themselves
    (a row of the softmax needs one entry).

    Shapes: clean_index (..., Nc), noisy_index (..., Nn) long -> bool (..., Nc + Nn, Nc + Nn).
    """
    clean_index = torch.as_tensor(clean_index)
    noisy_index = torch.as_tensor(noisy_index, device=clean_index.device)
    if clean_index.is_floating_point() or noisy_index.is_floating_point():
        raise ValueError("block indices must be integer tensors")
    lead = torch.broadcast_shapes(clean_index.shape[:-1], noisy_index.shape[:-1])
    ci = clean_index.expand(lead + clean_index.shape[-1:])
    ni = noisy_index.expand(lead + noisy_index.shape[-1:])
    qc, kc = ci[..., :, None], ci[..., None, :]
    qn, kn = ni[..., :, None], ni[..., None, :]
    cc = (kc <= qc) & (kc >= 0) & (qc >= 0)
    nc = (kc < qn) & (kc >= 0) & (qn >= 0)
    nn_ = (kn == qn) & (qn >= 0)
    cn = torch.zeros(lead + (ci.shape[-1], ni.shape[-1]), dtype=torch.bool, device=ci.device)
    mask = torch.cat([torch.cat([cc, cn], -1), torch.cat([nc, nn_], -1)], -2)
    pad = torch.cat([ci, ni], -1) < 0
    eye = torch.eye(mask.shape[-1], dtype=torch.bool, device=mask.device)
    return mask | (eye & pad[..., :, None])


def block_causal_mask(block_index: torch.Tensor, *, noisy: bool = True) -> torch.Tensor:
    """The block-causal training mask built from the block of every token.

    With ``noisy=True`` (default) the mask of ``[clean sequence, noised copy]`` of
    :func:`skip_causal_mask` (ACDiT's skip-causal mask), shape (..., 2N, 2N); with
    ``noisy=False`` the mask of the clean sequence alone (block k sees blocks <= k),
    shape (..., N, N).

    Shapes: block_index (N,) or (B, N) long, -1 at padding.

        >>> block_causal_mask(torch.tensor([0, 1]), noisy=False).int()
        tensor([[1, 0],
                [1, 1]], dtype=torch.int32)
    """
    block_index = torch.as_tensor(block_index)
    mask = skip_causal_mask(block_index, block_index)
    if noisy:
        return mask
    n = block_index.shape[-1]
    return mask[..., :n, :n]
