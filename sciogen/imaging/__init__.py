"""What the imaging domains (volumes, deformation) share: images with their geometry, the map
to a network's grid, and warps.

- ``io.py``: :func:`read_image` (NIfTI, ITK formats, 2D raster images, DICOM series, NumPy
  arrays through MONAI's ``LoadImage``, as channel-first ``MetaTensor``s with their RAS
  affine), :func:`check_affine`, :func:`check_same_geometry` and the :class:`ImageError`
  family;
- ``grid.py``: :class:`IntensityNormalization` (the one intensity map, invertible),
  :func:`normalize_intensity`, :class:`GridMap` (arrays <-> a network grid, fields back) and
  :class:`NetworkGrid` (a volume with its geometry <-> the network grid, by MONAI's
  invertible transforms);
- ``spatial.py``: :func:`warp` (pull-back, in voxels or normalised units, either
  ``align_corners`` convention), :func:`identity_grid`, :func:`check_field`.

Names are imported on first use: MONAI, nibabel and SimpleITK load only when a reader or
:class:`NetworkGrid` runs (the ``volumes`` extra), so ``import sciogen.imaging`` stays light.
"""

from __future__ import annotations

import importlib

_PARTS = {
    "read_image": "io", "check_affine": "io", "check_same_geometry": "io", "file_suffix": "io", "plain_tensor": "io",
    "SimpleITKReader": "io", "READ_SUFFIXES": "io", "ImageError": "io", "ImageNotFoundError": "io",
    "UnsupportedFormatError": "io", "UnreadableImageError": "io", "NotA3DVolumeError": "io",
    "SingularAffineError": "io", "GeometryMismatchError": "io",
    "IntensityNormalization": "grid", "normalize_intensity": "grid", "GridMap": "grid", "NetworkGrid": "grid",
    "warp": "spatial", "identity_grid": "spatial", "check_field": "spatial", "normalized_centres": "spatial",
}

__all__ = list(_PARTS)


def __getattr__(name: str):
    if name in _PARTS:
        return getattr(importlib.import_module(f"{__name__}.{_PARTS[name]}"), name)
    raise AttributeError(f"module 'sciogen.imaging' has no attribute {name!r}")
