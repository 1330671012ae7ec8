"""The deformation domain's run config (one YAML file, e.g. ``domains/deformation/brain_mri_2d.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sciogen.train.config import ConfigError, RunConfig, SamplingConfig, check_choice

__all__ = [
    "DeformationDataConfig", "DeformationModelConfig", "DeformationProcessConfig", "DeformationSamplingConfig",
    "DeformationConfig", "SOLVERS",
]

SOLVERS = ("recovery",)


@dataclass
class DeformationDataConfig:
    """Training images and the grid the network works on.

    Attributes:
        root: folder the ``files`` are relative to (``~`` and relative paths allowed); None:
            the dataset registry's copy (each file is looked up by name among the registered
            datasets' files, in the cache; see :func:`~sciogen.deformation.training.resolve_files`).
        files: images (``.nii`` / ``.nii.gz``, ``.mha`` / ``.mhd``, ``.nrrd``, ``.png`` /
            ``.tif``, ``.npy``, ``.npz`` or ``file.npz:key``): 3D volumes (a 4D file: its first
            volume) or, for ``spatial_dims: 2``, also 2D images.
        spatial_dims: 3 trains on whole volumes; 2 on 2D images and on slices of volumes.
        shape: the network's grid, one size per spatial dimension (multiples of its
            downsampling factor). Images are padded to a cube / square and resampled to it.
        slice_fraction: (2D) the central fraction of each axis whose slices are used.
        slice_axes: (2D) the axes slices are taken along.
        min_foreground: (2D) slices of volumes whose mean normalised intensity is below this
            are left out (counted in the training summary).
        labels: a folder of label maps matched to the files by name (None: none); the
            recovery loss is then averaged over the labelled voxels (label > 0, dilated by 2
            voxels) instead of those brighter than ``process.foreground``.
    """

    root: str | None = None
    files: list[str] = field(default_factory=lambda: [
        "nilearn_0.14.1/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
        "voxelmorph/test_scan.npz:vol",
        "nibabel_5.4.2/anatomical.nii",
        "dipy_1.12.1/aniso_vox.nii.gz",
    ])
    spatial_dims: int = 2
    shape: list[int] = field(default_factory=lambda: [64, 64])
    slice_fraction: float = 0.6
    slice_axes: list[int] = field(default_factory=lambda: [0, 1, 2])
    min_foreground: float = 0.05
    labels: str | None = None

    def __post_init__(self):
        check_choice("data.spatial_dims", self.spatial_dims, (2, 3))
        if len(self.shape) != self.spatial_dims or any(n < 8 for n in self.shape):
            raise ConfigError(f"data.shape must give {self.spatial_dims} sizes >= 8, got {self.shape}")
        if not 0.0 < self.slice_fraction <= 1.0:
            raise ConfigError(f"data.slice_fraction must be in (0, 1], got {self.slice_fraction}")


@dataclass
class DeformationModelConfig:
    """Size of the :class:`~sciogen.deformation.network.RecoveryUNet`.

    Attributes:
        channels: widths per resolution level.
        time_dim: width of the time embedding.
        stem: the input convolution's downsampling factor (1: none; 2: the blocks work on a
            grid half the size of ``data.shape`` and the velocity is upsampled back).
    """

    channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    time_dim: int = 64
    stem: int = 1

    def __post_init__(self):
        if int(self.stem) < 1:
            raise ConfigError(f"model.stem must be >= 1, got {self.stem}")


@dataclass
class DeformationProcessConfig:
    """The random deformation (see :class:`~sciogen.deformation.process.DeformationProcess`)."""

    grids: list[int] = field(default_factory=lambda: [4, 8, 16, 32])
    max_velocity: float = 0.08
    power: float = 1.0
    decay: float = 1.0
    t_min: float = 0.05
    reg_weight: float = 10.0
    cos_weight: float = 1.0
    foreground: float = 0.0
    flip_axes: list[int] = field(default_factory=list)


@dataclass
class DeformationSamplingConfig(SamplingConfig):
    """Sampling defaults: deform to ``level``, recover in ``steps`` steps down to ``t_end``;
    the result is projected so that ``det(I + grad u) >= min_det`` everywhere."""

    solvers = SOLVERS  # the recovery sampler of DRDM, not a core solver

    solver: str = "recovery"
    steps: int = 4
    batch_size: int = 4
    level: float = 1.0
    t_end: float = 0.0
    min_det: float = 0.05
    padding_mode: Literal["border", "zeros", "reflection"] = "border"

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 < self.level <= 1.0 or not 0.0 <= self.t_end < self.level:
            raise ConfigError(f"need 0 <= sampling.t_end < sampling.level <= 1, got t_end={self.t_end}, level={self.level}")


@dataclass
class DeformationConfig(RunConfig):
    """A deformation run: data, network, deformation process, sampling and trainer options."""

    domain: str = "deformation"
    data: DeformationDataConfig = field(default_factory=DeformationDataConfig)
    model: DeformationModelConfig = field(default_factory=DeformationModelConfig)
    process: DeformationProcessConfig = field(default_factory=DeformationProcessConfig)
    sampling: DeformationSamplingConfig = field(default_factory=DeformationSamplingConfig)
