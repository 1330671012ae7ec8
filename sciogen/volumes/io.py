"""3D medical volumes in and out, with their geometry kept.

A volume is a channel-first ``monai.data.MetaTensor`` of shape ``(C, X, Y, Z)``, float32,
whose ``.affine`` is the 4x4 voxel-index -> world map in millimetres, RAS+ (the NIfTI
convention; MONAI's ``meta["space"] == "RAS"``). ``.pixdim`` gives the spacing in mm.

- :func:`read_volume`: NIfTI (``.nii`` / ``.nii.gz``, nibabel), MetaImage / NRRD
  (``.mha`` / ``.mhd`` / ``.nrrd`` / ``.nhdr``, SimpleITK) and DICOM series folders
  (SimpleITK / GDCM) through MONAI's ``LoadImage(image_only=True, ensure_channel_first=True)``.
- :func:`write_volume`: NIfTI or ``.mha`` / ``.nrrd``, written atomically, affine kept;
  labels as integers.
- :func:`check_same_geometry`: image and label share spatial shape and affine, or
  :class:`GeometryMismatchError`.
- :class:`IntensityNormalization`: percentile or fixed-window (e.g. CT Hounsfield) scaling
  to [-1, 1] (or any range) with the fitted values recorded, its exact inverse and
  ``to_dict`` / ``from_dict`` for checkpoints.
- Errors, all :class:`VolumeError` (a ``ValueError``) naming the file:
  :class:`VolumeNotFoundError` (also a ``FileNotFoundError``), :class:`UnsupportedFormatError`,
  :class:`UnreadableVolumeError`, :class:`NotA3DVolumeError` (also empty and too-thin images),
  :class:`SingularAffineError` (:func:`check_affine`), :class:`GeometryMismatchError`.

MONAI's own ``ITKReader`` / ``ITKWriter`` need the ``itk`` package, which sciogen does not
depend on; :class:`SimpleITKReader` is a small MONAI ``ImageReader`` over SimpleITK that
returns the same array layout and metadata (affine converted from ITK's LPS to RAS).
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from monai.data import ImageReader, MetaTensor, NibabelReader
from monai.data.utils import orientation_ras_lps
from monai.transforms import LoadImage
from monai.utils import MetaKeys, SpaceKeys, ensure_tuple

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

_NIFTI = (".nii", ".nii.gz")
_ITK_READ = (".mha", ".mhd", ".nrrd", ".nhdr")
_ITK_WRITE = (".mha", ".nrrd")
#: the fewest voxels along each axis of a 3D volume (a side of one voxel is a slice, not a volume)
MIN_SIDE = 2


class VolumeError(ValueError):
    """A volume that cannot be used as given; the message names the file."""


class VolumeNotFoundError(VolumeError, FileNotFoundError):
    """The path does not exist."""


class UnsupportedFormatError(VolumeError):
    """The file's suffix is not a volume format sciogen reads or writes."""


class UnreadableVolumeError(VolumeError):
    """The file exists but its reader failed (corrupt, truncated, wrong format)."""


class NotA3DVolumeError(VolumeError):
    """The image has a spatial rank other than 3 where a volume was expected."""


class SingularAffineError(VolumeError):
    """The voxel -> world affine is singular or not finite (e.g. an all-zero sform in a NIfTI header)."""


class GeometryMismatchError(VolumeError):
    """Two volumes that must share a voxel grid do not (shape or affine)."""


def check_affine(affine: Any, source: object, spatial_dims: int = 3) -> np.ndarray:
    """``affine`` as a 4x4 float64 array (``spatial_dims + 1`` square), or
    :class:`SingularAffineError` naming ``source``.

    A volume's voxel -> world map must be finite and invertible (rank 3 in its 3x3 part):
    an all-zero sform / qform in a NIfTI header, or a zero voxel size, leaves the volume
    without geometry, which nibabel and MONAI's ``Orientation`` / ``Spacing`` then fail on.
    """
    a = np.asarray(torch.as_tensor(affine).detach().cpu() if isinstance(affine, torch.Tensor) else affine,
                   dtype=np.float64)
    d = int(spatial_dims)
    if a.shape != (d + 1, d + 1) or not np.isfinite(a).all() or np.linalg.matrix_rank(a[:d, :d]) < d:
        what = f"not {d + 1}x{d + 1}" if a.shape != (d + 1, d + 1) else "singular or not finite"
        raise SingularAffineError(
            f"{source}: the voxel-to-world affine is {what} "
            f"({np.array2string(a, separator=', ').replace(chr(10), '')}), so the volume has no geometry to map; "
            "fix the header (nibabel: img.set_sform(affine, code=1) and img.set_qform(affine, code=1) with the scan's "
            "real voxel-to-world matrix, or numpy.eye(4) for 1 mm voxels) and save it again"
        )
    return a


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


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


