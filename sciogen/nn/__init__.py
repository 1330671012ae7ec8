"""Layers shared by the domain denoisers."""

from .adaln import AdaLNFinal, AdaLNMLP, AdaLNModulation, AdaLNResBlock, modulate
from .attention import KVCache, LayerKV, SelfAttention, causal_mask
from .egnn import EGNN, check_mean_zero, equivariant_displacement, remove_mean
from .embeddings import TimeEmbedding, sinusoidal_embedding

__all__ = [
    "TimeEmbedding", "sinusoidal_embedding",
    "AdaLNModulation", "AdaLNResBlock", "AdaLNFinal", "AdaLNMLP", "modulate",
    "SelfAttention", "KVCache", "LayerKV", "causal_mask",
    "EGNN", "remove_mean", "check_mean_zero", "equivariant_displacement",
]
