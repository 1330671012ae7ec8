"""3D medical volumes: NIfTI / ITK files with their geometry, intensity normalisation, and
MONAI's generative stack driven by sciogen's solvers.

- ``io.py``: :func:`read_volume` / :func:`write_volume` (the shared reader of
  :mod:`sciogen.imaging` limited to volumes: NIfTI, MHA, NRRD and DICOM series) as MONAI
  ``MetaTensor``s keeping affine, spacing and orientation; :func:`check_same_geometry`;
  specific errors for unreadable, 2D or mismatched inputs;
- :class:`VolumeGenerator` (``generator.py``): pixel-space 3D diffusion on MONAI's
  ``DiffusionModelUNet``: fit / sample / augment / inpaint / save / load; its sampling modes
  (unconditional, image-conditioned, SDEdit, inpainting) are the functions of ``sampling.py``;
  config in ``config.py``;
- ``conditioning.py``: :class:`ConditionalUNet` (covariates with classifier-free guidance;
  an image by channel concatenation: super-resolution, paired translation), :func:`degrade`;
- ``latent.py``: :class:`LatentDiffusion` (MONAI ``AutoencoderKL`` + the U-Net on its
  latents; two training stages by the shared trainer);
- ``datasets.py``: :func:`volume_records`, :func:`volume_transforms`, :class:`VolumeDataset`;
- ``longitudinal/``: :class:`LongitudinalVolumeGenerator` (domain ``volumes_longitudinal``,
  SADM-style next-visit generation; ``data``, ``network``, ``config``, ``generator``);
- ``training.py``: the training volumes on the network grid
  (:class:`~sciogen.imaging.grid.NetworkGrid`) and their augmentation;
- ``metrics.py``: :func:`evaluate`, :func:`paired_error`, :func:`ssim`, :func:`ms_ssim`, :func:`psnr`;
- ``transforms.py``: :class:`RandVolumeDiffusion` / :class:`RandVolumeDiffusiond` (SDEdit
  augmentation as MONAI random transforms);
- ``monai_interop.py``: :func:`schedule_from_monai`, :class:`MonaiUNetModel`,
  :func:`sample_monai` and a drop-in :class:`DDIMScheduler` whose steps are the core DDIM.

Needs the ``volumes`` extra (MONAI, nibabel, SimpleITK); names are imported on first use so
that ``import sciogen.volumes`` stays light.
"""

from __future__ import annotations

_IO = ("read_volume", "write_volume", "check_same_geometry", "check_affine", "check_spatial_shape",
       "IntensityNormalization", "SimpleITKReader", "VolumeError", "VolumeNotFoundError", "UnsupportedFormatError",
       "UnreadableVolumeError", "NotA3DVolumeError", "SingularAffineError", "GeometryMismatchError")
_INTEROP = ("schedule_from_monai", "MonaiUNetModel", "sample_monai", "timestep_grid", "DDIMScheduler", "monai_time")
_PARTS = {
    "VolumeGenerator": "generator",
    "VolumeConfig": "config", "VolumeDataConfig": "config", "VolumeModelConfig": "config",
    "VolumeConditionConfig": "config", "VolumeLatentConfig": "config", "LatentDiffusion": "latent",
    "ConditionalUNet": "conditioning", "degrade": "conditioning",
    "VolumeProcessConfig": "config", "VolumeSamplingConfig": "config",
    "volume_records": "datasets", "volume_transforms": "datasets", "LoadVolumed": "datasets",
    "VolumeDataset": "datasets", "VolumeDatasetError": "datasets",
    "LongitudinalVolumeGenerator": "longitudinal", "LongitudinalConfig": "longitudinal", "LongitudinalDataConfig":
    "longitudinal", "LongitudinalModelConfig": "longitudinal", "LongitudinalSyntheticConfig": "longitudinal",
    "LongitudinalSamplingConfig": "longitudinal", "LongitudinalSet": "longitudinal", "synthetic_longitudinal":
    "longitudinal", "progressive_displacement": "longitudinal", "subject_on_grid": "longitudinal",
    "SequenceConditioner": "longitudinal", "VisitEncoder": "longitudinal", "LongitudinalUNet": "longitudinal",
    "HistoryError": "longitudinal",
    "NetworkGrid": "sciogen.imaging.grid", "training_volumes": "training", "load_volume": "training",
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

        module = _PARTS[name]
        return getattr(importlib.import_module(module if "." in module else f"{__name__}.{module}"), name)
    raise AttributeError(f"module 'sciogen.volumes' has no attribute {name!r}")
