"""Images and displacement fields in and out: NIfTI (nibabel) with the affine kept.

- :func:`read_image` reads ``.nii`` / ``.nii.gz`` (nibabel), ``.mha`` / ``.mhd`` / ``.nrrd``
  and 2D ``.png`` / ``.tif`` / ``.jpg`` (SimpleITK; colour read as grey), ``.npy`` and
  ``file.npz:key``, returning a channel-first float tensor ``(C, *S)`` and its 4x4
  voxel-to-world affine (identity for arrays).
- :func:`write_image` writes a channel-first tensor with an affine (labels: integers).
- :func:`write_field` / :func:`read_field` store a displacement ``(D, *S)`` in voxels as a
  NIfTI vector image (intent ``vector``, shape ``(*S, 1, D)``, as ITK expects); the header's
  description says the unit. :func:`field_to_world` converts it to millimetres.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["IMAGE_SUFFIXES", "MIN_SIDE", "read_image", "write_image", "write_field", "read_field", "field_to_world",
           "normalize_intensity", "check_affine"]

_NIFTI = (".nii", ".nii.gz")
_ITK = (".mha", ".mhd", ".nrrd", ".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
#: the image files :func:`read_image` reads
IMAGE_SUFFIXES = (*_NIFTI, *_ITK, ".npy", ".npz")
#: the smallest image side (voxels) that is deformed or trained on
MIN_SIDE = 4


def check_affine(affine, source: str) -> np.ndarray:
    """``affine`` as a 4x4 float64 array; a non-finite or singular one (e.g. an all-zero sform
    in a NIfTI header) is a ValueError naming ``source``: no image can be written with it."""
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.isfinite(a).all() or np.linalg.matrix_rank(a[:3, :3]) < 3:
        raise ValueError(
            f"{source}: the voxel-to-world affine is {'not 4x4' if a.shape != (4, 4) else 'singular or not finite'} "
            f"({np.array2string(a, separator=', ').replace(chr(10), '')}), so the image has no geometry to keep; "
            "fix the header (nibabel: img.set_sform(affine, code=1) / img.set_qform(...)) or pass the voxels as an "
            "array (identity affine)"
        )
    return a


def _split_key(path: str | Path) -> tuple[Path, str | None]:
    text = str(path)
    if ".npz:" in text:
        file, key = text.rsplit(":", 1)
        return Path(file), key
    return Path(text), None


def read_image(path: str | Path, channel_first: bool = False,
               geometry: bool = True) -> tuple[torch.Tensor, np.ndarray]:
    """An image as ``(C, *S)`` float32 and its affine ``(4, 4)``.

    A 3D file gives C = 1; a 4D NIfTI puts its 4th axis in the channels; a colour PNG /
    TIFF / JPEG is read as grey (mean of R, G, B). ``channel_first`` says that an array
    (``.npy`` / ``.npz``) already has its channels first. An ``.npz`` holding one array
    needs no ``:key``. A singular affine is a ValueError naming the file (:func:`check_affine`)
    unless ``geometry`` is False (training reads only the voxels).
    """
    file, key = _split_key(path)
    if not file.is_file():
        raise FileNotFoundError(f"no such image: {file}")
    name = file.name.lower()
    affine = np.eye(4)
    if name.endswith(_NIFTI):
        import nibabel as nib

        img = nib.load(str(file))
        data, affine = np.asarray(img.dataobj, dtype=np.float32), img.affine
        arr = data[None] if data.ndim <= 3 else np.moveaxis(data.reshape(*data.shape[:3], -1), -1, 0)
    elif name.endswith(_ITK):
        import SimpleITK as sitk

        img = sitk.ReadImage(str(file))
        arr = sitk.GetArrayFromImage(img).astype(np.float32)  # ITK arrays are (z, y, x[, component])
        if img.GetNumberOfComponentsPerPixel() > 1:
            arr = arr[..., :3].mean(-1)  # colour -> grey
        arr = arr.T[None]
        d = img.GetDimension()
        direction = np.array(img.GetDirection()).reshape(d, d) * np.array(img.GetSpacing())
        affine[:d, :d], affine[:d, 3] = direction, img.GetOrigin()
        affine = np.diag([-1, -1, 1, 1]) @ affine  # LPS (ITK) -> RAS (NIfTI)
    elif name.endswith(".npz"):
        with np.load(file) as npz:
            if key is None and len(npz.files) == 1:
                key = npz.files[0]
            if key is None or key not in npz:
                raise KeyError(f"{file}: name the array as {file}:KEY, one of {sorted(npz.files)}")
            arr = np.asarray(npz[key], dtype=np.float32)
        arr = arr if channel_first else arr[None]
    elif name.endswith(".npy"):
        arr = np.load(file).astype(np.float32)
        arr = arr if channel_first else arr[None]
    else:
        raise ValueError(f"{file}: unsupported image type; use {', '.join(IMAGE_SUFFIXES)} (or file.npz:KEY)")
    if arr.ndim not in (3, 4):
        raise ValueError(f"{path}: expected a 2D or 3D image (with channels first), got array shape {arr.shape}")
    affine = check_affine(affine, str(file)) if geometry else np.asarray(affine, dtype=np.float64)
    return torch.from_numpy(np.ascontiguousarray(arr)), affine


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


def normalize_intensity(image: torch.Tensor, percentile: float = 99.5) -> torch.Tensor:
    """Scale each image of ``(B, C, *S)`` (or ``(C, *S)``) to [0, 1]: minimum -> 0, the
    ``percentile`` -> 1, clipped. The network sees images normalised like this."""
    flat = image.float().flatten(1) if image.ndim > 1 else image.float()[None]
    lo = flat.min(1).values
    k = max(1, int(round(flat.shape[1] * percentile / 100.0)))
    hi = flat.kthvalue(min(k, flat.shape[1]), dim=1).values
    scale = (hi - lo).clamp_min(1e-6)
    shape = (-1, *[1] * (image.ndim - 1))
    return ((image.float() - lo.view(shape)) / scale.view(shape)).clamp(0, 1)
