"""sciogen: diffusion models that generate scientific and medical data."""

__version__ = "0.1.0"
