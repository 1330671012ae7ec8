"""3D medical volumes in and out, with their geometry kept.

A volume is a channel-first ``monai.data.MetaTensor`` of shape ``(C, X, Y, Z)``, float32,
whose ``.affine`` is the 4x4 voxel-index -> world map in millimetres, RAS+ (the NIfTI
convention; MONAI's ``meta["space"] == "RAS"``). ``.pixdim`` gives the spacing in mm.

- :func:`read_volume`: the shared reader (:func:`sciogen.imaging.io.read_image`) limited to
  volume formats: NIfTI, MetaImage / NRRD and DICOM series folders, checked to be 3D.
- :func:`write_volume`: NIfTI or ``.mha`` / ``.nrrd``, written atomically, affine kept;
  labels as integers.
- Shared with :mod:`sciogen.imaging`: :func:`check_affine`, :func:`check_same_geometry`,
  :class:`IntensityNormalization`, :class:`SimpleITKReader`, and the errors, all
  :class:`VolumeError` (a ``ValueError``; the volumes domain's name for
  :class:`~sciogen.imaging.io.ImageError`) naming the file: :class:`VolumeNotFoundError`
  (also a ``FileNotFoundError``), :class:`UnsupportedFormatError`,
  :class:`UnreadableVolumeError`, :class:`NotA3DVolumeError` (also empty and too-thin
  images), :class:`SingularAffineError`, :class:`GeometryMismatchError`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.utils import orientation_ras_lps
from monai.utils import MetaKeys, SpaceKeys

from sciogen.imaging.grid import IntensityNormalization
from sciogen.imaging.io import (
    ITK_SUFFIXES,
    NIFTI_SUFFIXES,
    GeometryMismatchError,
    ImageError,
    ImageNotFoundError,
    NotA3DVolumeError,
    SimpleITKReader,
    SingularAffineError,
    UnreadableImageError,
    UnsupportedFormatError,
    check_affine,
    check_same_geometry,
    file_suffix,
    read_image,
)

__all__ = [
    "read_volume",
    "write_volume",
    "check_affine",
    "check_spatial_shape",
    "check_same_geometry",
    "IntensityNormalization",
    "SimpleITKReader",
    "VolumeError",
    "VolumeNotFoundError",
    "UnsupportedFormatError",
    "UnreadableVolumeError",
    "NotA3DVolumeError",
    "SingularAffineError",
    "GeometryMismatchError",
]

_NIFTI = NIFTI_SUFFIXES
_ITK_READ = ITK_SUFFIXES
_ITK_WRITE = (".mha", ".nrrd")
#: the files :func:`read_volume` reads (and DICOM series folders)
VOLUME_SUFFIXES = _NIFTI + _ITK_READ
#: the fewest voxels along each axis of a 3D volume (a side of one voxel is a slice, not a volume)
MIN_SIDE = 2

#: the volumes domain's names for the shared imaging errors
VolumeError = ImageError
VolumeNotFoundError = ImageNotFoundError
UnreadableVolumeError = UnreadableImageError


def check_spatial_shape(shape: Sequence[int], source: object) -> tuple[int, int, int]:
    """``shape`` (X, Y, Z) of a 3D volume, or :class:`NotA3DVolumeError` naming ``source`` when
    it holds no voxels or is thinner than :data:`MIN_SIDE` voxels along an axis."""
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3:
        raise NotA3DVolumeError(f"{source}: expected a 3D volume, got spatial shape {shape}")
    if min(shape) == 0:
        raise NotA3DVolumeError(f"{source}: the image holds no voxels (spatial shape {shape}); the file is empty "
                                "or was written without its data: write it again from the scan")
    if min(shape) < MIN_SIDE:
        raise NotA3DVolumeError(f"{source}: spatial shape {shape} is one voxel thick (a slice, a line or a point), "
                                f"not a 3D volume: a volume needs at least {MIN_SIDE} voxels along each axis (stack "
                                "the slices into one 3D file, e.g. from a DICOM series folder)")
    return shape


def read_volume(path: str | os.PathLike, *, expect_3d: bool = True, series_uid: str | None = None) -> MetaTensor:
    """A volume file (or DICOM series folder) as a channel-first float32 ``MetaTensor``.

    Shapes: a 3D file gives ``(1, X, Y, Z)``; a 4D NIfTI ``(X, Y, Z, T)`` or a vector-pixel
    MetaImage gives its last axis as channels, ``(T, X, Y, Z)``. ``.affine`` is the 4x4
    voxel -> world (mm, RAS+) map as stored in the file (no reorientation, no resampling);
    ``.meta["filename_or_obj"]`` is the path. Intensities are converted to float32 (labels
    included: cast them back with ``.long()``).

    Raises :class:`VolumeNotFoundError`, :class:`UnsupportedFormatError`,
    :class:`UnreadableVolumeError`, :class:`SingularAffineError` (:func:`check_affine`), or
    :class:`NotA3DVolumeError` for an image without voxels, or when ``expect_3d`` and the
    spatial rank is not 3 or a side is under :data:`MIN_SIDE` voxels (``expect_3d=False``
    reads 2D images as ``(C, X, Y)``).
    """
    path = Path(path).expanduser()
    volume = read_image(path, series_uid=series_uid, check_geometry=False, formats=VOLUME_SUFFIXES, what="volume")
    if volume.numel() == 0:
        shape = tuple(volume.shape[1:])
        raise NotA3DVolumeError(f"{path}: the image holds no voxels (spatial shape {shape}); the file is empty or "
                                "was written without its data: write it again from the scan")
    check_affine(volume.affine, path, spatial_dims=len(volume.affine) - 1)
    if expect_3d and volume.ndim != 4:
        raise NotA3DVolumeError(
            f"{path}: expected a 3D volume, got spatial shape {tuple(volume.shape[1:])} "
            f"(channels-first shape {tuple(volume.shape)}); pass expect_3d=False to read 2D images"
        )
    if expect_3d:
        check_spatial_shape(volume.shape[1:], path)
    return volume


def _ras_affine(volume: torch.Tensor, affine: Any, path: Path) -> np.ndarray:
    """The 4x4 RAS affine to write: ``affine`` if given, else the MetaTensor's own."""
    if affine is None:
        if not isinstance(volume, MetaTensor):
            raise ValueError(
                f"{path}: a plain tensor carries no geometry; pass affine= (4x4 voxel -> world, mm, RAS), "
                "e.g. numpy.eye(4) for 1 mm voxels at the origin, or write a MetaTensor"
            )
        affine = volume.affine
        if volume.meta.get(MetaKeys.SPACE) == SpaceKeys.LPS:
            affine = orientation_ras_lps(affine)
    return check_affine(torch.as_tensor(affine), path)


