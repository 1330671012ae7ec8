"""Layers shared by the domain denoisers."""

from .adaln import AdaLNFinal, AdaLNMLP, AdaLNModulation, AdaLNResBlock, modulate
from .attention import KVCache, LayerKV, SelfAttention, causal_mask
from .embeddings import TimeEmbedding, sinusoidal_embedding

__all__ = [
    "TimeEmbedding", "sinusoidal_embedding",
    "AdaLNModulation", "AdaLNResBlock", "AdaLNFinal", "AdaLNMLP", "modulate",
    "SelfAttention", "KVCache", "LayerKV", "causal_mask",
]
