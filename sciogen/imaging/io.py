"""Images in, with their geometry: one reader for every imaging domain, and the checks on geometry.

:func:`read_image` reads NIfTI (``.nii`` / ``.nii.gz``, nibabel), ITK formats (``.mha`` /
``.mhd`` / ``.nrrd`` / ``.nhdr``, 2D ``.png`` / ``.tif`` / ``.jpg`` / ``.bmp``, SimpleITK),
DICOM series folders (SimpleITK / GDCM) and NumPy arrays (``.npy``, ``file.npz:KEY``) through
MONAI's ``LoadImage(image_only=True, ensure_channel_first=True)`` into a channel-first
float32 ``MetaTensor`` whose ``.affine`` is the voxel index -> world map in mm, RAS+ (arrays:
the identity). MONAI's own ``ITKReader`` needs the ``itk`` package, which sciogen does not
depend on; :class:`SimpleITKReader` is a small MONAI ``ImageReader`` over SimpleITK with the
same array layout and metadata (affine converted from ITK's LPS to RAS by MONAI's
``orientation_ras_lps``).

:func:`check_affine` (finite, invertible voxel -> world map) and :func:`check_same_geometry`
(image and label on one grid) raise the errors below, all :class:`ImageError` (a
``ValueError``) naming the file. MONAI, nibabel and SimpleITK are imported when used.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [  # noqa: F822 (SimpleITKReader is made on first use, by the module's __getattr__)
    "NIFTI_SUFFIXES", "ITK_SUFFIXES", "RASTER_SUFFIXES", "ARRAY_SUFFIXES", "READ_SUFFIXES",
    "read_image", "check_affine", "check_same_geometry", "file_suffix", "plain_tensor", "SimpleITKReader",
    "ImageError", "ImageNotFoundError", "UnsupportedFormatError", "UnreadableImageError", "NotA3DVolumeError",
    "SingularAffineError", "GeometryMismatchError",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: 3D (and 2D) ITK formats
ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
#: 2D raster images (read by SimpleITK; colour as vector pixels)
RASTER_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
ARRAY_SUFFIXES = (".npy", ".npz")
#: every file suffix :func:`read_image` reads (and DICOM series folders)
READ_SUFFIXES = (*NIFTI_SUFFIXES, *ITK_SUFFIXES, *RASTER_SUFFIXES, *ARRAY_SUFFIXES)


class ImageError(ValueError):
    """An image that cannot be used as given; the message names the file."""


class ImageNotFoundError(ImageError, FileNotFoundError):
    """The path does not exist."""


class UnsupportedFormatError(ImageError):
    """The file's suffix is not a format sciogen reads or writes."""


class UnreadableImageError(ImageError):
    """The file exists but its reader failed (corrupt, truncated, wrong format); the reader's
    own exception is its ``__cause__``."""


class NotA3DVolumeError(ImageError):
    """The image has a spatial rank other than 3 where a volume was expected."""


class SingularAffineError(ImageError):
    """The voxel -> world affine is singular or not finite (e.g. an all-zero sform in a NIfTI header)."""


class GeometryMismatchError(ImageError):
    """Two images that must share a voxel grid do not (shape or affine)."""


