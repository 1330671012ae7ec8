"""Deformation fields: DRDM-style deformation diffusion and recovery (Zheng et al. 2024),
folding-free by construction, and MONAI random transforms for augmentation.

- ``fields.py``: multi-scale velocity noise, scaling and squaring, composition, warping,
  Jacobians, the folding projection;
- ``process.py``: :class:`DeformationProcess` (forward deformation, recovery loss, sampler);
- ``network.py``: :class:`RecoveryUNet`, a time-conditioned 2D / 3D U-Net;
- ``training.py``: the training images (files, slices of volumes, label masks) on the
  network grid;
- :class:`DeformationGenerator` (``generator.py``): fit / sample / deform / save / load;
- ``metrics.py``: folding %, Jacobian determinants, |u| in % of the side, bending energy;
- ``transforms.py``: :class:`RandDeformationDiffusion`, :class:`RandDeformationDiffusiond`;
- ``io.py``: NIfTI / ITK / NumPy images (the shared reader of :mod:`sciogen.imaging`) and
  fields with their affine;
- ``demo.py``: ``sciogen demo`` for this domain.

Images of any shape reach the network through :class:`~sciogen.imaging.grid.GridMap`, and
warps are :func:`sciogen.imaging.spatial.warp` (both re-exported here). Needs the ``volumes``
extra (MONAI, nibabel, SimpleITK) for the transforms, image files and metrics.
"""

from sciogen.imaging.grid import GridMap

from .config import (
    DeformationConfig,
    DeformationDataConfig,
    DeformationModelConfig,
    DeformationProcessConfig,
    DeformationSamplingConfig,
)
from .fields import (
    compose,
    fraction_to_voxels,
    integrate_velocity,
    jacobian_determinant,
    limit_folding,
    multiscale_noise,
    voxels_to_fraction,
    warp,
)
from .generator import DeformationGenerator
from .metrics import evaluate, field_metrics, folding_fraction
from .network import RecoveryUNet, ShapeNotDivisibleError
from .process import DeformationProcess, recovery_times

__all__ = [
    "DeformationGenerator", "DeformationConfig", "DeformationDataConfig", "DeformationModelConfig",
    "DeformationProcessConfig", "DeformationSamplingConfig", "DeformationProcess", "recovery_times",
    "RecoveryUNet", "ShapeNotDivisibleError", "GridMap",
    "warp", "compose", "integrate_velocity", "multiscale_noise", "jacobian_determinant", "limit_folding",
    "fraction_to_voxels", "voxels_to_fraction",
    "evaluate", "field_metrics", "folding_fraction",
    "RandDeformationDiffusion", "RandDeformationDiffusiond",
]


def __getattr__(name: str):
    if name in ("RandDeformationDiffusion", "RandDeformationDiffusiond"):  # imports MONAI only when used
        from . import transforms

        return getattr(transforms, name)
    raise AttributeError(f"module 'sciogen.deformation' has no attribute {name!r}")