class SimpleITKReader(ImageReader):
    """MONAI ``ImageReader`` over SimpleITK: the layout and metadata of MONAI's ``ITKReader``.

    Arrays come out in ITK index order ``(X, Y, Z)`` (channels last for vector pixels); the
    affine is ``direction @ diag(spacing)`` with the origin, converted from LPS to RAS. A
    directory is read as a DICOM series (GDCM); a folder with several series needs
    ``series_uid``.
    """

    def __init__(self, series_uid: str | None = None):
        super().__init__()
        self.series_uid = series_uid

    def verify_suffix(self, filename: Sequence[os.PathLike] | os.PathLike) -> bool:
        return all(Path(f).is_dir() or _suffix(Path(f)) in _ITK_READ for f in ensure_tuple(filename))

    def read(self, data: Sequence[os.PathLike] | os.PathLike, **kwargs: Any):
        import SimpleITK as sitk

        (name,) = ensure_tuple(data)
        path = Path(name)
        return _read_dicom_series(path, self.series_uid) if path.is_dir() else sitk.ReadImage(str(path))

    def get_data(self, img) -> tuple[np.ndarray, dict]:
        import SimpleITK as sitk

        arr = sitk.GetArrayFromImage(img)  # (..., Z, Y, X[, C])
        ndim = img.GetDimension()
        vector = img.GetNumberOfComponentsPerPixel() > 1
        arr = arr.transpose(*reversed(range(ndim)), ndim) if vector else arr.T
        sr = min(ndim, 3)
        affine = np.eye(sr + 1)
        direction = np.asarray(img.GetDirection()).reshape(ndim, ndim)[:sr, :sr]
        affine[:sr, :sr] = direction @ np.diag(img.GetSpacing()[:sr])
        affine[:sr, -1] = img.GetOrigin()[:sr]
        affine = orientation_ras_lps(affine)
        meta = {
            "spacing": np.asarray(img.GetSpacing()),
            MetaKeys.ORIGINAL_AFFINE: affine,
            MetaKeys.AFFINE: affine.copy(),
            MetaKeys.SPACE: SpaceKeys.RAS,
            MetaKeys.SPATIAL_SHAPE: np.asarray(img.GetSize()[:sr]),
            MetaKeys.ORIGINAL_CHANNEL_DIM: -1 if arr.ndim > sr else float("nan"),
        }
        return np.ascontiguousarray(arr), meta


def _read_dicom_series(folder: Path, series_uid: str | None):
    """The one DICOM series in ``folder`` (or ``series_uid``) as a SimpleITK image."""
    import SimpleITK as sitk

    uids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    if not uids:
        raise UnreadableVolumeError(f"{folder}: no DICOM series found in this folder")
    if series_uid is None and len(uids) > 1:
        raise VolumeError(f"{folder}: holds {len(uids)} DICOM series {uids}; pass series_uid= one of them")
    uid = series_uid if series_uid is not None else uids[0]
    if uid not in uids:
        raise VolumeError(f"{folder}: no DICOM series {uid!r}; the folder holds {uids}")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
    return reader.Execute()


def _reader_for(path: Path, series_uid: str | None) -> ImageReader:
    if path.is_dir():
        return SimpleITKReader(series_uid)
    suffix = _suffix(path)
    if suffix in _NIFTI:
        return NibabelReader()
    if suffix in _ITK_READ:
        return SimpleITKReader()
    raise UnsupportedFormatError(
        f"{path}: unsupported volume type {suffix!r}; use {', '.join(_NIFTI + _ITK_READ)} or a DICOM series folder"
    )


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
    if not path.exists():
        raise VolumeNotFoundError(f"{path}: no such volume file or DICOM folder")
    reader = _reader_for(path, series_uid)
    try:
        volume = LoadImage(image_only=True, ensure_channel_first=True, dtype=np.float32)(path, reader=reader)
    except VolumeError:
        raise
    except Exception as err:  # nibabel / SimpleITK / gzip raise many kinds
        raise UnreadableVolumeError(f"{path}: cannot read it as a volume ({type(err).__name__}: {err})") from err
    if volume.numel() == 0:  # MONAI flattens an empty image: its shape is in the meta data
        shape = tuple(int(n) for n in volume.meta.get(MetaKeys.SPATIAL_SHAPE, volume.shape))
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
    suffix = _suffix(path)
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


def _describe(volume: torch.Tensor, name: str) -> str:
    file = volume.meta.get("filename_or_obj") if isinstance(volume, MetaTensor) else None
    return f"{name} ({file})" if file else name