def check_affine(affine: Any, source: object, spatial_dims: int = 3) -> np.ndarray:
    """``affine`` as a ``(spatial_dims + 1)``-square float64 array, or :class:`SingularAffineError`
    naming ``source``.

    An image's voxel -> world map must be finite and invertible (rank ``spatial_dims`` in its
    linear part): an all-zero sform / qform in a NIfTI header, or a zero voxel size, leaves the
    image without geometry, which nibabel and MONAI's ``Orientation`` / ``Spacing`` then fail on.
    """
    a = np.asarray(torch.as_tensor(affine).detach().cpu() if isinstance(affine, torch.Tensor) else affine,
                   dtype=np.float64)
    d = int(spatial_dims)
    if a.shape != (d + 1, d + 1) or not np.isfinite(a).all() or np.linalg.matrix_rank(a[:d, :d]) < d:
        what = f"not {d + 1}x{d + 1}" if a.shape != (d + 1, d + 1) else "singular or not finite"
        raise SingularAffineError(
            f"{source}: the voxel-to-world affine is {what} "
            f"({np.array2string(a, separator=', ').replace(chr(10), '')}), so the image has no geometry to map; "
            "fix the header (nibabel: img.set_sform(affine, code=1) and img.set_qform(affine, code=1) with the scan's "
            "real voxel-to-world matrix, or numpy.eye(4) for 1 mm voxels) and save it again, or pass the voxels as an "
            "array (identity affine)"
        )
    return a


