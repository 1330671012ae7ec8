"""3D medical volumes: NIfTI / ITK files with their geometry, intensity normalisation, and
MONAI's generative stack driven by sciogen's solvers.

- ``io.py``: :func:`read_volume` / :func:`write_volume` (NIfTI with nibabel; MHA, NRRD and
  DICOM series with SimpleITK) as MONAI ``MetaTensor``s keeping affine, spacing and
  orientation; :class:`IntensityNormalization` (percentile or fixed window, invertible);
  :func:`check_same_geometry`; specific errors for unreadable, 2D or mismatched inputs;
- ``monai_interop.py``: :func:`schedule_from_monai`, :class:`MonaiUNetModel`,
  :func:`sample_monai` (any core solver on a MONAI ``DiffusionModelUNet``) and a drop-in
  :class:`DDIMScheduler` whose steps are the core DDIM.

Needs the ``volumes`` extra (MONAI, nibabel, SimpleITK); names are imported on first use so
that ``import sciogen.volumes`` stays light.
"""

from __future__ import annotations

_IO = ("read_volume", "write_volume", "check_same_geometry", "IntensityNormalization", "SimpleITKReader",
       "VolumeError", "VolumeNotFoundError", "UnsupportedFormatError", "UnreadableVolumeError",
       "NotA3DVolumeError", "GeometryMismatchError")
_INTEROP = ("schedule_from_monai", "MonaiUNetModel", "sample_monai", "DDIMScheduler", "monai_time")

__all__ = [*_IO, *_INTEROP]


def __getattr__(name: str):
    if name in _IO:
        from . import io

        return getattr(io, name)
    if name in _INTEROP:
        from . import monai_interop

        return getattr(monai_interop, name)
    raise AttributeError(f"module 'sciogen.volumes' has no attribute {name!r}")