def check_same_geometry(
    image: MetaTensor, label: MetaTensor, names: tuple[str, str] = ("image", "label"), atol: float = 1e-4
) -> None:
    """Raise :class:`GeometryMismatchError` unless two channel-first MetaTensors share a grid.

    Compares the spatial shapes ``shape[1:]`` exactly and the affines (mm) within ``atol``;
    the message names both (and their files when known).
    """
    for volume, name in zip((image, label), names):
        if not isinstance(volume, MetaTensor):
            kind = type(volume).__name__
            raise TypeError(f"{name}: check_same_geometry needs a MetaTensor (with .affine), got {kind}")
    a, b = _describe(image, names[0]), _describe(label, names[1])
    if tuple(image.shape[1:]) != tuple(label.shape[1:]):
        raise GeometryMismatchError(
            f"{a} and {b} differ in spatial shape: {tuple(image.shape[1:])} vs {tuple(label.shape[1:])}"
        )
    aff_a, aff_b = (np.asarray(v.affine.detach().cpu(), dtype=np.float64) for v in (image, label))
    if aff_a.shape != aff_b.shape or not np.allclose(aff_a, aff_b, rtol=0.0, atol=atol):
        raise GeometryMismatchError(
            f"{a} and {b} differ in affine (atol {atol} mm); resample one onto the other "
            f"(e.g. monai.transforms.ResampleToMatch):\n{aff_a}\nvs\n{aff_b}"
        )


@dataclass
class IntensityNormalization:
    """Linear intensity scaling ``[low, high] -> out_range`` with its inverse recorded.

    ``y = out_lo + (out_hi - out_lo) * (x - low) / (high - low)``, clipped to ``out_range``
    when ``clip``. ``mode="percentile"``: ``fit`` sets ``low, high`` to the ``percentiles``
    (in %, e.g. 0.5 / 99.5) of all voxels of the volume (all channels together);
    ``mode="window"``: ``low, high = window`` in the input's units (e.g. CT Hounsfield
    ``(-1000, 1000)``), no fitting needed. :meth:`inverse` maps back to input units (exact
    where the forward map did not clip). :meth:`to_dict` / :meth:`from_dict` store it as
    plain JSON-able values.

    >>> norm = IntensityNormalization(mode="window", window=(-1000.0, 1000.0))
    >>> norm(torch.tensor([-1000.0, 0.0, 500.0, 3000.0])).tolist()
    [-1.0, 0.0, 0.5, 1.0]
    """

    mode: Literal["percentile", "window"] = "percentile"
    percentiles: tuple[float, float] = (0.5, 99.5)
    window: tuple[float, float] | None = None
    out_range: tuple[float, float] = (-1.0, 1.0)
    clip: bool = True
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("percentile", "window"):
            raise ValueError(f"mode={self.mode!r}; allowed: 'percentile', 'window'")
        self.percentiles = _pair("percentiles", self.percentiles)
        self.out_range = _pair("out_range", self.out_range)
        lo, hi = self.percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise ValueError(f"percentiles={self.percentiles}: need 0 <= lower < upper <= 100")
        if self.mode == "window":
            if self.window is None:
                raise ValueError("mode='window' needs window=(low, high) in the input's units, e.g. (-1000, 1000) HU")
            self.window = _pair("window", self.window)
            self.low, self.high = self.window
        elif self.window is not None:
            raise ValueError(f"window={self.window} is used only with mode='window' (mode is 'percentile')")
        if self.low is not None or self.high is not None:
            self._set_range(self.low, self.high)

    def _set_range(self, low: Any, high: Any) -> None:
        low, high = float(low), float(high)
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"intensity range low={low}, high={high}: need finite low < high (a constant volume?)")
        self.low, self.high = low, high

    @property
    def fitted(self) -> bool:
        """Whether ``low`` and ``high`` are known (window mode: always)."""
        return self.low is not None and self.high is not None

    def fit(self, volume: torch.Tensor) -> IntensityNormalization:
        """Record ``low, high`` from ``volume`` (percentile mode; window mode: no-op). Returns self."""
        if self.mode == "percentile":
            values = torch.as_tensor(volume).detach().cpu().double().numpy().ravel()
            if not np.isfinite(values).all():
                raise ValueError("the volume holds NaN or inf; percentiles would be meaningless")
            self._set_range(*np.percentile(values, self.percentiles))
        return self

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError("IntensityNormalization(mode='percentile') is not fitted; call .fit(volume) first")

    def __call__(self, volume: torch.Tensor) -> torch.Tensor:
        """Normalised ``volume`` (float32, same shape; a MetaTensor stays one)."""
        self._check_fitted()
        out_lo, out_hi = self.out_range
        out = (volume.float() - self.low) / (self.high - self.low) * (out_hi - out_lo) + out_lo
        return out.clamp(out_lo, out_hi) if self.clip else out

    def inverse(self, volume: torch.Tensor) -> torch.Tensor:
        """Back to the input's units: ``low + (high - low) * (y - out_lo) / (out_hi - out_lo)`` (float32)."""
        self._check_fitted()
        out_lo, out_hi = self.out_range
        return (volume.float() - out_lo) / (out_hi - out_lo) * (self.high - self.low) + self.low

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, floats, str, bool) for a checkpoint, JSON or ``MetaTensor.meta``."""
        out = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IntensityNormalization:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        allowed = list(cls.__dataclass_fields__)
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ValueError(f"unknown IntensityNormalization keys {unknown}; allowed {allowed}")
        return cls(**data)


def _pair(name: str, value: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r}: need two numbers (low, high)") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"{name}={value!r}: need finite low < high")
    return lo, hi
