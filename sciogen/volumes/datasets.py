"""Volume datasets: a folder of volumes (with labels and a table of subjects) as MONAI records,
and the dictionary transforms that put each record on the network's grid.

- :func:`volume_records`: the volumes in a folder as MONAI-style records
  ``{"image": path, "label": path, "subject": str, "visit": str, <covariate>: value}``;
  labels are found in a labels folder by path, the optional CSV table chooses the volumes
  and gives subject, visit and covariates (rules in the function's docstring).
- :class:`LoadVolumed`: reads a record's volumes with :func:`~sciogen.volumes.io.read_volume`
  (so an unreadable file, a 2D image or a label off its image's grid raises a specific
  :class:`~sciogen.volumes.io.VolumeError` naming the file) — the load step MONAI's
  ``LoadImaged`` does, with these checks.
- :func:`volume_transforms`: ``LoadVolumed`` then MONAI's ``Orientationd`` (RAS),
  ``Spacingd`` (optional; labels nearest-neighbour), ``ScaleIntensityRangePercentilesd``
  (image to [-1, 1]), ``CropForegroundd`` (optional) and ``ResizeWithPadOrCropd`` to the
  network's shape; labels come out as integers.
- :class:`VolumeDataset`: records through those transforms, optionally cached in memory
  (MONAI ``CacheDataset``); works with a ``torch.utils.data.DataLoader`` and its workers.

    records = volume_records("scans/", labels="segmentations/", table="subjects.csv")
    dataset = VolumeDataset(records, (96, 96, 96), spacing=2.0)
    loader = monai.data.DataLoader(dataset, batch_size=4, num_workers=2)

MONAI re-raises every error inside a ``Compose`` as ``RuntimeError("applying transform
...")``; :class:`VolumeDataset` re-raises the :class:`~sciogen.volumes.io.VolumeError` under
it, so callers catch bad input by its type.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.data import CacheDataset, Dataset
from monai.transforms import (
    CastToTyped,
    Compose,
    CropForegroundd,
    MapTransform,
    Orientationd,
    ResizeWithPadOrCropd,
    ScaleIntensityRangePercentilesd,
    Spacingd,
)

from .io import (
    _ITK_READ,
    _NIFTI,
    UnsupportedFormatError,
    VolumeError,
    VolumeNotFoundError,
    _suffix,
    check_same_geometry,
    read_volume,
)

__all__ = ["volume_records", "LoadVolumed", "volume_transforms", "VolumeDataset", "VolumeDatasetError"]

_VOLUME_SUFFIXES = _NIFTI + _ITK_READ
_RAS = (("L", "R"), ("P", "A"), ("I", "S"))


class VolumeDatasetError(VolumeError):
    """A folder, labels folder or table that does not describe a consistent dataset.

    The message names the file and, for a table, the line.
    """


# --------------------------------------------------------------------------- records


def volume_records(
    folder: str | os.PathLike,
    *,
    labels: str | os.PathLike | None = None,
    table: str | os.PathLike | None = None,
    image_column: str = "image",
    subject_column: str | None = "subject",
    visit_column: str | None = "visit",
) -> list[dict[str, Any]]:
    """The volumes of a dataset as MONAI-style records (one dict per volume).

    Without ``table``: every volume file directly in ``folder`` (``.nii``, ``.nii.gz``,
    ``.mha``, ``.mhd``, ``.nrrd``, ``.nhdr``; hidden files skipped) and every sub-folder
    holding ``.dcm`` files (a DICOM series), sorted by name; records ``{"image": path}``.

    With ``table`` (a CSV file with a header line): one record per row, in the table's
    order; the table chooses the volumes (others in the folder are not used). The column
    ``image_column`` names each row's volume, relative to ``folder`` (sub-folders allowed);
    ``subject_column`` and ``visit_column`` (``None``: the table has no such column) give
    the record's ``"subject"`` and ``"visit"`` (text), and each (subject, visit) pair
    appears once. Every other column is a covariate under its own name: a float where
    all of the column's cells are numbers (an empty cell is NaN, missing), else text.

    With ``labels`` (a folder): each volume's label is the file with the same path relative
    to ``labels`` as the volume has relative to ``folder``, with any volume suffix
    (``folder/sub-01/t1.nii.gz`` -> ``labels/sub-01/t1.nrrd``, say); every volume needs
    exactly one. The record gets ``"label": path``.

    Paths in records are strings. Nothing is read but the table; the transforms read the
    volumes (:func:`volume_transforms`).

    Raises :class:`~sciogen.volumes.io.VolumeNotFoundError` for a missing folder, labels
    folder, table or a file a row names; :class:`~sciogen.volumes.io.UnsupportedFormatError`
    for a row naming a non-volume file; :class:`VolumeDatasetError` for a folder without
    volumes, a table without rows, with a duplicated or missing column, a row with the
    wrong number of cells or an empty image / subject / visit cell, a volume listed
    twice, a duplicated (subject, visit) pair, a column clashing with a record key, or a
    volume without (or with two) labels.
    """
    folder = _existing_folder(folder, "volume folder")
    labels = None if labels is None else _existing_folder(labels, "labels folder")
    if table is None:
        records = [{"image": str(path)} for path in _find_volumes(folder)]
        if not records:
            raise VolumeDatasetError(
                f"{folder}: no volumes found ({', '.join(_VOLUME_SUFFIXES)} files, or sub-folders of .dcm files)"
            )
    else:
        records = _table_records(folder, Path(table).expanduser(), image_column, subject_column, visit_column)
    if labels is not None:
        for record in records:
            record["label"] = str(_label_for(Path(record["image"]), folder, labels))
    return records


def _existing_folder(path: str | os.PathLike, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise VolumeNotFoundError(f"{path}: no such {what}")
    if not path.is_dir():
        raise VolumeDatasetError(f"{path}: the {what} must be a folder, this is a file")
    return path


def _is_dicom_folder(path: Path) -> bool:
    return path.is_dir() and any(p.is_file() for p in path.glob("*.dcm"))


def _find_volumes(folder: Path) -> list[Path]:
    """Volume files and DICOM series folders directly in ``folder``, sorted by name."""
    found = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if (path.is_file() and _suffix(path) in _VOLUME_SUFFIXES) or _is_dicom_folder(path):
            found.append(path)
    return found


def _stem(path: Path) -> str:
    """The name without its volume suffix (a folder's whole name)."""
    suffix = _suffix(path)
    return path.name[: -len(suffix)] if path.is_file() and suffix in _VOLUME_SUFFIXES else path.name


def _label_for(image: Path, folder: Path, labels: Path) -> Path:
    """The one file in ``labels`` at the image's path relative to ``folder``, any volume suffix."""
    try:
        relative = image.relative_to(folder)
    except ValueError:
        raise VolumeDatasetError(
            f"{image}: is not inside the volume folder {folder}, so its label cannot be found in {labels}; "
            "name volumes relative to the folder"
        ) from None
    base = labels / relative.parent / _stem(image)
    found = [base.with_name(base.name + s) for s in _VOLUME_SUFFIXES if base.with_name(base.name + s).is_file()]
    if not found:
        raise VolumeDatasetError(
            f"{image}: no label for it in the labels folder; expected {base}" + "{" + ",".join(_VOLUME_SUFFIXES) + "}"
        )
    if len(found) > 1:
        raise VolumeDatasetError(f"{image}: more than one label for it: {[str(p) for p in found]}; keep one")
    return found[0]


def _read_table(table: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and the ``(line number, {column: cell})`` rows of a CSV file (cells stripped)."""
    if not table.is_file():
        raise VolumeNotFoundError(f"{table}: no such table (CSV file)")
    with open(table, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise VolumeDatasetError(f"{table}: the table is empty; its first line must name the columns")
        header = [name.strip() for name in header]
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise VolumeDatasetError(f"{table}: column(s) {repeated} appear more than once in the header")
        rows = []
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue  # a blank line is not a row
            if len(cells) != len(header):
                raise VolumeDatasetError(
                    f"{table}, line {reader.line_num}: {len(cells)} cells, but the header names {len(header)} columns"
                )
            rows.append((reader.line_num, {name: cell.strip() for name, cell in zip(header, cells)}))
    if not rows:
        raise VolumeDatasetError(f"{table}: the table has a header but no rows")
    return header, rows


def _table_records(folder: Path, table: Path, image_column: str, subject_column: str | None,
                   visit_column: str | None) -> list[dict[str, Any]]:
    header, rows = _read_table(table)
    keyed = {"image": image_column, "subject": subject_column, "visit": visit_column}
    keyed = {key: column for key, column in keyed.items() if column is not None}
    missing = [column for column in keyed.values() if column not in header]
    if missing:
        raise VolumeDatasetError(
            f"{table}: missing column(s) {missing}; it has {header}. Name them with image_column= / "
            "subject_column= / visit_column= (None for a table without subject or visit)"
        )
    covariates = [name for name in header if name not in keyed.values()]
    clash = [name for name in covariates if name in (*keyed, "label")]
    if clash:
        raise VolumeDatasetError(
            f"{table}: column(s) {clash} would overwrite the record key(s) of the same name "
            f"({sorted({*keyed, 'label'})}); rename them"
        )
    numeric = {name: all(_is_number(cells[name]) for _, cells in rows if cells[name]) for name in covariates}
    records, seen_files, seen_keys = [], {}, {}
    for line, cells in rows:
        where = f"{table}, line {line}"
        for key, column in keyed.items():
            if not cells[column]:
                raise VolumeDatasetError(f"{where}: empty {column!r} cell; every row needs its {key}")
        path = _row_volume(folder, cells[image_column], where, image_column)
        if path in seen_files:
            raise VolumeDatasetError(f"{where}: {path} is already listed on line {seen_files[path]}")
        seen_files[path] = line
        record: dict[str, Any] = {"image": str(path)}
        for key in ("subject", "visit"):
            if key in keyed:
                record[key] = cells[keyed[key]]
        pair = tuple(record.get(key) for key in ("subject", "visit") if key in keyed)
        if pair and pair in seen_keys:
            names = " / ".join(keyed[key] for key in ("subject", "visit") if key in keyed)
            raise VolumeDatasetError(f"{where}: {names} {' / '.join(pair)} is already on line {seen_keys[pair]}")
        seen_keys[pair] = line
        for name in covariates:
            record[name] = (float(cells[name]) if cells[name] else math.nan) if numeric[name] else cells[name]
        records.append(record)
    return records


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _row_volume(folder: Path, cell: str, where: str, column: str) -> Path:
    path = folder / Path(cell).expanduser()
    if not path.exists():
        raise VolumeNotFoundError(f"{where}: {column} {cell!r} names {path}, which does not exist")
    if path.is_file() and _suffix(path) not in _VOLUME_SUFFIXES:
        raise UnsupportedFormatError(
            f"{where}: {column} {cell!r} is not a volume file; use {', '.join(_VOLUME_SUFFIXES)} or a DICOM folder"
        )
    return path


# --------------------------------------------------------------------------- transforms


class LoadVolumed(MapTransform):
    """Read a record's volumes; check each label against the image's grid.

    Each path under ``image_keys`` and ``label_keys`` becomes a channel-first float32
    ``MetaTensor`` ``(C, X, Y, Z)`` with its affine (RAS mm), read by
    :func:`~sciogen.volumes.io.read_volume`. Records without a label key are fine (no label);
    every record needs all ``image_keys``.

    Raises (each naming the file) :class:`~sciogen.volumes.io.VolumeNotFoundError`,
    :class:`~sciogen.volumes.io.UnsupportedFormatError`,
    :class:`~sciogen.volumes.io.UnreadableVolumeError`,
    :class:`~sciogen.volumes.io.NotA3DVolumeError` (a 2D image),
    :class:`~sciogen.volumes.io.GeometryMismatchError` (a label whose shape or affine differ
    from the first image's, naming both files), or :class:`~sciogen.volumes.io.VolumeError`
    for a label with non-integer values.
    """

    def __init__(self, image_keys: Sequence[str] = ("image",), label_keys: Sequence[str] = ("label",)):
        self.image_keys = _keys(image_keys, "image_keys")
        self.label_keys = _keys(label_keys, "label_keys", required=False)
        super().__init__((*self.image_keys, *self.label_keys), allow_missing_keys=True)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        missing = [key for key in self.image_keys if key not in d]
        if missing:
            raise KeyError(f"the record has no {missing} (its keys: {list(d)})")
        for key in self.key_iterator(d):
            d[key] = read_volume(d[key])
        for key in (k for k in self.label_keys if k in d):
            check_same_geometry(d[self.image_keys[0]], d[key], names=(self.image_keys[0], key))
            values = d[key].as_tensor()
            if not torch.equal(values, values.round()):
                raise VolumeError(
                    f"{d[key].meta.get('filename_or_obj')}: the {key!r} volume holds non-integer values "
                    f"(e.g. {values[values != values.round()][0].item()}); labels must be integers"
                )
        return d


def _keys(keys: Sequence[str], name: str, required: bool = True) -> tuple[str, ...]:
    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    if required and not keys:
        raise ValueError(f"{name} must name at least one key, e.g. ('image',)")
    return keys


def _is_foreground(x: torch.Tensor) -> torch.Tensor:
    """Voxels above a tenth of the normalised range (> -0.8), as :class:`~sciogen.volumes.NetworkGrid`."""
    return x > -0.8


def volume_transforms(
    shape: Sequence[int],
    *,
    spacing: float | Sequence[float] | None = None,
    percentiles: Sequence[float] = (0.5, 99.5),
    crop_foreground: bool = True,
    image_keys: Sequence[str] = ("image",),
    label_keys: Sequence[str] = ("label",),
) -> Compose:
    """MONAI dictionary transforms: a record of paths -> volumes on the network's grid.

    In order: :class:`LoadVolumed` (checks: 3D, label on the image's grid, integer labels);
    ``Orientationd`` to RAS; ``Spacingd`` to ``spacing`` (mm; one number for isotropic
    voxels; images linear, labels nearest-neighbour; ``None`` keeps each volume's own);
    ``ScaleIntensityRangePercentilesd`` mapping the image's ``percentiles`` (in %, all
    channels together) to [-1, 1], clipped; ``CropForegroundd`` to the box of the first
    image's voxels above -0.8 (when ``crop_foreground``); ``ResizeWithPadOrCropd`` to
    ``shape``, centred (images padded with -1, labels with 0). Records without a label key
    pass through without one; other keys (subject, covariates) are kept as they are.

    Shapes: images ``(C, *shape)`` float32 in [-1, 1], labels ``(C, *shape)`` int64, both
    ``MetaTensor`` whose ``.affine`` is the output grid (RAS mm; voxel size ``spacing``).
    """
    shape = _shape(shape)
    image_keys, label_keys = _keys(image_keys, "image_keys"), _keys(label_keys, "label_keys", required=False)
    lower, upper = _percentiles(percentiles)
    keys = (*image_keys, *label_keys)
    steps: list[Callable] = [
        LoadVolumed(image_keys, label_keys),
        Orientationd(keys, axcodes="RAS", labels=_RAS, allow_missing_keys=True),
    ]
    if spacing is not None:
        modes = ["bilinear"] * len(image_keys) + ["nearest"] * len(label_keys)
        steps.append(Spacingd(keys, pixdim=_spacing(spacing), mode=modes, allow_missing_keys=True))
    steps.append(ScaleIntensityRangePercentilesd(image_keys, lower=lower, upper=upper, b_min=-1.0, b_max=1.0, clip=True))
    if crop_foreground:
        steps.append(CropForegroundd(keys, source_key=image_keys[0], select_fn=_is_foreground, allow_smaller=True,
                                     start_coord_key=None, end_coord_key=None, allow_missing_keys=True))
    steps.append(ResizeWithPadOrCropd(image_keys, spatial_size=shape, value=-1.0))
    if label_keys:
        steps.append(ResizeWithPadOrCropd(label_keys, spatial_size=shape, value=0, allow_missing_keys=True))
        steps.append(CastToTyped(label_keys, dtype=torch.int64, allow_missing_keys=True))
    return Compose(steps)


def _shape(shape: Sequence[int]) -> tuple[int, int, int]:
    try:
        out = tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be three voxel counts (X, Y, Z), got {shape!r}") from None
    if len(out) != 3 or min(out) < 1:
        raise ValueError(f"shape must be three voxel counts >= 1 (X, Y, Z), got {shape!r}")
    return out


def _spacing(spacing: float | Sequence[float]) -> tuple[float, float, float]:
    values = (spacing,) * 3 if isinstance(spacing, (int, float)) else tuple(spacing)
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3 or not all(math.isfinite(v) and v > 0 for v in out):
        raise ValueError(f"spacing must be a voxel size in mm > 0, one number or three (X, Y, Z), got {spacing!r}")
    return out


def _percentiles(percentiles: Sequence[float]) -> tuple[float, float]:
    lower, upper = (float(p) for p in percentiles)
    if not 0.0 <= lower < upper <= 100.0:
        raise ValueError(f"percentiles must be (low, high) with 0 <= low < high <= 100, got {percentiles!r}")
    return lower, upper


# --------------------------------------------------------------------------- dataset


class VolumeDataset(torch.utils.data.Dataset):
    """Records (:func:`volume_records`) through :func:`volume_transforms`, item by item.

    ``dataset[i]`` is the record ``i`` with its volumes on the network grid: ``"image"``
    ``(C, *shape)`` float32 in [-1, 1], ``"label"`` ``(C, *shape)`` int64 when the record
    has one, other keys unchanged. A ``torch.utils.data.DataLoader`` batches them (images
    ``(B, C, *shape)``, covariates ``(B,)``, text as lists), with worker processes or not;
    give it MONAI's collate (``collate_fn=monai.data.list_data_collate``, the default of
    ``monai.data.DataLoader``) to keep every item's affine (``batch["image"].affine``
    ``(B, 4, 4)``): torch's default collate keeps only the first item's meta data.

    Args:
        records: dicts with a path under each of ``image_keys`` (and ``label_keys`` optionally).
        shape, spacing, percentiles, crop_foreground, image_keys, label_keys: as
            :func:`volume_transforms`.
        cache: transform every record once, now, and keep the results in memory (MONAI
            ``CacheDataset``; bad input then raises here); else read on each access.

    Bad input raises the :class:`~sciogen.volumes.io.VolumeError` that names it (not MONAI's
    ``RuntimeError`` wrapper); see :class:`LoadVolumed`.
    """

    def __init__(
        self,
        records: Sequence[Mapping[str, Any]],
        shape: Sequence[int],
        *,
        spacing: float | Sequence[float] | None = None,
        percentiles: Sequence[float] = (0.5, 99.5),
        crop_foreground: bool = True,
        image_keys: Sequence[str] = ("image",),
        label_keys: Sequence[str] = ("label",),
        cache: bool = False,
    ):
        image_keys = _keys(image_keys, "image_keys")
        self.records = [dict(r) for r in _checked_records(records, image_keys)]
        self.transform = volume_transforms(shape, spacing=spacing, percentiles=percentiles,
                                           crop_foreground=crop_foreground, image_keys=image_keys,
                                           label_keys=label_keys)
        self.cache = cache
        if cache:
            self._data = _volume_error_unwrapped(CacheDataset, self.records, self.transform, progress=False)
        else:
            self._data = Dataset(self.records, self.transform)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return _volume_error_unwrapped(self._data.__getitem__, index)


def _checked_records(records: Sequence[Mapping[str, Any]], image_keys: tuple[str, ...]) -> Sequence[Mapping]:
    if isinstance(records, (str, os.PathLike)) or not isinstance(records, Sequence):
        raise TypeError(f"records must be a list of dicts (see volume_records), got {type(records).__name__}")
    if not records:
        raise ValueError("no records: the dataset would be empty")
    for i, record in enumerate(records):
        if not isinstance(record, Mapping) or any(key not in record for key in image_keys):
            raise ValueError(f"record {i} must be a dict with a path under {list(image_keys)}, got {record!r}")
    return records


def _volume_error_unwrapped(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, raising a :class:`VolumeError` from under MONAI's ``RuntimeError`` wrappers."""
    try:
        return fn(*args, **kwargs)
    except RuntimeError as err:
        error: BaseException = err
        while isinstance(error, RuntimeError) and error.__cause__ is not None:
            error = error.__cause__
        if not isinstance(error, VolumeError):
            raise
    raise error