def _voxels(volume: torch.Tensor, label: bool, path: Path) -> np.ndarray:
    """``(C, X, Y, Z)`` as float32, or as the smallest integer type holding the labels."""
    tensor = volume.as_tensor() if isinstance(volume, MetaTensor) else torch.as_tensor(volume)
    arr = tensor.detach().cpu().numpy()
    if arr.ndim != 4:
        raise ValueError(f"{path}: write_volume takes a channel-first (C, X, Y, Z) volume, got shape {arr.shape}")
    if not label:
        return arr.astype(np.float32)
    rounded = np.rint(arr)
    bad = ~(np.abs(arr - rounded) <= 1e-3)  # NaN and inf are bad too
    if bad.any():
        raise ValueError(f"{path}: label=True but the volume holds non-integer values, e.g. {arr[bad][0]}")
    for dtype in (np.uint8, np.int16, np.int32):
        info = np.iinfo(dtype)
        if arr.size == 0 or (rounded.min() >= info.min and rounded.max() <= info.max):
            return rounded.astype(dtype)
    raise ValueError(f"{path}: label values {rounded.min()} .. {rounded.max()} do not fit in int32")


def _write_nifti(arr: np.ndarray, affine: np.ndarray, file: Path) -> None:
    import nibabel as nib

    data = arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)  # (X, Y, Z[, C])
    img = nib.Nifti1Image(data, affine)
    img.set_sform(affine, code=1)  # scanner; nibabel reads sform first, exactly
    img.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm")
    nib.save(img, str(file))


def _write_itk(arr: np.ndarray, affine: np.ndarray, file: Path) -> None:
    import SimpleITK as sitk

    lps = orientation_ras_lps(affine)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-6):
        raise ValueError(f"{file}: the affine is sheared, which ITK formats cannot store; write NIfTI instead")
    vector = arr.shape[0] > 1
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr.T if vector else arr[0].T), isVector=vector)
    img.SetSpacing(spacing.tolist())
    img.SetDirection(direction.ravel().tolist())
    img.SetOrigin(lps[:3, 3].tolist())
    sitk.WriteImage(img, str(file), useCompression=True)


def write_volume(
    volume: MetaTensor | torch.Tensor, path: str | os.PathLike, affine: Any = None, *, label: bool = False
) -> Path:
    """Write a channel-first ``(C, X, Y, Z)`` volume; returns the path.

    ``affine`` (4x4 voxel -> world, mm, RAS+) overrides the MetaTensor's own ``.affine``; a
    plain tensor needs it. ``.nii`` / ``.nii.gz`` are written with nibabel (sform = qform =
    affine, code "scanner"; C > 1 as a 4D image), ``.mha`` / ``.nrrd`` with SimpleITK
    (affine converted to LPS origin / spacing / direction; C > 1 as vector pixels). Values
    are float32, or with ``label=True`` the smallest of uint8 / int16 / int32 holding them
    (non-integer labels raise). The file is written beside its target and renamed into
    place, so a failure never leaves a half-written file.
    """
    path = Path(path).expanduser()
    suffix = file_suffix(path)
    if suffix not in _NIFTI + _ITK_WRITE:
        raise UnsupportedFormatError(f"{path}: cannot write {suffix!r}; use {', '.join(_NIFTI + _ITK_WRITE)}")
    affine = _ras_affine(volume, affine, path)
    arr = _voxels(volume, label, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{secrets.token_hex(6)}-{path.name}")
    try:
        (_write_nifti if suffix in _NIFTI else _write_itk)(arr, affine, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
