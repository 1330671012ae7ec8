"""The toy domain: diffusion of vectors in R^d, the core's demo and test bed.

- :class:`VectorGenerator` (``generator.py``): fit / sample / evaluate / save / load.
- :class:`ToyConfig` (``config.py``): the run config of ``domains/toy/*.yaml``.
- :class:`MLPDenoiser` (``network.py``): a residual MLP with a time embedding.
- ``metrics.py``: energy distance, moment errors, mixture likelihood.
- ``demo.py``: ``sciogen demo`` for this domain (solvers on the exact mixture denoiser
  and on the shipped ``toy/gmm`` model).
"""

from .config import ToyConfig, ToyDataConfig, ToyModelConfig
from .generator import VectorGenerator
from .metrics import energy_distance, vector_metrics
from .network import MLPDenoiser

__all__ = ["VectorGenerator", "ToyConfig", "ToyDataConfig", "ToyModelConfig", "MLPDenoiser", "energy_distance", "vector_metrics"]
