"""3D medical volumes: NIfTI / ITK files with their geometry, intensity normalisation, and
MONAI's generative stack driven by sciogen's solvers.

- ``io.py``: :func:`read_volume` / :func:`write_volume` (NIfTI with nibabel; MHA, NRRD and
  DICOM series with SimpleITK) as MONAI ``MetaTensor``s keeping affine, spacing and
  orientation; :class:`IntensityNormalization` (percentile or fixed window, invertible);
  :func:`check_same_geometry`; specific errors for unreadable, 2D or mismatched inputs;
- :class:`VolumeGenerator` (``generator.py``): pixel-space 3D diffusion on MONAI's
  ``DiffusionModelUNet``: fit / sample (any size, optionally by sliding window) / augment
  (SDEdit variants in the input's geometry) / save / load; config in ``config.py``;
- ``conditioning.py``: :class:`ConditionalUNet` (covariates with classifier-free guidance;
  an image by channel concatenation: super-resolution, paired translation), :func:`degrade`;
- ``latent.py``: :class:`LatentDiffusion` (MONAI ``AutoencoderKL`` + the U-Net on its
  latents; two training stages by the shared trainer);
- ``datasets.py``: :func:`volume_records` (a folder of volumes, with labels and a CSV of
  subject / visit / covariates, as MONAI records), :func:`volume_transforms` and
  :class:`VolumeDataset` (load with checks, RAS, spacing, intensity, crop / pad to a shape);
- ``longitudinal.py``: :class:`LongitudinalVolumeGenerator` (domain ``volumes_longitudinal``,
  SADM-style: a sequence-aware conditioner attends over earlier visits and their times under
  the block-causal mask of ``sciogen.ar``, missing visits masked; ``predict`` / ``forecast``
  visit after visit) and :func:`synthetic_longitudinal` (the real brains with known
  progressive deformations);
- ``data.py``: :class:`NetworkGrid` (any volume <-> the network grid, invertible) and the
  training volumes with their augmentation;
- ``metrics.py``: :func:`evaluate` (MS-SSIM diversity, nearest-reference SSIM / PSNR,
  intensity-histogram W1, MMD), :func:`paired_error` (conditional outputs against their
  references), :func:`ssim`, :func:`ms_ssim`, :func:`psnr`;
- ``transforms.py``: :class:`RandVolumeDiffusion` / :class:`RandVolumeDiffusiond`, SDEdit
  augmentation as MONAI random transforms;
- ``monai_interop.py``: :func:`schedule_from_monai`, :class:`MonaiUNetModel`,
  :func:`sample_monai` (any core solver on a MONAI ``DiffusionModelUNet``) and a drop-in
  :class:`DDIMScheduler` whose steps are the core DDIM.

Needs the ``volumes`` extra (MONAI, nibabel, SimpleITK); names are imported on first use so
that ``import sciogen.volumes`` stays light.
"""

from __future__ import annotations

_IO = ("read_volume", "write_volume", "check_same_geometry", "check_affine", "check_spatial_shape",
       "IntensityNormalization", "SimpleITKReader", "VolumeError", "VolumeNotFoundError", "UnsupportedFormatError",
       "UnreadableVolumeError", "NotA3DVolumeError", "SingularAffineError", "GeometryMismatchError")
_INTEROP = ("schedule_from_monai", "MonaiUNetModel", "sample_monai", "timestep_grid", "DDIMScheduler", "monai_time")
_PARTS = {
    "VolumeGenerator": "generator", "export_model": "generator",
    "VolumeConfig": "config", "VolumeDataConfig": "config", "VolumeModelConfig": "config",
    "VolumeConditionConfig": "config", "VolumeLatentConfig": "config", "LatentDiffusion": "latent", "ConditionalUNet": "conditioning", "degrade": "conditioning",
    "VolumeProcessConfig": "config", "VolumeSamplingConfig": "config",
    "volume_records": "datasets", "volume_transforms": "datasets", "LoadVolumed": "datasets",
    "VolumeDataset": "datasets", "VolumeDatasetError": "datasets",
    "LongitudinalVolumeGenerator": "longitudinal", "LongitudinalConfig": "longitudinal", "LongitudinalDataConfig":
    "longitudinal", "LongitudinalModelConfig": "longitudinal", "LongitudinalSyntheticConfig": "longitudinal",
    "LongitudinalSamplingConfig": "longitudinal", "LongitudinalSet": "longitudinal", "synthetic_longitudinal":
    "longitudinal", "progressive_displacement": "longitudinal", "subject_on_grid": "longitudinal",
    "SequenceConditioner": "longitudinal", "VisitEncoder": "longitudinal", "LongitudinalUNet": "longitudinal",
    "HistoryError": "longitudinal",
    "NetworkGrid": "data", "training_volumes": "data", "load_volume": "data",
    "evaluate": "metrics", "paired_error": "metrics", "ssim": "metrics", "ms_ssim": "metrics", "psnr": "metrics",
    "RandVolumeDiffusion": "transforms", "RandVolumeDiffusiond": "transforms",
}

__all__ = [*_IO, *_INTEROP, *_PARTS]


def __getattr__(name: str):
    if name in _IO:
        from . import io

        return getattr(io, name)
    if name in _INTEROP:
        from . import monai_interop

        return getattr(monai_interop, name)
    if name in _PARTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_PARTS[name]}"), name)
    raise AttributeError(f"module 'sciogen.volumes' has no attribute {name!r}")
