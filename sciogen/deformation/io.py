"""Images and displacement fields in and out, with the affine kept.

- :func:`read_image` is the shared reader (:func:`sciogen.imaging.io.read_image`: NIfTI,
  ``.mha`` / ``.mhd`` / ``.nrrd``, 2D ``.png`` / ``.tif`` / ``.jpg``, ``.npy`` and
  ``file.npz:key``) as this domain uses it: a channel-first float tensor ``(C, *S)``, colour
  as grey, and its 4x4 voxel-to-world affine (identity for arrays).
- :func:`write_image` writes a channel-first tensor with an affine (labels: integers).
- :func:`write_field` / :func:`read_field` store a displacement ``(D, *S)`` in voxels as a
  NIfTI vector image (intent ``vector``, shape ``(*S, 1, D)``, as ITK expects); the header's
  description says the unit. :func:`field_to_world` converts it to millimetres.
- :func:`check_affine` and :func:`normalize_intensity` are the shared ones
  (:mod:`sciogen.imaging`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sciogen.imaging.grid import normalize_intensity
from sciogen.imaging.io import ITK_SUFFIXES, NIFTI_SUFFIXES, RASTER_SUFFIXES, check_affine, file_suffix

__all__ = ["IMAGE_SUFFIXES", "MIN_SIDE", "read_image", "write_image", "write_field", "read_field", "field_to_world",
           "normalize_intensity", "check_affine"]

_NIFTI = NIFTI_SUFFIXES
_ITK = (".mha", ".mhd", ".nrrd", *RASTER_SUFFIXES)
#: the image files :func:`read_image` reads
IMAGE_SUFFIXES = (*_NIFTI, *_ITK, ".npy", ".npz")
#: the smallest image side (voxels) that is deformed or trained on
MIN_SIDE = 4


def read_image(path: str | Path, channel_first: bool = False,
               geometry: bool = True) -> tuple[torch.Tensor, np.ndarray]:
    """An image as ``(C, *S)`` float32 and its affine ``(4, 4)``.

    A 3D file gives C = 1; a 4D NIfTI puts its 4th axis (and any later ones) in the channels;
    a colour PNG / TIFF / JPEG (any vector-pixel ITK image) is read as grey (mean of R, G, B).
    ``channel_first`` says that an array (``.npy`` / ``.npz``) already has its channels first.
    An ``.npz`` holding one array needs no ``:key``. A singular affine is a ValueError naming
    the file (:func:`check_affine`) unless ``geometry`` is False (training reads only the
    voxels). Reader failures are :class:`~sciogen.imaging.io.UnreadableImageError` (a
    ValueError) with the reader's exception as cause.
    """
    from sciogen.imaging.io import read_image as read

    image = read(path, channel_first=channel_first, check_geometry=geometry, formats=IMAGE_SUFFIXES)
    arr, affine = image.as_tensor(), np.asarray(image.affine.detach().cpu(), dtype=np.float64)
    suffix = file_suffix(str(path).partition(".npz:")[0])
    spatial = len(affine) - 1
    if suffix in _NIFTI and arr.ndim > spatial + 1:  # (T, X, Y, Z, U) -> (U * T, X, Y, Z), as (X, Y, Z, U * T)
        arr = arr.movedim(0, -1).reshape(*arr.shape[1:spatial + 1], -1).movedim(-1, 0)
    if suffix in ITK_SUFFIXES + RASTER_SUFFIXES and arr.shape[0] > 1:  # colour -> grey
        arr = arr.numpy()[:3].mean(0)[None]
        arr = torch.from_numpy(arr)
    if arr.ndim not in (3, 4):
        raise ValueError(f"{path}: expected a 2D or 3D image (with channels first), got array shape "
                         f"{tuple(arr.shape)}")
    if affine.shape != (4, 4):  # a 2D ITK image: embed its 3x3 map in the 4x4 of a volume
        square = np.eye(4)
        square[:spatial, :spatial], square[:spatial, 3] = affine[:spatial, :spatial], affine[:spatial, spatial]
        affine = square
    return arr.contiguous(), affine


def write_image(image: torch.Tensor, affine, path: str | Path, label: bool = False) -> Path:
    """Write ``(C, *S)`` (C = 1 is dropped) as NIfTI with ``affine``; labels as int16."""
    import nibabel as nib

    path = Path(path)
    affine = check_affine(affine, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = torch.as_tensor(image).detach().cpu().numpy()
    arr = arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)
    arr = np.rint(arr).astype(np.int16) if label else arr.astype(np.float32)
    nib.save(nib.Nifti1Image(arr, np.asarray(affine, dtype=np.float64)), str(path))
    return path


def write_field(ddf: torch.Tensor, affine, path: str | Path) -> Path:
    """Write a displacement ``(D, *S)`` in voxels as a NIfTI vector image ``(*S, 1, D)``."""
    import nibabel as nib

    path = Path(path)
    affine = check_affine(affine, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.moveaxis(torch.as_tensor(ddf).detach().cpu().numpy().astype(np.float32), 0, -1)
    if arr.ndim == 3:  # 2D: (H, W, 2) -> (H, W, 1, 1, 2)
        arr = arr[:, :, None]
    img = nib.Nifti1Image(arr[..., None, :], np.asarray(affine, dtype=np.float64))
    img.header.set_intent("vector")
    img.header["descrip"] = b"sciogen ddf, voxels, channel i = axis i"
    nib.save(img, str(path))
    return path


def read_field(path: str | Path) -> tuple[torch.Tensor, np.ndarray]:
    """Read a field written by :func:`write_field` (also ``.npy`` / ``.pt`` arrays ``(D, *S)``).

    ``.pt`` files are read without running code from them
    (:func:`~sciogen.train.checkpoint.safe_torch_load`). A file that holds no field, or a
    field with NaN / inf, is a ValueError naming the file.
    """
    path = Path(path)
    name = path.name.lower()
    if not path.is_file():
        raise FileNotFoundError(f"no such field file: {path}")
    affine = np.eye(4)
    if name.endswith(".npy"):
        try:
            data = np.load(path, allow_pickle=False)
        except ValueError as err:  # object arrays, not a .npy file
            raise ValueError(f"cannot read {path} as a displacement field: {err}") from None
    elif name.endswith(".pt"):
        from sciogen.train.checkpoint import safe_torch_load

        data = safe_torch_load(path, what="displacement field")
        if not isinstance(data, torch.Tensor):
            raise ValueError(f"{path} holds an object of type {type(data).__name__}, not a displacement field: "
                             "save one tensor (D, *S) in voxels with torch.save(ddf, path)")
    else:
        import nibabel as nib

        try:
            img = nib.load(str(path))
        except Exception as err:  # nibabel raises ImageFileError, OSError, EOFError, ... on a bad file
            raise ValueError(f"cannot read {path} as a NIfTI displacement field: {err}") from None
        arr = np.asarray(img.dataobj, dtype=np.float32)
        if arr.ndim != 5:
            raise ValueError(f"{path}: expected a NIfTI vector image of shape (X, Y, Z, 1, D), got {arr.shape}")
        d = arr.shape[-1]
        arr = arr[..., 0, :]
        if d == 2:
            arr = arr[:, :, 0]
        data, affine = np.moveaxis(arr, -1, 0), img.affine
    field = torch.as_tensor(np.ascontiguousarray(data) if isinstance(data, np.ndarray) else data)
    if field.ndim not in (3, 4) or field.shape[0] != field.ndim - 1 or field.numel() == 0:
        raise ValueError(f"{path}: a displacement field has shape (D, *S) with D = len(S) = 2 or 3, "
                         f"got {tuple(field.shape)}")
    from sciogen.train.checks import finite_array

    try:
        field = finite_array("field", field)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return field, affine


def field_to_world(ddf: torch.Tensor, affine) -> torch.Tensor:
    """Voxel displacement ``(D, *S)`` -> world (mm) displacement with the affine's linear part."""
    a = torch.as_tensor(np.asarray(affine)[: ddf.shape[0], : ddf.shape[0]], dtype=ddf.dtype)
    return torch.einsum("ij,j...->i...", a, ddf)
