"""Layers shared by the domain denoisers."""

from .embeddings import TimeEmbedding, sinusoidal_embedding

__all__ = ["TimeEmbedding", "sinusoidal_embedding"]