def file_suffix(path: str | os.PathLike) -> str:
    """The lower-case suffix of ``path``, ``.nii.gz`` counted as one."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def plain_tensor(x: Any) -> torch.Tensor:
    """The voxels of a ``MetaTensor`` as a plain ``torch.Tensor`` (no geometry, no MONAI
    bookkeeping); any other array as a tensor."""
    return x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _split_key(path: str | os.PathLike) -> tuple[Path, str | None]:
    """``"a/b.npz:vol"`` -> ``(Path("a/b.npz"), "vol")``."""
    text = str(path)
    if ".npz:" in text:
        file, key = text.rsplit(":", 1)
        return Path(file).expanduser(), key
    return Path(text).expanduser(), None


@functools.lru_cache(maxsize=None)
def _simpleitk_reader_class() -> type:
    from monai.data import ImageReader
    from monai.data.utils import orientation_ras_lps
    from monai.utils import MetaKeys, SpaceKeys, ensure_tuple

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
            suffixes = ITK_SUFFIXES + RASTER_SUFFIXES
            return all(Path(f).is_dir() or file_suffix(f) in suffixes for f in ensure_tuple(filename))

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

    SimpleITKReader.__module__, SimpleITKReader.__qualname__ = __name__, "SimpleITKReader"
    return SimpleITKReader


def __getattr__(name: str):  # SimpleITKReader subclasses MONAI's ImageReader: defined on first use
    if name == "SimpleITKReader":
        return _simpleitk_reader_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _read_dicom_series(folder: Path, series_uid: str | None):
    """The one DICOM series in ``folder`` (or ``series_uid``) as a SimpleITK image."""
    import SimpleITK as sitk

    uids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
    if not uids:
        raise UnreadableImageError(f"{folder}: no DICOM series found in this folder")
    if series_uid is None and len(uids) > 1:
        raise ImageError(f"{folder}: holds {len(uids)} DICOM series {uids}; pass series_uid= one of them")
    uid = series_uid if series_uid is not None else uids[0]
    if uid not in uids:
        raise ImageError(f"{folder}: no DICOM series {uid!r}; the folder holds {uids}")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
    return reader.Execute()


def _read_array(file: Path, key: str | None, channel_first: bool):
    """``.npy`` / ``.npz`` voxels as a MetaTensor with the identity affine (1 mm voxels)."""
    from monai.data import MetaTensor

    if file_suffix(file) == ".npz":
        with np.load(file) as npz:
            if key is None and len(npz.files) == 1:
                key = npz.files[0]
            if key is None or key not in npz:
                raise KeyError(f"{file}: name the array as {file}:KEY, one of {sorted(npz.files)}")
            arr = np.asarray(npz[key], dtype=np.float32)
    else:
        arr = np.load(file).astype(np.float32)
    arr = arr if channel_first else arr[None]
    rank = min(max(arr.ndim - 1, 1), 3)
    name = f"{file}:{key}" if key is not None else str(file)
    return MetaTensor(torch.from_numpy(np.ascontiguousarray(arr)), affine=torch.eye(rank + 1, dtype=torch.float64),
                      meta={"filename_or_obj": name})


def read_image(path: str | os.PathLike, *, channel_first: bool = False, series_uid: str | None = None,
               check_geometry: bool = True, formats: Sequence[str] = READ_SUFFIXES, what: str = "image"):
    """An image file (or DICOM series folder) as a channel-first float32 ``MetaTensor``.

    Shapes: a 2D / 3D file gives ``(1, *S)``; a 4D NIfTI ``(X, Y, Z, T)`` or a vector-pixel
    (colour) ITK image gives its last axis as channels, ``(T, *S)``; an array ``(*S)`` gives
    ``(1, *S)``, or is taken as ``(C, *S)`` with ``channel_first``. ``.affine`` is the voxel ->
    world (mm, RAS+) map as stored in the file (no reorientation, no resampling; 4x4 for NIfTI,
    ``(D + 1)``-square for ITK images and arrays, the identity for arrays);
    ``.meta["filename_or_obj"]`` is the path. An image without voxels keeps its spatial shape
    (``(1, *S)`` with a zero in ``S``), for the caller to refuse.

    Args:
        path: the file, a DICOM series folder, or ``file.npz:KEY`` (an ``.npz`` holding one
            array needs no key).
        series_uid: the DICOM series of a folder holding several.
        check_geometry: refuse a singular or non-finite affine (:func:`check_affine`).
        formats: the suffixes this caller accepts (others: :class:`UnsupportedFormatError`).
        what: the word the messages use for the file (``"volume"``).

    Raises :class:`ImageNotFoundError`, :class:`UnsupportedFormatError`,
    :class:`UnreadableImageError` (the reader's exception as its cause), ``KeyError`` (an
    ``.npz`` without the key), :class:`SingularAffineError`.
    """
    from monai.data import NibabelReader
    from monai.transforms import LoadImage
    from monai.utils import MetaKeys

    file, key = _split_key(path)
    if not file.exists():
        raise ImageNotFoundError(f"{file}: no such {what} file or DICOM folder")
    suffix = file_suffix(file)
    if not (file.is_dir() or suffix in formats):
        folders = " or a DICOM series folder" if any(s in formats for s in ITK_SUFFIXES) else ""
        raise UnsupportedFormatError(f"{file}: unsupported {what} type {suffix!r}; use {', '.join(formats)}{folders}")
    if suffix in ARRAY_SUFFIXES:
        image = _read_array(file, key, channel_first)
    else:
        reader = NibabelReader() if suffix in NIFTI_SUFFIXES else _simpleitk_reader_class()(series_uid)
        try:
            image = LoadImage(image_only=True, ensure_channel_first=True, dtype=np.float32)(file, reader=reader)
        except ImageError:
            raise
        except Exception as err:  # nibabel / SimpleITK / gzip raise many kinds
            raise UnreadableImageError(f"{file}: cannot read it as {_a(what)} ({type(err).__name__}: {err})") from err
        if image.numel() == 0:  # MONAI flattens an empty image: its shape is in the meta data
            shape = tuple(int(n) for n in image.meta.get(MetaKeys.SPATIAL_SHAPE, image.shape))
            image = image.reshape(1, *shape)
    if check_geometry:
        check_affine(image.affine, file, spatial_dims=len(image.affine) - 1)
    return image


def _describe(image: torch.Tensor, name: str) -> str:
    meta = getattr(image, "meta", None)
    file = meta.get("filename_or_obj") if isinstance(meta, dict) else None
    return f"{name} ({file})" if file else name


def check_same_geometry(image: Any, label: Any, names: tuple[str, str] = ("image", "label"),
                        atol: float = 1e-4) -> None:
    """Raise :class:`GeometryMismatchError` unless two channel-first MetaTensors share a grid.

    Compares the spatial shapes ``shape[1:]`` exactly and the affines (mm) within ``atol``;
    the message names both (and their files when known).
    """
    from monai.data import MetaTensor

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
