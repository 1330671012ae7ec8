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
- :func:`find_volumes` / :func:`own_volume_records`: a user's ``--data`` (a folder searched
  recursively, a glob, files), ``--labels`` folder and ``--covariates`` CSV as records,
  with the volumes, labels and rows that match nothing reported in a
  :class:`~sciogen.data.records.RecordLog` (what ``sciogen train volumes --data`` reads).

    records = volume_records("scans/", labels="segmentations/", table="subjects.csv")
    dataset = VolumeDataset(records, (96, 96, 96), spacing=2.0)
    loader = monai.data.DataLoader(dataset, batch_size=4, num_workers=2)

MONAI re-raises every error inside a ``Compose`` as ``RuntimeError("applying transform
...")``; :class:`VolumeDataset` re-raises the :class:`~sciogen.volumes.io.VolumeError` under
it, so callers catch bad input by its type.
"""

from __future__ import annotations

import csv
import glob
import math
import os
import sys
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

from sciogen.imaging.io import file_suffix as _suffix

from .io import (
    VOLUME_SUFFIXES,
    UnsupportedFormatError,
    VolumeError,
    VolumeNotFoundError,
    check_same_geometry,
    read_volume,
)

__all__ = ["volume_records", "find_volumes", "own_volume_records", "covariate_columns", "LoadVolumed", "volume_transforms", "VolumeDataset",
           "VolumeDatasetError"]

_VOLUME_SUFFIXES = VOLUME_SUFFIXES
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


# --------------------------------------------------------------------------- a user's own data

_ACCEPTED = "NIfTI (.nii, .nii.gz), MetaImage (.mha, .mhd), NRRD (.nrrd, .nhdr) or folders of DICOM (.dcm) files"
#: column names (case-insensitive) that name a volume in a covariates CSV, in order of preference
ID_COLUMNS = ("image", "file", "filename", "path", "volume", "subject", "subject_id", "id", "name")


def _walk(folder: Path) -> list[Path]:
    """Volume files and DICOM-series folders under ``folder`` (recursive; hidden names skipped)."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        here = Path(root)
        if here != folder and any(f.lower().endswith(".dcm") for f in files):
            found.append(here)
        found += [here / f for f in files if not f.startswith(".") and _suffix(here / f) in _VOLUME_SUFFIXES]
    return found


def _find(data: Any) -> list[tuple[Path, Path]]:
    """``(volume, base)`` pairs: each volume with the folder its name is taken relative to."""
    items = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    if not items:
        raise VolumeDatasetError("no volumes given (an empty list)")
    found: list[tuple[Path, Path]] = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise TypeError(f"volumes are given as paths (a folder, a glob or files), got {type(item).__name__} {item!r}")
        text = str(item)
        path = Path(text).expanduser()
        if any(ch in text for ch in "*?["):
            matches = [Path(m) for m in sorted(glob.glob(str(path), recursive=True))]
            pairs = [(m, m.parent) for m in matches
                     if (m.is_file() and _suffix(m) in _VOLUME_SUFFIXES) or _is_dicom_folder(m)]
            if not pairs:
                raise VolumeNotFoundError(f"the pattern {text!r} matches no volumes ({_ACCEPTED})")
        elif _is_dicom_folder(path):
            pairs = [(path, path.parent)]
        elif path.is_dir():
            pairs = [(v, path) for v in _walk(path)]
            if not pairs:
                raise VolumeDatasetError(f"{path}: no volumes found in this folder or below it ({_ACCEPTED})")
        elif path.is_file():
            if _suffix(path) not in _VOLUME_SUFFIXES:
                raise UnsupportedFormatError(f"{path}: not a volume file; volumes are {_ACCEPTED}")
            pairs = [(path, path.parent)]
        else:
            raise VolumeNotFoundError(f"{path}: no such file or folder")
        found += pairs
    return sorted(dict(found).items())


def find_volumes(data: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The volumes named by ``data``: a folder (searched recursively), a glob (quote it in a
    shell), a volume file, a DICOM-series folder (a folder holding ``.dcm`` files is one
    volume), or a list of these; sorted, without duplicates.

    Raises :class:`~sciogen.volumes.io.VolumeNotFoundError` (no such path, a glob matching
    nothing), :class:`~sciogen.volumes.io.UnsupportedFormatError` (a file that is not a
    volume) or :class:`VolumeDatasetError` (a folder without volumes).
    """
    return [volume for volume, _ in _find(data)]


def _relative_stem(volume: Path, base: Path) -> Path:
    """The volume's path relative to ``base`` without its volume suffix (``sub/x.nii.gz`` -> ``sub/x``)."""
    relative = volume.relative_to(base)
    return relative.parent / _stem(volume)


def own_volume_records(data: Any, *, labels: str | os.PathLike | None = None,
                       covariates: str | os.PathLike | None = None, log: Any = None,
                       return_indices: bool = False) -> list[dict[str, Any]] | tuple[list[dict[str, Any]], list[int]]:
    """A user's volumes as records ``{"image": path, "label": path, <covariate>: float}``.

    ``data``: as :func:`find_volumes`. Names are taken relative to the folder given (for a
    glob or a file: relative to its own folder).

    ``labels`` (a folder): the label of ``DATA/sub/x.nii.gz`` is ``LABELS/sub/x`` with any
    volume suffix (or a DICOM folder ``LABELS/sub/x/``); the format may differ from the
    image's. A volume without a label, with two, and a label without a volume are reported
    in ``log`` (a :class:`~sciogen.data.records.RecordLog`; without one they raise
    :class:`VolumeDatasetError`); such volumes are left out.

    ``covariates`` (a CSV file with a header line): one column names the volumes (the first
    column called one of :data:`ID_COLUMNS`, case-insensitive, else the first column); a
    cell matches a volume when it equals the volume's path relative to its folder, its file
    name (either with or without the suffix) or the first folder of its relative path (a
    subject folder: ``sub-01`` matches ``sub-01/anat/t1.nii.gz``). Every other column whose
    non-empty cells are all numbers is a covariate (empty cell: NaN, missing); columns with
    text are not used (a message says so). A row that matches no volume is reported in
    ``log`` with its CSV line; a volume that no row matches trains with its covariates
    missing (NaN, the model's unconditional case; a message gives the count); a volume two
    rows match is reported and left out.

    With ``return_indices``, also each record's index in the sorted list of volumes found
    (the index under which its problems are reported).
    """
    pairs = _find(data)
    records: list[dict[str, Any]] = [{"image": str(volume)} for volume, _ in pairs]
    report = _Report(log, len(records))
    if labels is not None:
        _attach_labels(records, pairs, _existing_folder(labels, "labels folder"), report)
    if covariates is not None:
        names = _attach_covariates(records, pairs, Path(covariates).expanduser(), report)
        for record in records:
            for name in names:
                record.setdefault(name, math.nan)
    kept = [i for i, keep in enumerate(report.keep) if keep]
    records = [records[i] for i in kept]
    return (records, kept) if return_indices else records


class _Report:
    """Records left out: to a RecordLog when given, else raised."""

    def __init__(self, log: Any, n: int):
        self.log, self.keep = log, [True] * n

    def skip(self, source: Any, index: Any, reason: str, volume: int | None = None) -> None:
        if self.log is None:
            raise VolumeDatasetError(f"{source} [{index}]: {reason}")
        self.log.skip(source, index, reason)
        if volume is not None:
            self.keep[volume] = False


def _attach_labels(records: list[dict[str, Any]], pairs: list[tuple[Path, Path]], labels: Path, report: _Report) -> None:
    candidates: dict[Path, list[Path]] = {}
    for label in _walk(labels):
        candidates.setdefault(label.relative_to(labels).parent / _stem(label), []).append(label)
    used = set()
    for i, (volume, base) in enumerate(pairs):
        key = _relative_stem(volume, base)
        found = candidates.get(key, [])
        used.add(key)
        if len(found) == 1:
            records[i]["label"] = str(found[0])
        elif not found:
            expected = f"{labels / key}" + "{" + ",".join(_VOLUME_SUFFIXES) + "}"
            report.skip(volume, i, f"no label for it: expected {expected} or a DICOM folder {labels / key}", i)
        else:
            report.skip(volume, i, f"more than one label for it: {', '.join(map(str, found))}; keep one", i)
    unused = [label for key in sorted(candidates) if key not in used for label in candidates[key]]
    for k, label in enumerate(unused):
        report.skip(label, k, "a label without a volume: no volume of this name (any suffix) in the data")


def covariate_columns(table: str | os.PathLike) -> tuple[str, list[str], list[str]]:
    """The columns of a covariates CSV: ``(the column naming the volumes, the numeric
    covariate columns, the other columns (not used))``; see :func:`own_volume_records`."""
    return _covariate_table(Path(table).expanduser())[:3]


def _covariate_table(table: Path) -> tuple[str, list[str], list[str], list[tuple[int, dict[str, str]]]]:
    header, rows = _read_table(table)
    lower = [name.lower() for name in header]
    id_column = next((header[lower.index(c)] for c in ID_COLUMNS if c in lower), header[0])
    numeric = [name for name in header if name != id_column
               and all(_is_number(cells[name]) for _, cells in rows if cells[name])
               and any(cells[name] for _, cells in rows)]
    text = [name for name in header if name != id_column and name not in numeric]
    if not numeric:
        raise VolumeDatasetError(f"{table}: no numeric covariate column besides {id_column!r} (the column naming the "
                                 f"volumes); its columns: {header}")
    clash = [name for name in numeric if name in ("image", "label")]
    if clash:
        raise VolumeDatasetError(f"{table}: column(s) {clash} clash with the record keys image / label; rename them")
    return id_column, numeric, text, rows


def _attach_covariates(records: list[dict[str, Any]], pairs: list[tuple[Path, Path]], table: Path,
                       report: _Report) -> list[str]:
    """Add each row's numeric cells to the records it names; returns the covariate names."""
    id_column, numeric, text, rows = _covariate_table(table)
    if text:
        print(f"sciogen: {table}: column(s) {text} hold text or nothing, not numbers; they are not used as covariates "
              "(encode categories as numbers to use them)", file=sys.stderr)
    index: dict[str, list[int]] = {}
    for i, (volume, base) in enumerate(pairs):
        relative = volume.relative_to(base)
        keys = {relative.as_posix(), _relative_stem(volume, base).as_posix(), volume.name, _stem(volume)}
        if len(relative.parts) > 1:
            keys.add(relative.parts[0])
        for key in keys:
            index.setdefault(key, []).append(i)
    matched: dict[int, int] = {}
    for line, cells in rows:
        cell = cells[id_column].replace("\\", "/")
        hits = index.get(cell, [])
        if not hits:
            report.skip(table, f"line {line}", f"{id_column} {cell!r} names no volume in the data (matched against "
                                               "relative paths, file names and subject folders)")
        for i in hits:
            if i in matched:
                report.skip(pairs[i][0], i, f"two rows of {table} name it (lines {matched[i]} and {line})", i)
                continue
            matched[i] = line
            for name in numeric:
                records[i][name] = float(cells[name]) if cells[name] else math.nan
    missing = len(records) - len(matched)
    if missing:
        print(f"sciogen: {missing} of {len(records)} volumes have no row in {table}; they train with their covariates "
              "missing (the model's unconditional case)", file=sys.stderr)
    return numeric


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
