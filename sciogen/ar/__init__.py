"""Autoregressive diffusion: a per-token diffusion head and block-wise diffusion.

- :class:`TokenAR` (UniGenX, MAR): a causal transformer over a sequence of discrete tokens
  and continuous values; tokens get a softmax, values a small AdaLN-MLP diffusion head
  conditioned on the previous position's hidden state. Generation is token by token with
  a key/value cache, values drawn by any core solver. Used by crystals (UniGenX).
- :class:`BlockAR` (PARD, ACDiT): a shared diffusion model generates ordered blocks, each
  conditioned on the clean blocks before it; all blocks train in one pass under
  :func:`block_causal_mask` (:mod:`.masks`), and generation caches the clean prefix.
- :func:`generate_blocks` (:mod:`.loop`): the block-by-block generation loop behind
  :meth:`BlockAR.generate` and PARD's molecules; a model supplies its moves as a
  :class:`BlockSampler`.

Both take :class:`StepAnnealing` (DiSA) to spend fewer solver steps on later positions.

    >>> import torch
    >>> from sciogen.ar import TokenAR, TokenARConfig
    >>> model = TokenAR(TokenARConfig(vocab_size=4, value_dim=2, value_token=1, max_len=8, dim=32, depth=1, heads=2))
    >>> out = model.generate(torch.zeros(3, 1, dtype=torch.long), length=6, steps=4,
    ...                      generator=torch.Generator().manual_seed(0))
    >>> out.tokens.shape, out.values.shape
    (torch.Size([3, 6]), torch.Size([3, 6, 2]))
"""

from .annealing import ANNEALING_KINDS, StepAnnealing
from .blockwise import (
    FIELD_KINDS,
    BlockAR,
    BlockARConfig,
    BlockContext,
    BlockSample,
    BlockSpec,
    FieldConfig,
)
from .loop import BlockSampler, generate_blocks
from .masks import block_causal_mask, skip_causal_mask
from .token_head import SequenceSample, TokenAR, TokenARConfig, sample_token
from .transformer import Transformer, TransformerBlock, TransformerConfig

__all__ = [
    "TokenAR", "TokenARConfig", "SequenceSample", "sample_token",
    "BlockAR", "BlockARConfig", "FieldConfig", "BlockSpec", "BlockSample", "BlockContext", "FIELD_KINDS",
    "BlockSampler", "generate_blocks", "block_causal_mask", "skip_causal_mask",
    "StepAnnealing", "ANNEALING_KINDS",
    "Transformer", "TransformerBlock", "TransformerConfig",
]
